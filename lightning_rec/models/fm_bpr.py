"""FM-BPR: a factorization machine (Rendle 2010) over user, item and item categories, BPR loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_rec.models.base import Recommender, bias_table, load_bias_vectors, normal_embedding
from lightning_rec.nn.losses import RecommendationLoss


class FMBPR(Recommender):
    """A second-order factorization machine on the features ``{user, item, categories of the item}``
    (categories weighted ``1/count``), trained with BPR (Rendle et al. 2009) on sampled negatives.

    With ``x`` the feature vector, ``y(x) = w0 + sum_j w_j x_j + sum_{j<k} <v_j, v_k> x_j x_k``. For a
    user ``u`` and item ``i`` with item-side features ``S_i = {i} + categories(i)`` this is
    ``w_u + L_i + <v_u, V_i> + P_i`` with ``V_i = sum_{j in S_i} x_j v_j``, ``L_i`` the item-side linear
    terms and ``P_i`` the item-side pairwise terms, so scoring the whole catalog is one matrix product.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        item_categories: category names of each item (linked from the data module's ``item_categories``).
        factor: latent size of every feature.
        loss: ``bpr`` (default) or ``bce``.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay (the regulariser).
        sparse_gradients: sparse gradients for the factor and bias tables, stepped by catch-up Adam (a step
            computes and steps only the rows of the batch's users, items and their categories, each row catching
            up on Adam's drift when next looked up); needs weight_decay 0.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> import torch
        >>> model = FMBPR(2, 3, [["Comedy"], ["Drama", "War"], []], factor=4)
        >>> model.score_all(torch.tensor([0, 1])).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_categories: list[list[str]] | None = None,
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
        item_categories = item_categories if item_categories is not None else [[] for _ in range(num_items)]
        if len(item_categories) != num_items:
            raise ValueError(f"got categories for {len(item_categories)} items, expected {num_items}")
        vocabulary = sorted({c for categories in item_categories for c in categories})
        self.category_names = vocabulary
        index = {name: k for k, name in enumerate(vocabulary)}
        width = max(1, max((len(c) for c in item_categories), default=1))
        category_ids = torch.full((num_items, width), -1, dtype=torch.long)
        for item, categories in enumerate(item_categories):
            category_ids[item, : len(categories)] = torch.tensor([index[c] for c in categories], dtype=torch.long)
        self.register_buffer("category_ids", category_ids)
        num_categories = max(1, len(vocabulary))
        self.user_factors = normal_embedding(num_users, factor, sparse=sparse_gradients)
        self.item_factors = normal_embedding(num_items, factor, sparse=sparse_gradients)
        self.category_factors = normal_embedding(num_categories, factor, sparse=sparse_gradients)
        self.user_bias = bias_table(num_users, sparse_gradients)
        self.item_bias = bias_table(num_items, sparse_gradients)
        self.category_bias = bias_table(num_categories, sparse_gradients)
        load_bias_vectors(self, ["user_bias", "item_bias", "category_bias"])

    def item_side(self, items: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``V`` ``[..., factor]`` and ``L + P`` ``[...]`` of ``items`` (any shape; every item by default)."""
        if items is None:
            items = torch.arange(self.num_items, device=self.category_ids.device)
        category_ids = self.category_ids[items]  # [..., width], -1 where the item has fewer categories
        present = category_ids >= 0
        weights = present / present.sum(-1, keepdim=True).clamp(min=1)  # x_c = 1/|categories|
        categories = category_ids.clamp(min=0)
        category_vectors = self.category_factors(categories) * weights.unsqueeze(-1)
        # Features j of item i with values x_j: the item itself (x = 1) and its categories.
        vectors = torch.cat([self.item_factors(items).unsqueeze(-2), category_vectors], dim=-2)
        summed = vectors.sum(-2)
        pairwise = 0.5 * (summed.pow(2).sum(-1) - vectors.pow(2).sum((-2, -1)))
        linear = self.item_bias(items).squeeze(-1) + (self.category_bias(categories).squeeze(-1) * weights).sum(-1)
        return summed, linear + pairwise

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.item_factors.weight, self.item_bias.weight]

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        vectors, item_terms = self.item_side(items)  # only the batch's items: the step follows the batch
        user_vectors = self.user_factors(users).unsqueeze(1)
        return self.user_bias(users) + item_terms + (user_vectors * vectors).sum(-1)

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        vectors, item_terms = self.item_side()
        return self.user_bias(users) + item_terms + self.user_factors(users) @ vectors.T
