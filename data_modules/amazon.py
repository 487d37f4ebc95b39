"""Amazon 5-core reviews (McAuley et al.): Beauty, Electronics or any category in the same format."""

from __future__ import annotations

from lightning_rec.data.datamodule import InteractionDataModule
from lightning_rec.data.parsers import parse_amazon_reviews, parse_amazon_sequences
from lightning_rec.data.splits import deduplicate, drop_bad_titles, keep_latest
from lightning_rec.data.tables import InteractionLog


class AmazonDataModule(InteractionDataModule):
    """Amazon 5-core data from one of two layouts.

    (a) the public review dump (JSON lines, gzipped or not: ``reviewerID``, ``asin``,
    ``unixReviewTime``) with its metadata file (``title``, ``brand``, ``categories``): split by time;
    (b) time-ordered sequences ``user item1 item2 ...`` with a TSV of item titles: split by position.

    Preprocessing follows GPT4Rec, each step optional and logged with counts: repeated user-item
    pairs deduplicated, items with a missing or over-long title dropped, and (for sequence models) only
    each user's latest ``max_history`` history items kept.

    Args:
        reviews_file: layout (a) review dump, e.g. ``reviews_Beauty_5.json.gz``.
        meta_file: layout (a) metadata, e.g. ``meta_Beauty.json.gz``.
        sequence_file: layout (b) sequences, e.g. ``user_sequence.txt``.
        titles_file: layout (b) title TSV with ``asin`` and ``title`` columns.
        name: dataset name for logs and result tables.
        deduplicate_pairs: keep only the first of repeated user-item interactions.
        max_title_length: drop items whose title is missing or longer than this; 0 keeps all items.
        max_history: keep each user's latest ``max_history + 1`` interactions (history plus the test
            item), as GPT4Rec does with 15; 0 keeps everything.
        **kwargs: batching, negatives and seed, see :class:`InteractionDataModule`.

    Example:
        >>> dm = AmazonDataModule(sequence_file="beauty/user_sequence.txt",
        ...                       titles_file="beauty/item_titles.tsv", name="beauty")  # doctest: +SKIP
    """

    def __init__(
        self,
        reviews_file: str | None = None,
        meta_file: str | None = None,
        sequence_file: str | None = None,
        titles_file: str | None = None,
        name: str = "amazon",
        deduplicate_pairs: bool = True,
        max_title_length: int = 400,
        max_history: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        layout_a, layout_b = bool(reviews_file and meta_file), bool(sequence_file and titles_file)
        if layout_a == layout_b:
            raise ValueError(
                "AmazonDataModule needs either reviews_file and meta_file, or sequence_file and titles_file"
            )
        self.reviews_file, self.meta_file = reviews_file, meta_file
        self.sequence_file, self.titles_file = sequence_file, titles_file
        self.name = name
        self.deduplicate_pairs = deduplicate_pairs
        self.max_title_length = max_title_length
        if max_history < 0:
            raise ValueError(f"max_history must be >= 0 (0 keeps everything), got {max_history}")
        self.max_history = max_history

    def load_log(self) -> InteractionLog:
        if self.reviews_file:
            return parse_amazon_reviews(self.reviews_file, self.meta_file, self.name)
        return parse_amazon_sequences(self.sequence_file, self.titles_file, self.name)

    def preprocess(self, interaction_log: InteractionLog) -> InteractionLog:
        if self.deduplicate_pairs:
            interaction_log.interactions = deduplicate(interaction_log.interactions, interaction_log.name)
        if self.max_title_length > 0:
            interaction_log = drop_bad_titles(interaction_log, self.max_title_length)
        if self.max_history:
            interaction_log.interactions = keep_latest(
                interaction_log.interactions, interaction_log.ordering, self.max_history, interaction_log.name
            )
        return interaction_log
