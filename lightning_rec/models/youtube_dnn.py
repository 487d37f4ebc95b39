"""YouTubeDNN candidate generation (Covington et al. 2016): mean-pooled history, MLP user tower."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_rec.models.base import Recommender, normal_embedding, require_history
from lightning_rec.nn.losses import RecommendationLoss
from lightning_rec.nn.towers import dot_scores, history_mean


class YouTubeDNN(Recommender):
    """``score(u, i) = <MLP(mean(e_h for h in history(u))), w_i>`` with a softmax over the positive
    and its sampled negatives (the paper's sampled softmax). Needs the data module's
    ``history_length`` > 0; users are their histories, so the model has no user ID vectors.

    Args:
        num_users: number of users (linked from the data module; unused, users are histories).
        num_items: number of items (linked from the data module).
        factor: width of item embeddings and of the user vector.
        hidden_dims: widths of the user tower's ReLU layers.
        loss: ``softmax`` (sampled softmax, the paper), ``bce`` or ``bpr``.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> import torch
        >>> model = YouTubeDNN(num_users=2, num_items=6, factor=8)
        >>> model.score(torch.tensor([0]), torch.tensor([[1, 2]]), history=torch.tensor([[-1, 3]])).shape
        torch.Size([1, 2])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        factor: int = 64,
        hidden_dims: Sequence[int] = (256, 128),
        loss: RecommendationLoss = "softmax",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        super().__init__(num_users, num_items, loss, learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        self.history_embedding = normal_embedding(num_items, factor, std=0.1)
        layers: list[nn.Module] = []
        width = factor
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.user_tower = nn.Sequential(*layers, nn.Linear(width, factor))
        # The softmax weights: a second item table, as in the paper (input and output not tied).
        self.output_embedding = normal_embedding(num_items, factor, std=0.1)

    def user_vectors(self, history: Tensor | None) -> Tensor:
        return self.user_tower(history_mean(self.history_embedding.weight, require_history(history, self)))

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.history_embedding.weight, self.output_embedding.weight]

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        return dot_scores(self.user_vectors(history), self.output_embedding.weight, items)

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.user_vectors(history) @ self.output_embedding.weight.T
