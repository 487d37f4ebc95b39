"""A user's own interaction log: CSV, TSV or Parquet files, or a pandas/Polars DataFrame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_rec.data.datamodule import InteractionDataModule
from lightning_rec.data.parsers import check_order_columns, parse_interaction_table
from lightning_rec.data.splits import deduplicate
from lightning_rec.data.tables import InteractionLog


class LogDataModule(InteractionDataModule):
    """Any interaction log, its columns mapped by name, with an optional item table for the text models.

    Everything else (leave-one-out split, cold start, negatives, evaluation protocols, batching) is the
    same as for MovieLens and Amazon, and the CLI links the item texts to text models as it does there.

    Args:
        interactions: a ``.csv``, ``.tsv`` or ``.parquet`` file with a header (``.gz`` works for CSV/TSV),
            or a pandas/Polars DataFrame (from Python).
        items: optional item table (file or DataFrame): ``item_id_column``, ``title_column`` and any
            of ``categories_column``, ``brand_column``, ``text_columns``. Without it items have no text.
        user_column, item_column: the columns holding user and item ids (any type: compared as strings).
        time_column: timestamps (numbers or dates) that order each user's interactions for the split.
        order_column: instead of a time, a position (1, 2, ...) in time order; with neither, the split is
            a seeded random leave-one-out (a warning says so).
        rating_column: explicit ratings, kept for rating-aware models; ``min_rating`` drops lower ones.
        item_id_column: the item table's id column (default: ``item_column``).
        title_column, categories_column, brand_column, text_columns: the item table's text parts; item
            text is ``title | category|category | brand | text column ...``. Categories are a list column
            or one string joined by ``categories_separator``.
        deduplicate_pairs: keep only the first of repeated user-item interactions.
        name: dataset name for logs and result tables.
        **kwargs: batching, negatives, cold start and seed, see :class:`InteractionDataModule`.

    Example:
        >>> import pandas as pd
        >>> log = pd.DataFrame({"user": ["u1"] * 3 + ["u2"] * 3, "item": ["a", "b", "c", "b", "c", "a"],
        ...                     "time": [1, 2, 3, 1, 2, 3]})
        >>> dm = LogDataModule(log, user_column="user", item_column="item", time_column="time")
        >>> dm.num_users, dm.num_items
        (2, 2)
    """

    def __init__(
        self,
        interactions: str | Path | Any,
        items: str | Path | Any | None = None,
        user_column: str = "user_id",
        item_column: str = "item_id",
        time_column: str | None = "timestamp",
        order_column: str | None = None,
        rating_column: str | None = None,
        min_rating: float = 0,
        item_id_column: str | None = None,
        title_column: str = "title",
        categories_column: str | None = None,
        categories_separator: str = "|",
        brand_column: str | None = None,
        text_columns: list[str] | None = None,
        deduplicate_pairs: bool = False,
        name: str = "custom",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_order_columns(time_column, order_column)  # at construction, before anything is read
        self.interactions, self.items = interactions, items
        self.columns = dict(
            user_column=user_column, item_column=item_column, time_column=time_column, order_column=order_column,
            rating_column=rating_column, min_rating=min_rating, item_id_column=item_id_column,
            title_column=title_column, categories_column=categories_column,
            categories_separator=categories_separator, brand_column=brand_column, text_columns=text_columns,
        )  # fmt: skip
        self.deduplicate_pairs = deduplicate_pairs
        self.name = name

    def load_log(self) -> InteractionLog:
        return parse_interaction_table(self.interactions, self.items, name=self.name, **self.columns)

    def preprocess(self, interaction_log: InteractionLog) -> InteractionLog:
        if self.deduplicate_pairs:
            interaction_log.interactions = deduplicate(interaction_log.interactions, interaction_log.name)
        return interaction_log
