"""MF-BPR: matrix factorisation trained with Bayesian Personalized Ranking (Rendle et al. 2009)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_rec.models.base import Recommender, bias_table, load_bias_vectors, normal_embedding
from lightning_rec.nn.losses import RecommendationLoss


class MFBPR(Recommender):
    """``score(u, i) = <p_u, q_i> + b_i`` trained on (positive, sampled negative) pairs.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        factor: embedding size.
        loss: ``bpr`` (the paper) or ``bce``.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay (the BPR regulariser).
        sparse_gradients: sparse gradients for the ID tables and biases, stepped by catch-up Adam (dense Adam's
            update, computed only for the rows a batch looked up: a step's cost follows the batch, not the catalog);
            needs weight_decay 0.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> import torch
        >>> MFBPR(num_users=3, num_items=5, factor=4).score_all(torch.tensor([0])).shape
        torch.Size([1, 5])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        factor: int = 64,
        loss: RecommendationLoss = "bpr",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
        sparse_gradients: bool = False,
    ) -> None:
        super().__init__(num_users, num_items, loss, learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        self.user_embedding = normal_embedding(num_users, factor, sparse=sparse_gradients)
        self.item_embedding = normal_embedding(num_items, factor, sparse=sparse_gradients)
        self.item_bias = bias_table(num_items, sparse=sparse_gradients)
        load_bias_vectors(self, ["item_bias"])

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.item_embedding.weight, self.item_bias.weight]

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        user_vectors = self.user_embedding(users).unsqueeze(1)
        return (user_vectors * self.item_embedding(items)).sum(-1) + self.item_bias(items).squeeze(-1)

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.user_embedding(users) @ self.item_embedding.weight.T + self.item_bias.weight.T
