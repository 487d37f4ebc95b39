"""SASRec with language-model item text (Kang & McAuley 2018 for the sequence model; text as the item
representation or its prior as in Harte et al., RecSys 2023, "Leveraging Large Language Models for
Sequential Recommendation", Sec. 3.2, and Hou et al., KDD 2022, UniSRec, Sec. 3.1).

Item text vectors come from :class:`~lightning_rec.nn.text_encoder.ItemTextEncoder` (any Hugging Face
backbone, cached or live with LoRA), so :class:`lightning_rec.callbacks.MetadataCacheCallback` runs the
fast, peft and hybrid strategies on this model unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from lightning_rec.models.base import check_per_item, require_history
from lightning_rec.models.sasrec import ItemLookup, SASRec, SequenceLoss
from lightning_rec.models.text_cache import ItemTextCacheMixin
from lightning_rec.nn.sequence import BlockLayout, WeightInit
from lightning_rec.nn.text_encoder import ItemTextEncoder, Pooling

ItemRepresentation = Literal["init", "fuse", "text"]


def principal_components(vectors: Tensor, count: int, std: float) -> Tensor:
    """The first ``count`` principal-component scores of ``vectors`` ``[N, H]``, scaled to standard
    deviation ``std``; ``[N, count]``, with zeros past the rank ``min(N, H)``.

    Example:
        >>> scores = principal_components(torch.randn(50, 6), 4, std=0.02)
        >>> scores.shape, round(float(scores.std()), 3)
        (torch.Size([50, 4]), 0.02)
    """
    centered = vectors.float() - vectors.float().mean(0)
    _, _, components = torch.linalg.svd(centered, full_matrices=False)
    scores = centered @ components[:count].T
    scores = scores / scores.std().clamp(min=1e-12) * std
    return torch.cat([scores, scores.new_zeros(len(scores), count - scores.shape[1])], dim=1)


class TextSASRec(ItemTextCacheMixin, SASRec):
    """SASRec whose item vectors (input and output, tied) read each item's text.

    ``item_representation``:

    - ``init``: the ID table starts from the first ``dim`` principal components of the items' text
      vectors (scaled to the table's initial standard deviation, 0.02) and then trains as in SASRec; text
      is read once, at the start of the first fit. Items without training interactions keep their text
      start (they are never moved towards the mean, which would erase it).
    - ``fuse``: ID embedding plus the projected text vector (LayerNorm, then linear); both train.
    - ``text``: the projected text vector only. An item needs nothing but its text, so items added after
      training are scored with :meth:`score_new_items` and cold items rank among all items.

    Text vectors are cached (``text_mode="cached"``) or come from the backbone in every step
    (``"dynamic"``, LoRA adapters learn); ``MetadataCacheCallback`` switches mid-fit. With ``init`` the
    text is read only once, so a dynamic phase changes nothing.

    Args:
        num_users: number of users (linked from the data module; unused by the model).
        num_items: number of items (linked from the data module).
        item_texts: one text per item (linked from the data module's ``item_texts``).
        item_representation: ``init``, ``fuse`` or ``text`` (see above).
        backbone: Hugging Face name or path, ``tiny-gpt2`` (bundled, random init) or ``smollm2-135m``.
        pretrained: load the backbone's weights; ``False`` initialises it randomly.
        pooling: ``mean`` over tokens or the ``last`` non-pad token.
        text_max_length: tokens per item text.
        use_cache: start in cached mode (else dynamic from the first step).
        freeze_backbone: keep the backbone's own weights fixed (always so with ``use_peft``).
        use_peft: add LoRA adapters through ``peft`` (needed for a dynamic phase that learns).
        lora_rank: LoRA rank.
        lora_alpha: LoRA scaling.
        lora_target_modules: modules that get adapters (``None``: the architecture's default).
        dynamic_items_per_step: in dynamic training, at most this many distinct items of a step go through
            the live encoder; the others read the in-memory cache. ``None``: every item.
        refresh_every_n_steps: with a budget, recompute the in-memory cache every this many steps.
        dynamic_layers: run only the top ``dynamic_layers`` backbone blocks live. ``None``: all blocks.
        id_dropout: ``fuse``: each training step drops the ID part of each item with this probability, so that the
            text part alone learns to rank an item (DropoutNet, Volkovs et al. 2017). Items without training
            interactions (cold start) then keep no ID part, instead of one predicted from their text.
        dim: hidden size.
        max_length: longest sequence the model reads; set it to the data module's ``history_length``.
        num_layers: Transformer blocks.
        num_heads: attention heads.
        dropout: dropout rate.
        feedforward_dim: width of each block's feed-forward layer (``None``: ``4 * dim``).
        block: the blocks' layout, ``pre_norm`` or ``sasrec`` (see :class:`SASRec`).
        init: ``normal`` or ``xavier`` (see :class:`SASRec`).
        loss: ``sampled_softmax``, ``ce`` or ``bce`` (see :class:`SASRec`).
        num_negatives: negatives per step (or per position) for ``sampled_softmax``.
        shared_negatives: one draw per step shared by every position, or (False) one per position.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        adam_betas: Adam's betas.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> model = TextSASRec(2, 3, ["red lipstick", "blue pen", "dry skin cream"], backbone="tiny-gpt2",
        ...                    pretrained=False, dim=8, max_length=3)
        >>> model.score_all(torch.tensor([0]), history=torch.tensor([[-1, 0, 2]])).shape
        torch.Size([1, 3])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_texts: list[str] | None = None,
        item_representation: ItemRepresentation = "fuse",
        backbone: str = "gpt2",
        pretrained: bool = True,
        pooling: Pooling = "mean",
        text_max_length: int = 32,
        use_cache: bool = True,
        freeze_backbone: bool = True,
        use_peft: bool = False,
        lora_rank: int = 8,
        lora_alpha: int = 16,
        lora_target_modules: Sequence[str] | None = None,
        dynamic_items_per_step: int | None = None,
        refresh_every_n_steps: int | None = None,
        dynamic_layers: int | None = None,
        id_dropout: float = 0.0,
        dim: int = 64,
        max_length: int = 50,
        num_layers: int = 1,
        num_heads: int = 1,
        dropout: float = 0.2,
        feedforward_dim: int | None = None,
        block: BlockLayout = "pre_norm",
        init: WeightInit = "normal",
        loss: SequenceLoss = "sampled_softmax",
        num_negatives: int = 256,
        shared_negatives: bool = True,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        if item_representation not in ("init", "fuse", "text"):
            raise ValueError(f"item_representation must be 'init', 'fuse' or 'text', got {item_representation!r}")
        if not 0 <= id_dropout < 1 or (id_dropout and item_representation != "fuse"):
            raise ValueError(f"id_dropout must be in [0, 1) and needs item_representation='fuse', got {id_dropout}")
        super().__init__(
            num_users, num_items, dim=dim, max_length=max_length, num_layers=num_layers, num_heads=num_heads,
            dropout=dropout, feedforward_dim=feedforward_dim, block=block, init=init, loss=loss,
            num_negatives=num_negatives, shared_negatives=shared_negatives, learning_rate=learning_rate,
            weight_decay=weight_decay, adam_betas=adam_betas, top_k=top_k, predict_top_k=predict_top_k,
        )  # fmt: skip
        self.save_hyperparameters()
        check_per_item(item_texts, num_items, "item_texts")
        self.item_representation, self.id_dropout = item_representation, id_dropout
        self.text_encoder = ItemTextEncoder(
            item_texts or [], backbone, pretrained, pooling, text_max_length, freeze=freeze_backbone,
            use_peft=use_peft, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_target_modules=lora_target_modules,
            dynamic_layers=dynamic_layers,
        )  # fmt: skip
        hidden = self.text_encoder.hidden_size
        # Pooled states differ in scale by backbone (MiniLM ~1, decoder states ~100): normalise first.
        self.text_projection = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))
        self.text_mode = "cached" if use_cache else "dynamic"
        self.dynamic_items_per_step, self.refresh_every_n_steps = dynamic_items_per_step, refresh_every_n_steps
        # In the checkpoint, so a resumed or reloaded ``init`` model never re-initialises its trained table.
        self.register_buffer("text_initialised", torch.tensor(False))

    @property
    def reads_text(self) -> bool:
        return self.item_representation != "init"

    # ------------------------------------------------------------------ item vectors
    def item_vectors_of(self, ids: Tensor, pooled: Tensor) -> Tensor:
        """Item vectors ``[N, dim]`` of distinct ``ids`` from their pooled text states ``[N, hidden]``."""
        vectors = self.text_projection(pooled)
        if self.item_representation == "fuse":
            ids_part = self.encoder.item_embedding(ids)
            if self.training and self.id_dropout:  # one draw per distinct item: its input and output rows agree
                ids_part = ids_part * (torch.rand(len(ids), 1, device=ids.device) >= self.id_dropout)
            vectors = vectors + ids_part
        return vectors

    def item_lookup(self, items: Tensor) -> ItemLookup:
        if self.item_representation == "init":
            return self.encoder.embed
        ids = torch.unique(items[items >= 0])
        if not len(ids):  # only padding: any finite vectors do (padded positions are masked)
            return lambda query: self.text_projection[1].bias.expand(*query.shape, -1)
        vectors = self.item_vectors_of(ids, self.pooled_text(ids))  # each distinct item encoded once
        return lambda query: vectors[torch.searchsorted(ids, query.clamp(min=0).contiguous())]

    def catalog_vectors(self) -> Tensor:
        if self.item_representation == "init":
            return super().catalog_vectors()
        catalog = torch.arange(self.num_items, device=self.device)
        return self.item_lookup(catalog)(catalog)

    def item_id_parameters(self) -> list[nn.Parameter]:
        # Only ``fuse`` has trained ID rows to fill for cold items; ``init`` keeps their text start.
        return super().item_id_parameters() if self.item_representation == "fuse" else []

    @torch.no_grad()
    def fill_untrained_items(self, num_trained_items: int, ridge: float = 1e-3) -> None:
        """``fuse``: the ID rows of items without training interactions are predicted from their text, by a ridge
        regression from the projected text vector to the ID row fitted on the trained items (the linear
        content-to-collaborative mapping of cold-start work, e.g. Gantner et al., ICDM 2010). The mean row, the
        other models' fill, leaves a cold item only its text half of the vector, which ranks it below every warm
        item."""
        if self.item_representation != "fuse" or num_trained_items >= self.num_items:
            return super().fill_untrained_items(num_trained_items)
        if self.id_dropout:  # trained to rank an item by its text alone: a cold item has no ID part
            self.encoder.item_embedding.weight[num_trained_items : self.num_items] = 0
            return
        text = self.text_projection(self.text_cache_or_build()[: self.num_items].to(self.device))
        features = torch.cat([text, text.new_ones(len(text), 1)], dim=1).double()  # with an intercept
        warm = features[:num_trained_items]
        table = self.encoder.item_embedding.weight
        gram = warm.T @ warm
        gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
        mapping = torch.linalg.solve(gram, warm.T @ table[:num_trained_items].double())
        table[num_trained_items : self.num_items] = (features[num_trained_items:] @ mapping).to(table.dtype)

    @torch.no_grad()
    def score_new_items(self, history: Tensor, texts: Sequence[str]) -> Tensor:
        """Scores items that are not in the catalog, by their ``texts`` alone, for users with ``history``
        ``[B, H]`` (item indices, ``-1`` padding); returns ``[B, len(texts)]`` on the scale of :meth:`score`.
        Needs ``item_representation="text"``: the other representations have an ID row per item."""
        if self.item_representation != "text":
            raise ValueError(
                f"score_new_items needs item_representation='text' (this model uses {self.item_representation!r}, "
                "which keeps a trained ID vector per catalog item)"
            )
        pooled = self.text_encoder.encode_texts(texts).to(self.device)
        return self.user_vectors(require_history(history, self)) @ self.text_projection(pooled).T

    # ------------------------------------------------------------------ the ``init`` representation
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.item_representation == "init" and not bool(self.text_initialised):
            self.initialise_ids_from_text()

    @torch.no_grad()
    def initialise_ids_from_text(self) -> None:
        """Sets the catalog's ID rows to the principal components of the items' text vectors."""
        rank_zero_info(f"TextSASRec: ID table initialised from the first {self.encoder.item_embedding.embedding_dim} "
                       "principal components of the item text vectors")  # fmt: skip
        table = self.encoder.item_embedding.weight
        table[: self.num_items] = principal_components(self.text_cache_or_build(), table.shape[1], std=0.02)
        self.text_initialised.fill_(True)
