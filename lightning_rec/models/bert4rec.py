"""BERT4Rec (Sun et al. 2019): a bidirectional Transformer trained to fill in masked items."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_rec.models.base import Batch, Recommender, require_history, require_sequences
from lightning_rec.nn.sequence import ItemSequenceEncoder
from lightning_rec.nn.towers import dot_scores


class BERT4Rec(Recommender):
    """Cloze training: a share ``mask_probability`` of each training sequence becomes ``[MASK]``
    and the model predicts those items over the whole catalog. At inference ``[MASK]`` is appended
    after the user's latest items ("mask last") and its prediction ranks the catalog.

    Train with the data module's ``train_mode="sequences"``; the sequence read is the latest
    ``max_length`` items, so set ``max_length`` to the data module's ``history_length``.

    Args:
        num_users: number of users (linked from the data module; unused by the model).
        num_items: number of items (linked from the data module).
        dim: hidden size.
        max_length: longest sequence, ``[MASK]`` included at inference.
        num_layers: Transformer blocks.
        num_heads: attention heads.
        dropout: dropout rate.
        mask_probability: share of training positions masked (the paper: 0.2 for Beauty).
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> import torch
        >>> model = BERT4Rec(num_users=2, num_items=6, dim=8, max_length=3)
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
        num_heads: int = 2,
        dropout: float = 0.1,
        mask_probability: float = 0.2,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        if not 0 < mask_probability < 1:
            raise ValueError(f"mask_probability must be in (0, 1), got {mask_probability}")
        super().__init__(num_users, num_items, "bce", learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        self.mask_probability = mask_probability
        self.encoder = ItemSequenceEncoder(num_items, dim, max_length, num_layers, num_heads, dropout, causal=False)

    def user_vectors(self, history: Tensor) -> Tensor:
        """Hidden state of a ``[MASK]`` appended after the latest ``max_length - 1`` items."""
        history = require_history(history, self)[:, -(self.encoder.max_length - 1) :]
        mask_column = torch.full_like(history[:, :1], self.encoder.mask_item)
        return self.encoder(torch.cat([history, mask_column], dim=1))[:, -1]

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.encoder.item_embedding.weight]  # the catalog's rows come first

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        return dot_scores(self.user_vectors(history), self.encoder.output_embeddings(), items)

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.user_vectors(history) @ self.encoder.output_embeddings().T

    def training_loss(self, batch: Batch) -> Tensor:
        sequences = require_sequences(batch, self)[:, -self.encoder.max_length :]
        real = sequences >= 0
        masked = real & (torch.rand(sequences.shape, device=sequences.device) < self.mask_probability)
        # Rows where nothing was drawn mask their latest item: every user contributes, and the
        # inference-time task (predict the last item) is trained directly.
        masked[:, -1] |= ~masked.any(1) & real[:, -1]
        inputs = sequences.masked_fill(masked, self.encoder.mask_item)
        hidden = self.encoder(inputs)[masked]
        classes = self.encoder.output_embeddings()[: self.num_training_items]
        return F.cross_entropy(hidden @ classes.T, sequences[masked])
