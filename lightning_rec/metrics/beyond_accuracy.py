"""Beyond-accuracy metrics of top-K lists from item categories (GPT4Rec's spirit, our formulas).

GPT4Rec reports diversity and coverage without formulas at hand, so they are defined here:

- ``Diversity@K``: mean over users of the average pairwise Jaccard distance
  ``1 - |A ∩ B| / |A ∪ B|`` between the category sets of the top-K items (pairs of items that both
  have no category count as distance 0); a list with fewer than two items scores 0.
- ``Coverage@K``: mean over users of ``|categories(top-K) ∩ categories(held-out)| / |categories(held-out)|``;
  users whose held-out items have no category are not counted.
- ``CatalogCoverage@K``: share of the catalog recommended to at least one user in its top K.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


def category_matrix(item_categories: Sequence[Sequence[str]]) -> Tensor:
    """``[num_items, num_categories]`` 0/1 float matrix of the items' category sets."""
    vocabulary = {name: k for k, name in enumerate(sorted({c for cats in item_categories for c in cats}))}
    matrix = torch.zeros(len(item_categories), max(1, len(vocabulary)))
    for item, categories in enumerate(item_categories):
        for name in categories:
            matrix[item, vocabulary[name]] = 1.0
    return matrix


def pairwise_jaccard_diversity(top_items: Tensor, categories: Tensor) -> Tensor:
    """``[B]`` average pairwise Jaccard distance of the category sets of ``top_items`` ``[B, K]``
    (``-1`` entries are empty slots and are skipped)."""
    valid = top_items >= 0
    sets = categories[top_items.clamp(min=0)] * valid.unsqueeze(-1)  # [B, K, C]
    intersection = sets @ sets.transpose(1, 2)
    sizes = sets.sum(-1)
    union = sizes.unsqueeze(2) + sizes.unsqueeze(1) - intersection
    distance = torch.where(union > 0, 1 - intersection / union.clamp(min=1), torch.zeros_like(union))
    pair = (valid.unsqueeze(2) & valid.unsqueeze(1)).float()
    pair = pair * (1 - torch.eye(top_items.shape[1], device=top_items.device))
    pairs = pair.sum((1, 2))
    return torch.where(pairs > 0, (distance * pair).sum((1, 2)) / pairs.clamp(min=1), torch.zeros_like(pairs))


def category_coverage(top_items: Tensor, held_out_items: Tensor, categories: Tensor) -> tuple[Tensor, Tensor]:
    """Per user, the share of the held-out items' categories that the top-K items cover, and
    whether the user counts (its held-out items have at least one category). Inputs are ``[B, K]``
    and ``[B, T]`` item indices with ``-1`` as padding."""
    recommended = (categories[top_items.clamp(min=0)] * (top_items >= 0).unsqueeze(-1)).amax(1)  # [B, C]
    wanted = (categories[held_out_items.clamp(min=0)] * (held_out_items >= 0).unsqueeze(-1)).amax(1)
    size = wanted.sum(-1)
    share = (recommended * wanted).sum(-1) / size.clamp(min=1)
    return share, size > 0


class BeyondAccuracyMetrics(Metric):
    """``Diversity@K``, ``Coverage@K`` and ``CatalogCoverage@K`` for several K, summed over users and
    reduced across processes (formulas in the module docstring).

    Example:
        >>> metric = BeyondAccuracyMetrics([["Drama"], ["Drama", "War"], ["Comedy"]], top_k=[2])
        >>> metric.update(torch.tensor([[0, 1]]), torch.tensor([[2]]))
        >>> {k: round(float(v), 3) for k, v in metric.compute().items()}
        {'Diversity@2': 0.5, 'Coverage@2': 0.0, 'CatalogCoverage@2': 0.667}
    """

    full_state_update = False

    def __init__(self, item_categories: Sequence[Sequence[str]], top_k: Sequence[int] = (10,), **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_k = sorted(set(top_k))
        self.register_buffer("categories", category_matrix(item_categories), persistent=False)
        num_items, k = len(item_categories), len(self.top_k)
        self.add_state("diversity", torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("coverage", torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("users", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("users_with_categories", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("recommended", torch.zeros(k, num_items), dist_reduce_fx="max")

    def update(self, top_items: Tensor, held_out_items: Tensor) -> None:
        """``top_items`` ``[B, K_max]`` ranked item indices (``-1`` = empty slot); ``held_out_items``
        ``[B, T]`` the users' held-out items (``-1`` padding)."""
        self.users += len(top_items)
        for j, k in enumerate(self.top_k):
            top = top_items[:, :k]
            self.diversity[j] += pairwise_jaccard_diversity(top, self.categories).sum().double()
            share, counted = category_coverage(top, held_out_items, self.categories)
            self.coverage[j] += (share * counted).sum().double()
            listed = top[top >= 0]
            self.recommended[j, listed] = 1.0
        self.users_with_categories += category_coverage(top_items[:, :1], held_out_items, self.categories)[1].sum()

    def compute(self) -> dict[str, Tensor]:
        result = {}
        for j, k in enumerate(self.top_k):
            result[f"Diversity@{k}"] = (self.diversity[j] / self.users.clamp(min=1)).float()
            result[f"Coverage@{k}"] = (self.coverage[j] / self.users_with_categories.clamp(min=1)).float()
            result[f"CatalogCoverage@{k}"] = self.recommended[j].mean()
        return result
