"""MovieLens-1M (Harper & Konstan 2015) as implicit feedback, leave-one-out by time."""

from __future__ import annotations

import logging
import urllib.request
import zipfile
from pathlib import Path

from lightning_rec.data.datamodule import InteractionDataModule
from lightning_rec.data.parsers import parse_movielens_1m
from lightning_rec.data.synthetic import EMBEDDED_DIR
from lightning_rec.data.tables import InteractionLog

log = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"


class MovieLens1MDataModule(InteractionDataModule):
    """MovieLens-1M: ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp`` and ``movies.dat``.

    Every rating counts as an interaction (the NCF convention). Item text is ``Title (Year) | Genres``.

    Args:
        data_dir: folder with ``movies.dat`` and ``ratings.dat``; ``None`` uses the embedded synthetic
            dataset (same format, planted preferences) so everything runs offline.
        ratings_file: another ratings file, e.g. a CSV ``user_id,movie_id,rating[,timestamp]``;
            without timestamps the split is a seeded random leave-one-out (a warning says so).
        download: fetch and unzip the official archive into ``data_dir`` when ``ratings.dat`` is missing; it
            happens wherever the data is first read (the CLI's size links, ``dm.num_users``, ``prepare_data``).
        url: the archive to download (GroupLens by default; a mirror, or a local server in tests).
        min_rating: drop ratings below this (0 keeps all).
        **kwargs: batching, negatives and seed, see :class:`InteractionDataModule`.

    Example:
        >>> dm = MovieLens1MDataModule()  # the embedded dataset
        >>> dm.num_items > 0 and dm.item_texts[0].count("|") >= 1
        True
    """

    def __init__(
        self,
        data_dir: str | None = None,
        ratings_file: str | None = None,
        download: bool = False,
        url: str = GROUPLENS_URL,
        min_rating: float = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if download and not data_dir:
            raise ValueError("download needs a data_dir to download into, e.g. --data.init_args.data_dir ml-1m")
        self.data_dir = Path(data_dir) if data_dir else EMBEDDED_DIR
        self.ratings_file = ratings_file
        self.download, self.url = download, url
        self.min_rating = min_rating

    def fetch(self) -> None:
        if not self.download or (self.data_dir / "ratings.dat").is_file():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        archive = self.data_dir / "ml-1m.zip"
        partial = archive.with_suffix(".zip.part")
        log.info("downloading %s to %s", self.url, archive)
        try:
            urllib.request.urlretrieve(self.url, partial)
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise FileNotFoundError(f"could not download {self.url} ({err}): check the network or the url") from None
        partial.rename(archive)  # a cut download never looks complete
        with zipfile.ZipFile(archive) as zipped:
            for member in ("movies.dat", "ratings.dat", "users.dat", "README"):
                (self.data_dir / member).write_bytes(zipped.read(f"ml-1m/{member}"))

    def load_log(self) -> InteractionLog:
        return parse_movielens_1m(self.data_dir, self.ratings_file, self.min_rating)
