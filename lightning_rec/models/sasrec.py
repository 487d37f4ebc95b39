"""SASRec (Kang & McAuley 2018): a causal Transformer over the user's item sequence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_rec.models.base import Batch, Recommender, require_history, require_sequences
from lightning_rec.nn.sequence import ItemSequenceEncoder
from lightning_rec.nn.towers import dot_scores


class SASRec(Recommender):
    """Next-item prediction at every position of the user's latest items.

    ``loss="bce"`` is the paper's: each next item against one sampled negative. ``loss="ce"`` is
    full cross-entropy over the catalog, which Klenitskiy & Vasilev (RecSys 2023) show is much
    stronger. Train with the data module's ``train_mode="sequences"``; ``history_length`` is the
    maximum sequence length (the paper uses 50 for Beauty, 200 for MovieLens-1M).

    Args:
        num_users: number of users (linked from the data module; SASRec itself has no user vectors).
        num_items: number of items (linked from the data module).
        dim: hidden size.
        max_length: longest sequence the model reads; set it to the data module's ``history_length``.
        num_layers: Transformer blocks.
        num_heads: attention heads.
        dropout: dropout rate.
        loss: ``bce`` (one sampled negative per position) or ``ce`` (softmax over all items).
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

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
        loss: Literal["bce", "ce"] = "ce",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        if loss not in ("bce", "ce"):
            raise ValueError(f"SASRec loss must be 'bce' or 'ce', got {loss!r}")
        super().__init__(num_users, num_items, "bce", learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        self.sequence_loss = loss
        self.encoder = ItemSequenceEncoder(num_items, dim, max_length, num_layers, num_heads, dropout, causal=True)

    def user_vectors(self, history: Tensor) -> Tensor:
        """The hidden state after the latest item: ``[B, dim]``."""
        return self.encoder(history)[:, -1]

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.encoder.item_embedding.weight]  # the catalog's rows come first

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        vectors = self.user_vectors(require_history(history, self))
        return dot_scores(vectors, self.encoder.output_embeddings(), items)

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.user_vectors(require_history(history, self)) @ self.encoder.output_embeddings().T

    def training_loss(self, batch: Batch) -> Tensor:
        sequences = require_sequences(batch, self)
        inputs, targets = sequences[:, :-1], sequences[:, 1:]
        valid = (inputs >= 0) & (targets >= 0)
        hidden = self.encoder(inputs)[valid]  # [N, dim], one row per (position with a next item)
        targets = targets[valid]
        items = self.encoder.output_embeddings()
        if self.sequence_loss == "ce":
            return F.cross_entropy(hidden @ items.T, targets)
        negatives = batch["negative_items"][:, -inputs.shape[1] :][valid]
        positive_logits = (hidden * items[targets]).sum(-1)
        negative_logits = (hidden * items[negatives]).sum(-1)
        return F.binary_cross_entropy_with_logits(
            torch.cat([positive_logits, negative_logits]),
            torch.cat([torch.ones_like(positive_logits), torch.zeros_like(negative_logits)]),
        )
