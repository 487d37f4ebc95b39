"""Batches cut from tensors: no per-sample ``__getitem__`` in the hot loop."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

Batch = dict[str, Tensor]

# Lightning warns that an IterableDataset's __len__ can be wrong under several loader workers. Our
# streams run in the main process (``num_workers=0``) and count their batches exactly per rank.
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")


def rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class BatchStream(IterableDataset):
    """Yields batches cut from whole-epoch columns: ``make_columns(epoch)`` builds the columns
    once per epoch (shuffling, negative sampling: vectorised), then each batch is a slice (int32
    index columns become int64), passed through ``finish_batch`` if given (e.g. to add a dense mask
    that would not fit for all rows). If the columns hold an ``order`` column, the epoch's ``i``-th row is
    stored row ``order[i]`` of the others: rows stay where they were built (e.g. in user order, as negatives are
    drawn) and each batch gathers its own, instead of the epoch being copied into its shuffled order. Such a
    batch also gets ``row``, the stored rows it took, unless the columns hold their own ``row``.

    Each process takes every ``world_size``-th batch. For training (``even_shards=True``) the
    shards are padded by wrapping around so every rank runs the same number of steps, as
    ``DistributedSampler`` does; evaluation streams are not padded, so no example is counted twice.
    ``start_fn`` (called when iteration starts) says how many of this process's batches to skip,
    so a run resumed mid-epoch does not replay them.

    With ``positions_only``, ``make_columns(epoch, positions)`` builds only the epoch's rows at ``positions``
    (this process's batches still to run, in order), or all rows when ``positions`` is ``None``: under DDP each
    process then holds its own share of the epoch, not all of it.

    Use it through :func:`stream_loader`.

    Example:
        >>> columns = {"item": torch.tensor([10, 11, 12]), "order": torch.tensor([2, 0, 1])}
        >>> [batch["item"].tolist() for batch in BatchStream(3, 2, lambda epoch: columns)]
        [[12, 10], [11]]
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        make_columns: Callable[..., Batch],
        finish_batch: Callable[[Batch], Batch] | None = None,
        epoch_fn: Callable[[], int] = lambda: 0,
        even_shards: bool = False,
        start_fn: Callable[[], int] = lambda: 0,
        positions_only: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.num_rows, self.batch_size = num_rows, batch_size
        self.make_columns, self.finish_batch = make_columns, finish_batch
        self.epoch_fn, self.even_shards, self.start_fn = epoch_fn, even_shards, start_fn
        self.positions_only = positions_only

    def _batch_indices(self) -> list[int]:
        num_batches = math.ceil(self.num_rows / self.batch_size)
        rank, world_size = rank_and_world_size()
        if self.even_shards:
            per_rank = math.ceil(num_batches / world_size)
            return [(rank + i * world_size) % num_batches for i in range(per_rank)]
        return list(range(rank, num_batches, world_size))

    def __len__(self) -> int:
        return len(self._batch_indices())

    def __iter__(self) -> Iterator[Batch]:
        batch_indices = self._batch_indices()[self.start_fn() :]
        starts = [index * self.batch_size for index in batch_indices]
        lengths = [min(self.batch_size, self.num_rows - start) for start in starts]
        if not self.positions_only:
            columns = self.make_columns(self.epoch_fn())
        elif batch_indices == list(range(len(batch_indices))) and sum(lengths) == self.num_rows:
            columns = self.make_columns(self.epoch_fn(), None)  # every row, in order: no index needed
        else:
            starts, positions = _concatenated(starts, lengths)
            columns = self.make_columns(self.epoch_fn(), positions)
            del positions  # not held for the whole epoch
        order = columns.get("order")
        for start, length in zip(starts, lengths):
            rows = slice(start, start + length) if order is None else _int64(order[start : start + length])
            batch = {key: _int64(value[rows]) for key, value in columns.items() if key != "order"}
            if order is not None:
                batch.setdefault("row", rows)
            yield self.finish_batch(batch) if self.finish_batch else batch


def _concatenated(starts: list[int], lengths: list[int]) -> tuple[list[int], Tensor]:
    """The row ranges ``[start, start + length)`` laid end to end: their new starts, and the rows they hold."""
    length = torch.tensor(lengths, dtype=torch.long)
    new_starts = torch.cumsum(length, 0) - length
    offset_in_range = torch.arange(int(length.sum())) - new_starts.repeat_interleave(length)
    return new_starts.tolist(), torch.tensor(starts, dtype=torch.long).repeat_interleave(length) + offset_in_range


def _int64(column: Tensor) -> Tensor:
    # Whole-epoch columns may hold indices as int32 (half the memory at 100M rows); batches are int64.
    return column.long() if column.dtype == torch.int32 else column


def stream_loader(stream: BatchStream) -> DataLoader:
    """A ``DataLoader`` over a :class:`BatchStream`. It gets its own generator: a ``DataLoader``
    otherwise draws its base seed from torch's global generator at every ``iter()``, which would
    shift dropout's random numbers in a run resumed mid-epoch."""
    return DataLoader(stream, batch_size=None, generator=torch.Generator().manual_seed(0))


def dense_mask(indptr: Tensor, indices: Tensor, rows: Tensor, num_columns: int) -> Tensor:
    """``[len(rows), num_columns]`` bool mask with ``True`` at each row's CSR entries."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    row_of_entry = torch.repeat_interleave(torch.arange(len(rows)), lengths)
    offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    mask = torch.zeros(len(rows), num_columns, dtype=torch.bool)
    mask[row_of_entry, indices[torch.repeat_interleave(starts, lengths) + offsets]] = True
    return mask


def csr(users: Tensor, items: Tensor, num_users: int) -> tuple[Tensor, Tensor]:
    """``(indptr, indices)`` of items grouped by user; the order within a user is kept."""
    order = torch.argsort(users, stable=True)
    indptr = torch.zeros(num_users + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(users, minlength=num_users), 0)
    return indptr, items[order]


def latest_items(indptr: Tensor, indices: Tensor, users: Tensor, ends: Tensor, length: int) -> Tensor:
    """The ``length`` items before position ``ends`` in each user's CSR slice, ``[B, length]``,
    left-padded with ``-1`` (the most recent item is in the last column)."""
    positions = ends.unsqueeze(1) - length + torch.arange(length)
    valid = positions >= indptr[users].unsqueeze(1)
    return torch.where(valid, indices[positions.clamp(min=0)], -1)
