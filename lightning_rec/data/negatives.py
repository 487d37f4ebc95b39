"""Negative sampling, vectorised and seeded: one implementation for training and for evaluation."""

from __future__ import annotations

import torch
from torch import Tensor


class InteractionSet:
    """Fast membership test for (user, item) pairs, as sorted ``user * num_items + item`` keys.

    Example:
        >>> pairs = InteractionSet(torch.tensor([0, 0, 1]), torch.tensor([2, 3, 0]), num_items=4)
        >>> pairs.contains(torch.tensor([0, 1, 1]), torch.tensor([3, 3, 0])).tolist()
        [True, False, True]
    """

    def __init__(self, users: Tensor, items: Tensor, num_items: int) -> None:
        self.num_items = num_items
        self.keys = torch.unique(users.long() * num_items + items.long())  # sorted

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        query = users.long() * self.num_items + items.long()
        position = torch.searchsorted(self.keys, query).clamp_(max=len(self.keys) - 1)
        return self.keys[position] == query

    def count_per_user(self, num_users: int) -> Tensor:
        return torch.bincount(self.keys // self.num_items, minlength=num_users)


def sample_negatives(
    users: Tensor, num_negatives: int, exclude: InteractionSet, generator: torch.Generator, max_rounds: int = 100
) -> Tensor:
    """Uniformly samples ``num_negatives`` items per user that are not in ``exclude``.

    Rejection sampling: draw all, redraw the collisions until none is left. Draws are with
    replacement across a user's negatives (as in NCF); the result depends only on the generator.

    Returns:
        ``[len(users), num_negatives]`` item indices.
    """
    known = exclude.count_per_user(int(users.max()) + 1 if len(users) else 0)
    if len(users) and bool((known[users] >= exclude.num_items).any()):
        raise ValueError("a user has interacted with every item: no negative can be sampled for it")
    rows = users.repeat_interleave(num_negatives)
    negatives = torch.randint(exclude.num_items, (len(rows),), generator=generator)
    pending = torch.arange(len(rows))
    for _ in range(max_rounds):
        pending = pending[exclude.contains(rows[pending], negatives[pending])]
        if len(pending) == 0:
            return negatives.view(len(users), num_negatives)
        negatives[pending] = torch.randint(exclude.num_items, (len(pending),), generator=generator)
    raise RuntimeError(f"negative sampling did not converge in {max_rounds} rounds: users have too few unseen items")


def sample_distinct_negatives(
    users: Tensor, num_negatives: int, exclude: InteractionSet, seed: int, max_rounds: int = 1000
) -> Tensor:
    """``num_negatives`` distinct unseen items per user (the NCF evaluation protocol: 99 per user).

    Fixed by ``seed`` alone, so every model is evaluated on identical candidates. Rejection
    sampling keeps the cost proportional to the candidates, not to users x catalog.
    """
    known = exclude.count_per_user(int(users.max()) + 1)[users]
    short = torch.nonzero(exclude.num_items - known < num_negatives).squeeze(1)
    if len(short):
        raise ValueError(f"{len(short)} users have fewer than {num_negatives} unseen items; lower num_eval_negatives")
    generator = torch.Generator().manual_seed(seed)
    negatives = sample_negatives(users, num_negatives, exclude, generator)
    rows = users.unsqueeze(1).expand_as(negatives)
    for _ in range(max_rounds):
        ordered, order = negatives.sort(dim=1)
        repeated = torch.zeros_like(negatives, dtype=torch.bool)
        repeated.scatter_(1, order[:, 1:], ordered[:, 1:] == ordered[:, :-1])
        if not bool(repeated.any()):
            return negatives
        while bool(repeated.any()):  # redraw the repeats until each avoids the user's seen items
            redraw = repeated.nonzero(as_tuple=True)
            negatives[redraw] = torch.randint(exclude.num_items, (len(redraw[0]),), generator=generator)
            repeated[redraw] = exclude.contains(rows[redraw], negatives[redraw])
    raise RuntimeError(f"distinct negative sampling did not converge in {max_rounds} rounds")
