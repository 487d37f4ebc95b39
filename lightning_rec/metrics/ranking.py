"""Top-K ranking metrics (HR, NDCG, MRR, Recall) for several K in one pass.

The state is sums and a count, reduced by sum across processes, so full-catalog ranking never keeps
a users x items score matrix: each batch is reduced to per-K sums as soon as it is scored.

Definitions, per user with held-out targets T and candidate scores s (excluded items at -inf):
the target's position is the number of candidates ranked before it, ties broken **against** the
target (a constant scorer gets no credit): non-targets with ``s_j >= s_t`` come first, other targets
come first if they score higher, or tie and have a smaller column index.

- ``HR@K``: 1 if any target is in the top K.
- ``Recall@K``: share of the targets in the top K (equals HR@K with one target).
- ``NDCG@K``: sum over targets in the top K of ``1 / log2(position + 2)``, divided by the ideal
  ``sum_{i < min(|T|, K)} 1 / log2(i + 2)``.
- ``MRR@K``: ``1 / (position + 1)`` of the best-placed target if it is in the top K, else 0.

Each is the mean over users.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


def target_positions(scores: Tensor, targets: Tensor) -> Tensor:
    """0-based position of each target in the ranking, ties broken against the target.

    Args:
        scores: ``[B, C]`` candidate scores; excluded candidates at ``-inf``.
        targets: ``[B, T]`` column indices of the targets in ``scores``; ``-1`` pads.

    Returns:
        ``[B, T]`` positions as float, ``inf`` at padding.
    """
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN: the ranking is undefined")
    valid = targets >= 0
    columns = targets.clamp(min=0)
    target_scores = scores.gather(1, columns)  # [B, T]
    is_target = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, columns, valid)
    before = (scores.unsqueeze(1) >= target_scores.unsqueeze(2)) & ~is_target.unsqueeze(1)  # [B, T, C]
    position = before.sum(-1)
    if targets.shape[1] > 1:
        other_score, other_column = target_scores.unsqueeze(1), columns.unsqueeze(1)  # [B, 1, T]
        ahead = (other_score > target_scores.unsqueeze(2)) | (
            (other_score == target_scores.unsqueeze(2)) & (other_column < columns.unsqueeze(2))
        )
        position = position + (ahead & valid.unsqueeze(1)).sum(-1)
    return torch.where(valid, position.float(), torch.full_like(position, float("inf"), dtype=torch.float))


class RankingMetrics(Metric):
    """HR@K, NDCG@K, MRR@K and Recall@K for every K in ``top_k``.

    Args:
        top_k: the cut-offs, e.g. ``(5, 10, 20)``.

    Example:
        >>> metric = RankingMetrics(top_k=[1, 2])
        >>> scores = torch.tensor([[0.1, 0.9, 0.5], [0.8, 0.2, 0.4]])
        >>> metric.update(scores, torch.tensor([[2], [0]]))  # targets ranked 2nd and 1st
        >>> {k: round(v.item(), 4) for k, v in metric.compute().items()}["HR@1"]
        0.5
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, top_k: Sequence[int] = (10,), **kwargs) -> None:
        super().__init__(**kwargs)
        if not top_k or min(top_k) <= 0:
            raise ValueError(f"top_k must be positive cut-offs, got {top_k}")
        self.top_k = sorted(set(top_k))
        for name in ("hr", "ndcg", "mrr", "recall"):
            self.add_state(name, torch.zeros(len(self.top_k), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores: Tensor, targets: Tensor) -> None:
        """Scores one batch; ``targets`` are ``[B]`` or ``[B, T]`` column indices (``-1`` pads)."""
        if targets.dim() == 1:
            targets = targets.unsqueeze(1)
        positions = target_positions(scores, targets)  # [B, T]
        num_targets = (targets >= 0).sum(1).clamp(min=1)
        discount = 1.0 / torch.log2(positions + 2.0)  # 0 at padding (inf position)
        best = positions.min(1).values
        for i, k in enumerate(self.top_k):
            hit = positions < k
            ideal = (1.0 / torch.log2(torch.arange(k, device=scores.device) + 2.0)).cumsum(0)
            self.hr[i] += hit.any(1).sum()
            self.recall[i] += (hit.sum(1) / num_targets).sum()
            self.ndcg[i] += ((discount * hit).sum(1) / ideal[num_targets.clamp(max=k) - 1]).sum()
            self.mrr[i] += torch.where(best < k, 1.0 / (best + 1.0), 0.0).sum()
        self.count += scores.shape[0]

    def add_misses(self, count: int) -> None:
        """Users whose target no ranking can contain (an item unknown to the model): zero gain each."""
        self.count += count

    def compute(self) -> dict[str, Tensor]:
        results = {}
        count = self.count.clamp(min=1)
        for name, label in (("hr", "HR"), ("ndcg", "NDCG"), ("mrr", "MRR"), ("recall", "Recall")):
            values = getattr(self, name) / count
            results.update({f"{label}@{k}": values[i].float() for i, k in enumerate(self.top_k)})
        return results
