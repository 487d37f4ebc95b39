"""Recommendation losses on a positive score and sampled negative scores."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

RecommendationLoss = Literal["bce", "bpr", "softmax"]


def recommendation_loss(positive: Tensor, negative: Tensor, kind: RecommendationLoss) -> Tensor:
    """Loss of logits ``positive`` ``[B, 1]`` against ``negative`` ``[B, N]``.

    ``bce``: pointwise log loss with label 1 for positives, 0 for negatives, averaged over all
    ``B * (1 + N)`` instances (NCF, He et al. 2017, eq. 7). ``bpr``: ``-log sigmoid(pos - neg)``
    averaged over the ``B * N`` pairs (Rendle et al. 2009, eq. 4, regularisation via weight decay).
    ``softmax``: sampled softmax, cross-entropy of the positive among itself and its negatives
    (YouTubeDNN, Covington et al. 2016; uniform negatives need no log-Q correction).
    """
    if kind == "bce":
        logits = torch.cat([positive, negative], dim=1)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)
    if kind == "bpr":
        return -F.logsigmoid(positive - negative).mean()
    if kind == "softmax":
        logits = torch.cat([positive, negative], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
    raise ValueError(f"unknown loss {kind!r}; choose 'bce', 'bpr' or 'softmax'")


def info_nce(first_view: Tensor, second_view: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric InfoNCE between two views of the same ``N`` objects (row ``k`` of each).

    Cosine similarities over temperature; each row's positive is its counterpart in the other view and
    the other ``N - 1`` rows are in-batch negatives (van den Oord et al. 2018; CLIP's symmetric form).
    Pass distinct objects: a duplicate would be its own false negative.
    """
    if len(first_view) != len(second_view):
        raise ValueError("both views need the same number of rows")
    first, second = F.normalize(first_view, dim=-1), F.normalize(second_view, dim=-1)
    logits = first @ second.T / temperature
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def sampled_softmax(
    hidden: Tensor, positive_vectors: Tensor, negative_vectors: Tensor, accidental_hits: Tensor
) -> Tensor:
    """Sampled softmax: cross-entropy of each positive among itself and ``K`` sampled negatives.

    ``hidden`` ``[N, D]`` (one row per prediction), ``positive_vectors`` ``[N, D]``; ``negative_vectors`` is
    ``[K, D]`` when every row shares the same negatives or ``[N, K, D]`` when each row has its own;
    ``accidental_hits`` ``[N, K]`` is True where a negative is the row's own positive, whose logit is
    dropped. Uniform negatives need no log-Q correction (every item has the same ``log Q``, which cancels
    in the softmax).

    Example:
        >>> hidden = torch.tensor([[1.0, 0.0]])
        >>> loss = sampled_softmax(hidden, hidden, torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        ...                        torch.tensor([[True, False]]))
        >>> round(float(loss), 4)  # the hit is dropped: log(1 + e^0 / e^1)
        0.3133
    """
    positive = (hidden * positive_vectors).sum(-1, keepdim=True)
    if negative_vectors.dim() == 2:
        negative = hidden @ negative_vectors.T
    else:
        negative = torch.bmm(negative_vectors, hidden.unsqueeze(-1)).squeeze(-1)
    logits = torch.cat([positive, negative.masked_fill(accidental_hits, float("-inf"))], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
