"""Negative sampling, vectorised and seeded: one implementation for training and for evaluation."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

#: Rows drawn per pass. Chunks keep every pass's arrays cache-sized (at 20M interactions one pass over
#: all 80M draws is memory-bound and 3x slower); the size is fixed because the draws depend on it.
DRAW_CHUNK_ROWS = 1 << 18


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

    @cached_property
    def _counts(self) -> Tensor:
        return torch.bincount(self.keys // self.num_items)

    def count_per_user(self, num_users: int) -> Tensor:
        """Known items of each user ``0..num_users-1`` (computed once: samplers ask every epoch)."""
        counts = self._counts[:num_users]
        return torch.cat([counts, counts.new_zeros(num_users - len(counts))]) if len(counts) < num_users else counts


class TooFewUnseenItems(ValueError):
    """Some users have fewer unseen items than the sampler must return; ``users`` lists them."""

    def __init__(self, users: list[int], needed: int) -> None:
        shown = users[:10]
        super().__init__(
            f"{len(users)} users have fewer than {needed} unseen items (user indices {shown}"
            f"{' ...' if len(users) > 10 else ''})"
        )
        self.users = users


def exact_unseen_draws(users: Tensor, exclude: InteractionSet, generator: torch.Generator) -> Tensor:
    """One uniform draw per row from the items its user has not interacted with, without rejection.

    With the user's seen items sorted as ``s_0 < s_1 < ...``, ``g_j = s_j - j`` counts the unseen
    items below ``s_j``; the ``r``-th unseen item (0-based) is ``r + #{j : g_j <= r}``. One
    ``searchsorted`` over all users' ``g`` (offset per user) answers every row at once. Every user must
    have an unseen item.

    Example:
        >>> exclude = InteractionSet(torch.tensor([0, 0]), torch.tensor([1, 2]), num_items=5)
        >>> draws = exact_unseen_draws(torch.zeros(200, dtype=torch.long), exclude, torch.Generator().manual_seed(0))
        >>> sorted(set(draws.tolist()))
        [0, 3, 4]
    """
    num_items, keys = exclude.num_items, exclude.keys
    key_users, key_items = keys // num_items, keys % num_items
    first_key_of_user = torch.searchsorted(keys, key_users * num_items)
    gaps = key_items - (torch.arange(len(keys)) - first_key_of_user)  # unseen items below each seen one
    ordered = key_users * (num_items + 1) + gaps  # sorted: gaps < num_items + 1 within each user
    first_key = torch.searchsorted(keys, users * num_items)
    unseen = num_items - (torch.searchsorted(keys, (users + 1) * num_items) - first_key)
    ranks = (torch.rand(len(users), generator=generator) * unseen).long().clamp_(max=(unseen - 1).clamp(min=0))
    below = torch.searchsorted(ordered, users * (num_items + 1) + ranks, right=True) - first_key
    return ranks + below


def sample_negatives(
    users: Tensor, num_negatives: int, exclude: InteractionSet, generator: torch.Generator, max_rounds: int = 100
) -> Tensor:
    """Uniformly samples ``num_negatives`` items per user that are not in ``exclude``.

    Rejection sampling: draw all, redraw the collisions; after ``max_rounds`` the few rows still
    colliding (users who have seen nearly the whole catalog) are drawn exactly from their unseen
    items, so sampling succeeds whenever a user has one unseen item. Draws are with replacement across
    a user's negatives (as in NCF); the result depends only on the generator. Rows go in chunks of
    :data:`DRAW_CHUNK_ROWS`; passing ``users`` sorted (and permuting the result) keeps the membership
    test's lookups local, which is what makes it fast at tens of millions of rows.

    Returns:
        ``[len(users), num_negatives]`` item indices.
    """
    known = exclude.count_per_user(int(users.max()) + 1 if len(users) else 0)
    if len(users) and bool((known[users] >= exclude.num_items).any()):
        full = torch.unique(users[known[users] >= exclude.num_items]).tolist()
        raise TooFewUnseenItems(full, 1)
    negatives = torch.empty(len(users), num_negatives, dtype=torch.long)
    for start in range(0, len(users), DRAW_CHUNK_ROWS):
        chunk = users[start : start + DRAW_CHUNK_ROWS]
        negatives[start : start + len(chunk)] = _draw_unseen(chunk, num_negatives, exclude, generator, max_rounds)
    return negatives


def _draw_unseen(
    users: Tensor, num_negatives: int, exclude: InteractionSet, generator: torch.Generator, max_rounds: int
) -> Tensor:
    rows = users.repeat_interleave(num_negatives)
    negatives = torch.randint(exclude.num_items, (len(rows),), generator=generator)
    pending = torch.nonzero(exclude.contains(rows, negatives)).squeeze(1)
    for _ in range(max_rounds):
        if len(pending) == 0:
            break
        negatives[pending] = torch.randint(exclude.num_items, (len(pending),), generator=generator)
        pending = pending[exclude.contains(rows[pending], negatives[pending])]
    else:
        negatives[pending] = exact_unseen_draws(rows[pending], exclude, generator)
    return negatives.view(len(users), num_negatives)


def sample_distinct_negatives(
    users: Tensor, num_negatives: int, exclude: InteractionSet, seed: int, max_rounds: int = 1000
) -> Tensor:
    """``num_negatives`` distinct unseen items per user (the NCF evaluation protocol: 99 per user).

    Fixed by ``seed`` alone, so every model is evaluated on identical candidates. Rejection
    sampling keeps the cost proportional to the candidates, not to users x catalog; users with fewer
    than twice as many unseen items as needed, where rejection is slow, take a seeded random subset
    of their unseen items instead.

    Raises:
        TooFewUnseenItems: naming the users with fewer than ``num_negatives`` unseen items.
    """
    known = exclude.count_per_user(int(users.max()) + 1)[users]
    unseen = exclude.num_items - known
    short = unseen < num_negatives
    if bool(short.any()):
        raise TooFewUnseenItems(users[short].tolist(), num_negatives)
    generator = torch.Generator().manual_seed(seed)
    negatives = sample_negatives(users, num_negatives, exclude, generator)
    dense = torch.nonzero(unseen < 2 * num_negatives).squeeze(1)
    for row in dense.tolist():
        user = users[row : row + 1]
        candidates = torch.arange(exclude.num_items)
        candidates = candidates[~exclude.contains(user.expand_as(candidates), candidates)]
        negatives[row] = candidates[torch.randperm(len(candidates), generator=generator)[:num_negatives]]
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
