"""MovieLens-100K: small real data with timestamps, for quick benchmarks."""

from __future__ import annotations

from pathlib import Path

from lightning_rec.data.datamodule import InteractionDataModule
from lightning_rec.data.parsers import parse_movielens_100k
from lightning_rec.data.tables import InteractionLog


class MovieLens100KDataModule(InteractionDataModule):
    """MovieLens-100K from ``u.data`` (tab separated, with timestamps) and ``u.item`` (genre flags).

    Args:
        data_dir: folder holding ``u.data`` and ``u.item``.
        min_rating: drop ratings below this (0 keeps all).
        **kwargs: batching, negatives and seed, see :class:`InteractionDataModule`.

    Example:
        >>> dm = MovieLens100KDataModule("path/to/ml-100k")  # doctest: +SKIP
        >>> dm.num_users, dm.num_items  # doctest: +SKIP
        (943, 1682)
    """

    def __init__(self, data_dir: str, min_rating: float = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)
        self.min_rating = min_rating

    def load_log(self) -> InteractionLog:
        return parse_movielens_100k(self.data_dir, self.min_rating)
