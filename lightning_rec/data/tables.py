"""The two tables every dataset is parsed into, before any split or encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

#: How the interactions of one user are ordered: by a real timestamp, by their position in a
#: time-ordered file (no timestamps, order known), or not at all (split at random, seeded).
Ordering = Literal["time", "position", "none"]


class DataFormatError(ValueError):
    """A dataset file is missing, malformed or empty; the message names the file and line."""


@dataclass
class InteractionLog:
    """A parsed dataset in raw ids.

    Attributes:
        interactions: one row per interaction with columns ``user_id``, ``item_id`` (raw ids as
            strings), ``order`` (timestamp or position; ties keep file order) and optionally ``rating``.
        items: one row per item with columns ``item_id``, ``title``, ``categories`` (list of str)
            and ``text`` (the string the language-model side reads).
        ordering: what ``order`` means, see :data:`Ordering`.
        name: a short dataset name for logs and result tables.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    ordering: Ordering
    name: str

    def __post_init__(self) -> None:
        missing = {"user_id", "item_id", "order"} - set(self.interactions.columns)
        if missing:
            raise DataFormatError(f"{self.name}: interaction table lacks columns {sorted(missing)}")
        missing = {"item_id", "title", "categories", "text"} - set(self.items.columns)
        if missing:
            raise DataFormatError(f"{self.name}: item table lacks columns {sorted(missing)}")
        if self.interactions.empty:
            raise DataFormatError(f"{self.name}: no interactions left after parsing")
