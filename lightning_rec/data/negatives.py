"""Negative sampling, vectorised and seeded: one implementation for training and for evaluation."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

#: Rows drawn per pass. Chunks keep every pass's arrays cache-sized (at 20M interactions one pass over
#: all 80M draws is memory-bound and 3x slower); the size is fixed because the draws depend on it.
DRAW_CHUNK_ROWS = 1 << 18


def pair_keys(users: Tensor, items: Tensor, num_items: int) -> Tensor:
    """The distinct ``(user, item)`` pairs as sorted ``user * num_items + item`` keys."""
    return torch.unique(users.long() * num_items + items.long())


class InteractionSet:
    """Fast membership test for (user, item) pairs, as sorted ``user * num_items + item`` keys.

    Example:
        >>> pairs = InteractionSet(torch.tensor([0, 0, 1]), torch.tensor([2, 3, 0]), num_items=4)
        >>> pairs.contains(torch.tensor([0, 1, 1]), torch.tensor([3, 3, 0])).tolist()
        [True, False, True]
    """

    def __init__(self, users: Tensor, items: Tensor, num_items: int) -> None:
        self.num_items = num_items
        self.keys = pair_keys(users, items, num_items)

    @classmethod
    def from_keys(cls, keys: Tensor, num_items: int) -> InteractionSet:
        """The set of the sorted, distinct ``keys`` of :func:`pair_keys` (as prepared data keeps them)."""
        pairs = cls.__new__(cls)
        pairs.num_items, pairs.keys = num_items, keys
        return pairs

    def contains(self, users: Tensor, items: Tensor, users_sorted: bool = False) -> Tensor:
        """True where ``(user, item)`` is in the set. With ``users_sorted`` (ascending), the search runs over
        the keys of those users only: a cache-sized slice at tens of millions of keys."""
        query = users.long() * self.num_items + items.long()
        keys = self.keys
        if users_sorted and len(users):
            bounds = torch.stack([users[0], users[-1] + 1]).long() * self.num_items
            first, end = torch.searchsorted(keys, bounds).tolist()
            keys = keys[first:end]
        if len(keys) == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        position = torch.searchsorted(keys, query).clamp_(max=len(keys) - 1)
        return keys[position] == query

    @cached_property
    def _counts(self) -> Tensor:
        # The keys are sorted by user: each user's count is the gap between its first key and the next user's.
        last_user = int(self.keys[-1]) // self.num_items if len(self.keys) else -1
        bounds = torch.arange(last_user + 2, dtype=torch.long) * self.num_items
        return torch.searchsorted(self.keys, bounds).diff()

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
    users: Tensor,
    num_negatives: int,
    exclude: InteractionSet,
    generator: torch.Generator,
    max_rounds: int = 100,
    out: Tensor | None = None,
    keep: Tensor | None = None,
) -> Tensor:
    """Uniformly samples ``num_negatives`` items per user that are not in ``exclude``.

    Rejection sampling: draw all, redraw the collisions; after ``max_rounds`` the few rows still
    colliding (users who have seen nearly the whole catalog) are drawn exactly from their unseen
    items, so sampling succeeds whenever a user has one unseen item. Draws are with replacement across
    a user's negatives (as in NCF); the result depends only on the generator. Rows go in chunks of
    :data:`DRAW_CHUNK_ROWS`; passing ``users`` sorted (and taking the rows in another order afterwards) keeps the
    membership test's lookups local, which is what makes it fast at tens of millions of rows.

    ``keep`` (ascending row indices, repeats allowed) returns only those rows' draws. Every row is still
    drawn, so a row's negatives do not depend on which rows are kept: a process keeps its own share of an
    epoch and gets the draws a single process would.

    Returns:
        ``[len(keep or users), num_negatives]`` item indices: ``out`` if given (any integer dtype), else a new
        int64 tensor.
    """
    known = exclude.count_per_user(int(users.max()) + 1 if len(users) else 0)
    if len(users) and bool((known[users] >= exclude.num_items).any()):
        full = torch.unique(users[known[users] >= exclude.num_items]).tolist()
        raise TooFewUnseenItems(full, 1)
    if keep is not None and bool((keep[1:] < keep[:-1]).any()):
        raise ValueError("keep must list row indices in ascending order (sort them, then reorder the result)")
    num_rows = len(users) if keep is None else len(keep)
    negatives = torch.empty(num_rows, num_negatives, dtype=torch.long) if out is None else out
    for start in range(0, len(users), DRAW_CHUNK_ROWS):
        chunk = users[start : start + DRAW_CHUNK_ROWS]
        drawn = _draw_unseen(chunk, num_negatives, exclude, generator, max_rounds)
        if keep is None:
            negatives[start : start + len(chunk)] = drawn
        else:
            bounds = torch.tensor([start, start + len(chunk)], dtype=keep.dtype)
            first, end = torch.searchsorted(keep, bounds).tolist()
            negatives[first:end] = drawn[keep[first:end] - start]
    return negatives


def _draw_unseen(
    users: Tensor, num_negatives: int, exclude: InteractionSet, generator: torch.Generator, max_rounds: int
) -> Tensor:
    rows = users.repeat_interleave(num_negatives)
    in_order = bool((users[1:] >= users[:-1]).all())  # then every test below runs on sorted users
    negatives = torch.randint(exclude.num_items, (len(rows),), generator=generator)
    pending = torch.nonzero(exclude.contains(rows, negatives, in_order)).squeeze(1)
    for _ in range(max_rounds):
        if len(pending) == 0:
            break
        negatives[pending] = torch.randint(exclude.num_items, (len(pending),), generator=generator)
        pending = pending[exclude.contains(rows[pending], negatives[pending], in_order)]
    else:
        negatives[pending] = exact_unseen_draws(rows[pending], exclude, generator)
    return negatives.view(len(users), num_negatives)


_MASK32 = 0xFFFFFFFF


def _mix32(x: Tensor) -> Tensor:
    """A bijective 32-bit integer hash (``lowbias32``) on int64 tensors: products wrap, the low 32 bits stay exact."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def keyed_uniform(seed: int, users: Tensor, positions: Tensor) -> Tensor:
    """Pseudo-random 32-bit values, one per ``(user, position)``: a function of ``(seed, user, position)`` alone."""
    stream = _mix32(_mix32(torch.tensor(seed, dtype=torch.long)) ^ users.long())
    return _mix32(stream.unsqueeze(-1) ^ _mix32(positions.long() + 0x9E3779B9))


