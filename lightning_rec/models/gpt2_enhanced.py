"""GPT-2 enhanced recommender: ID embeddings fused with GPT-2 item text through cross-attention.

Design of the project brief (LLM-enhanced NCF): item text vectors from a language model (cached, or
extracted dynamically through LoRA adapters, Hu et al. 2022), a cross-attention block in which the
candidate item attends over the text of the user's history (DIN-style target attention, Zhou et al.
2018), a NeuMF head (He et al. 2017, Sec. 3.4) and an InfoNCE term aligning each item's ID view with
its text view (van den Oord et al. 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_rec.models.base import Batch, Recommender, check_per_item, normal_embedding
from lightning_rec.models.mlp import tower_dims
from lightning_rec.models.text_cache import ItemTextCacheMixin
from lightning_rec.nn.fusion import CrossAttentionFusion
from lightning_rec.nn.losses import RecommendationLoss, info_nce, recommendation_loss
from lightning_rec.nn.text_encoder import ItemTextEncoder, Pooling
from lightning_rec.nn.towers import PairTower
from lightning_rec.protocols import TextMode

#: Sorted distinct item ids and their text vectors, computed once per batch.
TextMemo = tuple[Tensor, Tensor]


class GPT2RecommenderEnhanced(ItemTextCacheMixin, Recommender):
    """NeuMF over user ID, item ID, item text and (optionally) history-attention features.

    ``score(u, i) = w^T [p_u * (q_i + t_i); MLP(p_u, [q_i; t_i; a_ui])]`` where ``t_i`` is the projected
    text vector of item ``i`` and ``a_ui`` the cross-attention of ``q_i + t_i`` over the text vectors of
    the user's latest items (needs ``history_length`` > 0 in the data module).

    Text vectors come from a cache of pooled backbone states (``text_mode="cached"``: the backbone does
    not run during training) or from the backbone in every step (``"dynamic"``: LoRA adapters or
    unfrozen weights learn). :class:`lightning_rec.callbacks.MetadataCacheCallback` starts cached and switches mid-fit;
    without it the model stays in the mode ``use_cache`` selects. The adapters are in the optimizer from
    the start and get no gradient while cached, so the switch needs no optimizer surgery.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        item_texts: one text per item (linked from the data module's ``item_texts``).
        backbone: Hugging Face name or path (``gpt2``), or ``tiny-gpt2`` (bundled, random init).
        pretrained: load the backbone's weights; ``False`` initialises it randomly.
        pooling: ``last`` non-pad token or ``mean`` over tokens.
        max_length: tokens per item text.
        factor: width of ID embeddings, projected text vectors and the predictive layers.
        num_layers: hidden layers of the MLP branch.
        dropout: dropout in the MLP branch.
        use_cache: start in cached mode (else dynamic from the first step).
        use_attention: fuse history text through cross-attention.
        use_text: ``False`` replaces every text vector by zeros before the projection: an IDs-only ablation
            with the same head (the projection's bias is then one learned vector shared by all items, and
            the attention sees identical keys). Needs ``contrastive_weight=0``.
        num_heads: attention heads.
        freeze_backbone: keep the backbone's own weights fixed (always so with ``use_peft``).
        use_peft: add LoRA adapters to ``lora_target_modules`` through ``peft``.
        lora_rank: LoRA rank.
        lora_alpha: LoRA scaling.
        lora_target_modules: modules that get adapters (``None``: the architecture's default, ``c_attn`` for
            GPT-2, ``q_proj``/``v_proj`` for Llama-style models such as SmolLM2).
        contrastive_weight: weight of the ID-text InfoNCE term (0 disables it).
        temperature: InfoNCE temperature.
        dynamic_items_per_step: in dynamic training, at most this many distinct items of a step (a
            random subset) go through the live encoder with gradients; the others read the in-memory
            cache. ``None``: every item, as without a budget.
        refresh_every_n_steps: with a budget, recompute the in-memory cache with the current adapters
            at every global step divisible by this while dynamic (it is always recomputed before an
            evaluation).
        dynamic_layers: run only the top ``dynamic_layers`` backbone blocks live (LoRA goes there only);
            the frozen lower blocks' outputs per item token are computed once. ``None``: all blocks.
        loss: ``bce`` or ``bpr`` over the sampled negatives.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> model = GPT2RecommenderEnhanced(3, 4, ["a red lipstick", "a blue pen", "dry skin cream", "ink"],
        ...                                 backbone="tiny-gpt2", pretrained=False, factor=8, use_peft=True)
        >>> scores, weights = model.score_with_attention(
        ...     torch.tensor([0, 1]), torch.tensor([[1, 2], [0, 3]]), torch.tensor([[-1, 0], [2, 3]]))
        >>> scores.shape, weights.shape
        (torch.Size([2, 2]), torch.Size([2, 2, 2]))
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_texts: list[str] | None = None,
        backbone: str = "gpt2",
        pretrained: bool = True,
        pooling: Pooling = "last",
        max_length: int = 32,
        factor: int = 32,
        num_layers: int = 2,
        dropout: float = 0.0,
        use_cache: bool = True,
        use_attention: bool = True,
        use_text: bool = True,
        num_heads: int = 2,
        freeze_backbone: bool = True,
        use_peft: bool = True,
        lora_rank: int = 8,
        lora_alpha: int = 16,
        lora_target_modules: Sequence[str] | None = None,
        contrastive_weight: float = 0.1,
        temperature: float = 0.1,
        dynamic_items_per_step: int | None = None,
        refresh_every_n_steps: int | None = None,
        dynamic_layers: int | None = None,
        loss: RecommendationLoss = "bce",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        super().__init__(num_users, num_items, loss, learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        check_per_item(item_texts, num_items, "item_texts")
        if not use_text and contrastive_weight > 0:
            raise ValueError("use_text=False leaves no text view to contrast with: set contrastive_weight=0")
        self.text_encoder = ItemTextEncoder(
            item_texts or [], backbone, pretrained, pooling, max_length, freeze=freeze_backbone,
            use_peft=use_peft, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_target_modules=lora_target_modules,
            dynamic_layers=dynamic_layers,
        )  # fmt: skip
        self.text_projection = nn.Linear(self.text_encoder.hidden_size, factor)
        self.user_embedding = normal_embedding(num_users, factor)
        self.item_embedding = normal_embedding(num_items, factor)
        self.fusion = CrossAttentionFusion(factor, num_heads) if use_attention else None
        item_side = (3 if use_attention else 2) * factor
        self.tower = PairTower(factor, item_side, tower_dims(factor, num_layers), dropout)
        self.output = nn.Linear(2 * factor, 1)
        self.contrastive_weight, self.temperature = contrastive_weight, temperature
        self.text_mode: TextMode = "cached" if use_cache else "dynamic"
        self.dynamic_items_per_step, self.refresh_every_n_steps = dynamic_items_per_step, refresh_every_n_steps

    # ------------------------------------------------------------------ text vectors
    @property
    def reads_text(self) -> bool:
        return self.hparams.use_text

    def text_memo(self, items: Tensor) -> TextMemo:
        """Text vectors of the distinct non-negative ids in ``items``: each item encoded once."""
        ids = torch.unique(items[items >= 0])
        if self.reads_text:
            pooled = self.pooled_text(ids)
        else:
            pooled = self.text_projection.weight.new_zeros(len(ids), self.text_encoder.hidden_size)
        return ids, self.text_projection(pooled)

    @staticmethod
    def lookup(memo: TextMemo, items: Tensor) -> Tensor:
        ids, vectors = memo
        return vectors[torch.searchsorted(ids, items.clamp(min=0))]

    # ------------------------------------------------------------------ scoring
    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.item_embedding.weight]

    def score_with_attention(
        self, users: Tensor, items: Tensor, history: Tensor | None = None, memo: TextMemo | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Scores ``[B, C]`` and the attention weights ``[B, C, H]`` over ``history`` (``None``
        without attention)."""
        if self.fusion is not None and history is None:
            raise ValueError("use_attention needs the users' history: set the data module's history_length > 0")
        if memo is None:
            memo = self.text_memo(items if history is None else torch.cat([items, history], dim=1))
        user = self.user_embedding(users)
        item_id, item_text = self.item_embedding(items), self.lookup(memo, items)
        item_side, weights = [item_id, item_text], None
        if self.fusion is not None:
            fused, weights = self.fusion(item_id + item_text, self.lookup(memo, history), history >= 0)
            item_side.append(fused)
        gmf = user.unsqueeze(1) * (item_id + item_text)
        mlp = self.tower(user, torch.cat(item_side, dim=-1))
        return self.output(torch.cat([gmf, mlp], dim=-1)).squeeze(-1), weights

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        return self.score_with_attention(users, items, history)[0]

    def training_loss(self, batch: Batch) -> Tensor:
        items = torch.cat([batch["item"].unsqueeze(1), batch["negative_items"]], dim=1)
        history = batch.get("history") if self.fusion is not None else None
        memo = self.text_memo(items if history is None else torch.cat([items, history], dim=1))
        scores, _ = self.score_with_attention(batch["user"], items, history, memo)
        loss = recommendation_loss(scores[:, :1], scores[:, 1:], self.loss_kind)
        if self.contrastive_weight > 0:
            positives = torch.unique(batch["item"])
            contrastive = info_nce(self.item_embedding(positives), self.lookup(memo, positives), self.temperature)
            self.log("train/contrastive", contrastive, batch_size=len(positives))
            loss = loss + self.contrastive_weight * contrastive
        self.log("train/text_dynamic", float(self.text_mode == "dynamic"), batch_size=len(items))
        return loss

    def predict_step(self, batch: Batch, batch_idx: int) -> Batch:
        """Top-K items plus, with attention, the weights each put on the user's latest items."""
        prediction = super().predict_step(batch, batch_idx)
        if self.fusion is not None:
            # Empty slots (-1) get weights too; the writer skips them.
            items = prediction["items"].clamp(min=0)
            _, weights = self.score_with_attention(batch["user"], items, batch["history"])
            prediction.update(history=batch["history"], attention=weights)
        return prediction
