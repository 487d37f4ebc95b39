"""SASRec (Kang & McAuley 2018): a causal Transformer over the user's item sequence."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_rec.models.base import Batch, Recommender, require_history, require_sequences
from lightning_rec.nn.losses import sampled_softmax
from lightning_rec.nn.sequence import BlockLayout, ItemSequenceEncoder, WeightInit, trim_left_padding

SequenceLoss = Literal["bce", "ce", "sampled_softmax"]
#: Item indices (any shape, ``-1`` padding) -> item vectors ``[..., dim]``.
ItemLookup = Callable[[Tensor], Tensor]


class SASRec(Recommender):
    """Next-item prediction at every position of the user's latest items.

    ``loss="bce"`` is the paper's: each next item against one sampled negative. ``loss="ce"`` is
    full cross-entropy over the catalog, which Klenitskiy & Vasilev (RecSys 2023) show is much
    stronger. ``loss="sampled_softmax"`` is cross-entropy against ``num_negatives`` uniform negatives,
    drawn once per step and shared by every position, or drawn for each position on its own with
    ``shared_negatives=False`` (as eSASRec trains in RecTools): close to full CE at a fraction of its
    cost on large catalogs. Train with the data module's ``train_mode="sequences"``;
    ``history_length`` is the maximum sequence length (the paper uses 50 for Beauty, 200 for
    MovieLens-1M). Batches are cut to their longest sequence, which is exact.

    Args:
        num_users: number of users (linked from the data module; SASRec itself has no user vectors).
        num_items: number of items (linked from the data module).
        dim: hidden size.
        max_length: longest sequence the model reads; set it to the data module's ``history_length``.
        num_layers: Transformer blocks.
        num_heads: attention heads.
        dropout: dropout rate.
        feedforward_dim: width of each block's feed-forward layer (``None``: ``4 * dim``; the SASRec paper
            and RecTools use ``dim``).
        block: ``pre_norm`` (GELU) or the SASRec authors' layout ``sasrec`` (ReLU, residuals on the normalised
            inputs), as RecTools' SASRec.
        init: ``normal`` (tables N(0, 0.02)) or ``xavier`` (Xavier-normal for every matrix, as RecTools).
        loss: ``bce`` (one sampled negative per position), ``ce`` (softmax over every item with training
            interactions: a cold-start item held out stays out) or ``sampled_softmax`` (softmax over the positive
            and ``num_negatives`` negatives).
        num_negatives: negatives per step for ``sampled_softmax``, drawn uniformly from the items with
            training interactions; a negative equal to a position's own target is left out of its softmax.
        shared_negatives: with ``sampled_softmax``, one draw of ``num_negatives`` per step shared by every
            position (cheap), or (False) a draw of its own for every position (more distinct negatives a step).
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        adam_betas: Adam's betas (RecTools trains its transformers with ``(0.9, 0.98)``).
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.
        sparse_gradients: sparse gradients for the item table, stepped by catch-up Adam: a step computes only the
            rows it looked up (with ``sampled_softmax`` or ``bce``; full ``ce`` looks up every item).

    Example:
        >>> import torch
        >>> model = SASRec(num_users=2, num_items=6, dim=8, max_length=3)
        >>> model.score_all(torch.tensor([0]), history=torch.tensor([[-1, 2, 3]])).shape
        torch.Size([1, 6])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        max_length: int = 50,
        num_layers: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        feedforward_dim: int | None = None,
        block: BlockLayout = "pre_norm",
        init: WeightInit = "normal",
        loss: SequenceLoss = "ce",
        num_negatives: int = 256,
        shared_negatives: bool = True,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
        sparse_gradients: bool = False,
    ) -> None:
        if loss not in ("bce", "ce", "sampled_softmax"):
            raise ValueError(f"SASRec loss must be 'bce', 'ce' or 'sampled_softmax', got {loss!r}")
        if sparse_gradients and loss == "ce":
            raise ValueError(
                "sparse_gradients=True pays only with loss='sampled_softmax' or 'bce' (full cross-entropy looks up "
                "every item at every step): change the loss or leave sparse_gradients off"
            )
        super().__init__(num_users, num_items, "bce", learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        self.sequence_loss, self.num_negatives, self.shared_negatives = loss, num_negatives, shared_negatives
        self.adam_betas = adam_betas
        self.encoder = ItemSequenceEncoder(
            num_items, dim, max_length, num_layers, num_heads, dropout, causal=True, sparse=sparse_gradients,
            feedforward_dim=feedforward_dim, block=block, init=init,
        )  # fmt: skip

    # ------------------------------------------------------------------ item vectors (text models override)
    def item_lookup(self, items: Tensor) -> ItemLookup:
        """A function giving the vectors of any of ``items`` (all indices a step will look up): here the
        ID table; text-based subclasses encode each distinct item of ``items`` once."""
        return self.encoder.embed

    def catalog_vectors(self) -> Tensor:
        """``[num_items, dim]``: the output item vectors (tied with the input embeddings)."""
        return self.encoder.output_embeddings()

    # ------------------------------------------------------------------ scoring
    def user_vectors(self, history: Tensor) -> Tensor:
        """The hidden state after the latest item: ``[B, dim]``."""
        history = trim_left_padding(history[:, -self.encoder.max_length :])
        return self.encoder(history, self.item_lookup(history)(history))[:, -1]

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.encoder.item_embedding.weight]  # the catalog's rows come first

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        vectors = self.user_vectors(require_history(history, self))
        return (vectors.unsqueeze(1) * self.item_lookup(items)(items)).sum(-1)

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.user_vectors(require_history(history, self)) @ self.catalog_vectors().T

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: Batch) -> Tensor:
        sequences = trim_left_padding(require_sequences(batch, self)[:, -(self.encoder.max_length + 1) :])
        inputs, targets = sequences[:, :-1], sequences[:, 1:]
        valid = (inputs >= 0) & (targets >= 0)
        if self.sequence_loss == "ce":
            lookup = self.item_lookup(torch.arange(self.num_training_items, device=sequences.device))
        elif self.sequence_loss == "sampled_softmax":
            shape = (self.num_negatives,) if self.shared_negatives else (int(valid.sum()), self.num_negatives)
            negatives = torch.randint(self.num_training_items, shape, device=sequences.device)
            lookup = self.item_lookup(torch.cat([sequences.flatten(), negatives.flatten()]))
        else:
            negatives = batch["negative_items"][:, -inputs.shape[1] :][valid]
            lookup = self.item_lookup(torch.cat([sequences.flatten(), negatives]))
        hidden = self.encoder(inputs, lookup(inputs))[valid]  # [N, dim], one row per position with a next item
        targets = targets[valid]
        if self.sequence_loss == "ce":
            classes = torch.arange(self.num_training_items, device=hidden.device)
            return F.cross_entropy(hidden @ lookup(classes).T, targets)
        if self.sequence_loss == "sampled_softmax":
            hits = targets.unsqueeze(1) == negatives  # [N, K], shared negatives broadcast over the rows
            return sampled_softmax(hidden, lookup(targets), lookup(negatives), hits)
        positive_logits = (hidden * lookup(targets)).sum(-1)
        negative_logits = (hidden * lookup(negatives)).sum(-1)
        return F.binary_cross_entropy_with_logits(
            torch.cat([positive_logits, negative_logits]),
            torch.cat([torch.ones_like(positive_logits), torch.zeros_like(negative_logits)]),
        )