def sample_distinct_negatives(
    users: Tensor, num_negatives: int, exclude: InteractionSet, seed: int, max_draws: int = 1 << 16
) -> Tensor:
    """``num_negatives`` distinct unseen items per user (the NCF evaluation protocol: 99 per user).

    Each user's candidates are a function of ``(seed, user)`` alone: the user's ``j``-th draw is item
    ``hash(seed, user, j) mod catalog``, and the candidates are the first ``num_negatives`` draws that are
    unseen and new. So every model, batch order, process count and subset of evaluated users sees the
    same candidates for a user, and they can be drawn batch by batch, only for the users scored. Users
    with fewer than twice as many unseen items as needed, where draws mostly collide, take the
    ``num_negatives`` unseen items of smallest ``hash(seed, user, item)`` instead (also a function of
    ``(seed, user)``).

    Raises:
        TooFewUnseenItems: naming the users with fewer than ``num_negatives`` unseen items.

    Example:
        >>> exclude = InteractionSet(torch.tensor([0, 1]), torch.tensor([0, 1]), num_items=50)
        >>> both = sample_distinct_negatives(torch.tensor([0, 1]), 5, exclude, seed=7)
        >>> torch.equal(both[1], sample_distinct_negatives(torch.tensor([1]), 5, exclude, seed=7)[0])
        True
    """
    users = users.long()
    unseen = exclude.num_items - exclude.count_per_user(int(users.max()) + 1 if len(users) else 0)[users]
    short = unseen < num_negatives
    if bool(short.any()):
        raise TooFewUnseenItems(users[short].tolist(), num_negatives)
    negatives = torch.empty(len(users), num_negatives, dtype=torch.long)
    dense = unseen < 2 * num_negatives
    for row in torch.nonzero(dense).squeeze(1).tolist():
        candidates = torch.arange(exclude.num_items)
        candidates = candidates[~exclude.contains(users[row].expand_as(candidates), candidates)]
        order = keyed_uniform(seed, users[row], candidates).argsort(stable=True)
        negatives[row] = candidates[order[:num_negatives]]
    pending, draws = torch.nonzero(~dense).squeeze(1), 2 * num_negatives
    while len(pending):
        found, complete = _first_distinct_unseen(users[pending], num_negatives, draws, exclude, seed)
        negatives[pending[complete]] = found
        pending, draws = pending[~complete], 2 * draws
        if draws > max_draws and len(pending):
            raise RuntimeError(f"{len(pending)} users got no {num_negatives} distinct negatives in {max_draws} draws")
    return negatives


def _first_distinct_unseen(
    users: Tensor, num_negatives: int, draws: int, exclude: InteractionSet, seed: int
) -> tuple[Tensor, Tensor]:
    """The first ``num_negatives`` unseen, not yet drawn items among each user's first ``draws`` keyed draws,
    for the users (``complete``) whose draws hold that many."""
    items = (keyed_uniform(seed, users, torch.arange(draws)) * exclude.num_items) >> 32
    valid = ~exclude.contains(users.unsqueeze(1).expand_as(items).reshape(-1), items.reshape(-1)).view_as(items)
    ordered, order = items.sort(dim=1, stable=True)  # stable: of equal items, the earliest draw comes first
    repeat = torch.zeros_like(valid)
    repeat.scatter_(1, order[:, 1:], ordered[:, 1:] == ordered[:, :-1])
    valid &= ~repeat
    taken = valid & (valid.cumsum(1) <= num_negatives)
    complete = taken.sum(1) == num_negatives
    return items[complete][taken[complete]].view(-1, num_negatives), complete
