"""GMF: Generalized Matrix Factorization (He et al. 2017, "Neural Collaborative Filtering", Sec. 3.2)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_rec.models.base import Recommender, normal_embedding
from lightning_rec.nn.losses import RecommendationLoss


class GMFBranch(nn.Module):
    """User and item embeddings combined by element-wise product: ``p_u * q_i``."""

    def __init__(self, num_users: int, num_items: int, factor: int, sparse: bool = False) -> None:
        super().__init__()
        self.user_embedding = normal_embedding(num_users, factor, sparse=sparse)
        self.item_embedding = normal_embedding(num_items, factor, sparse=sparse)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """``[B]`` users, ``[B, C]`` items -> ``[B, C, factor]``."""
        return self.user_embedding(users).unsqueeze(1) * self.item_embedding(items)


class GMF(Recommender):
    """``score(u, i) = h^T (p_u * q_i)``: matrix factorisation with a learned output weighting.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        factor: embedding size (the paper's "predictive factors").
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
        >>> model = GMF(num_users=3, num_items=5, factor=4)
        >>> model.score(torch.tensor([0, 2]), torch.tensor([[1, 2], [3, 4]])).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        factor: int = 64,
        loss: RecommendationLoss = "bce",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
        sparse_gradients: bool = False,
    ) -> None:
        super().__init__(num_users, num_items, loss, learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        self.branch = GMFBranch(num_users, num_items, factor, sparse_gradients)
        self.output = nn.Linear(factor, 1)

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.branch.item_embedding.weight]

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        return self.output(self.branch(users, items)).squeeze(-1)

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        weighted_users = self.branch.user_embedding(users) * self.output.weight  # [B, factor]
        return weighted_users @ self.branch.item_embedding.weight.T + self.output.bias
