"""MLP recommender (He et al. 2017, "Neural Collaborative Filtering", Sec. 3.3)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_rec.models.base import Recommender, normal_embedding
from lightning_rec.nn.losses import RecommendationLoss
from lightning_rec.nn.towers import PairTower


def tower_dims(factor: int, num_layers: int) -> list[int]:
    """The paper's halving tower ending in ``factor``: factor 8, 3 layers -> 32, 16, 8."""
    return [factor * 2 ** (num_layers - 1 - i) for i in range(num_layers)]


class MLPBranch(nn.Module):
    """User and item embeddings through a halving ReLU tower: ``MLP([p_u; q_i])``."""

    def __init__(
        self, num_users: int, num_items: int, factor: int, num_layers: int, dropout: float = 0.0, sparse: bool = False
    ) -> None:
        super().__init__()
        dims = tower_dims(factor, num_layers)
        self.user_embedding = normal_embedding(num_users, dims[0] // 2, sparse=sparse)
        self.item_embedding = normal_embedding(num_items, dims[0] // 2, sparse=sparse)
        self.tower = PairTower(dims[0] // 2, dims[0] // 2, dims, dropout)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """``[B]`` users, ``[B, C]`` items -> ``[B, C, factor]``."""
        return self.tower(self.user_embedding(users), self.item_embedding(items))


class MLP(Recommender):
    """``score(u, i) = h^T MLP([p_u; q_i])`` with a halving ReLU tower.

    Following the paper's tower (Sec. 4.1: factor 8 gives 32 -> 16 -> 8 on 16-d embeddings), each
    embedding is half the first layer's width: ``[p_u; q_i]`` (2 x 16) -> 32 -> 16 -> 8.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        factor: width of the last hidden layer (the paper's "predictive factors").
        num_layers: hidden layers; widths halve down to ``factor``.
        dropout: dropout after each hidden layer.
        loss: ``bce`` (the paper) or ``bpr``.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.
        sparse_gradients: sparse gradients for the ID tables, stepped by catch-up Adam (dense Adam's update,
            computed only for the rows a batch looked up): a step's cost follows the batch, not the catalog. Needs
            ``weight_decay`` 0.

    Example:
        >>> import torch
        >>> model = MLP(num_users=3, num_items=5, factor=4, num_layers=2)
        >>> model.score_all(torch.tensor([0, 1])).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        factor: int = 64,
        num_layers: int = 3,
        dropout: float = 0.0,
        loss: RecommendationLoss = "bce",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
        sparse_gradients: bool = False,
    ) -> None:
        super().__init__(num_users, num_items, loss, learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        self.branch = MLPBranch(num_users, num_items, factor, num_layers, dropout, sparse_gradients)
        self.output = nn.Linear(factor, 1)

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.branch.item_embedding.weight]

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        return self.output(self.branch(users, items)).squeeze(-1)
