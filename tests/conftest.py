import gzip
import json
from pathlib import Path

import pytest
import torch

from lightning_rec.data_modules import AmazonDataModule, MovieLens1MDataModule, MovieLens100KDataModule


@pytest.fixture(scope="session")
def ml1m() -> MovieLens1MDataModule:
    """The embedded dataset; parsed once for the session (modules never mutate it)."""
    dm = MovieLens1MDataModule(batch_size=128, eval_batch_size=128)
    dm.data  # noqa: B018
    return dm


def write_ml100k(directory: Path, num_users: int = 12, num_items: int = 15) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, num_users + 1):
        for step in range(6):
            item = (user + 2 * step) % num_items + 1
            lines.append(f"{user}\t{item}\t{1 + step % 5}\t{880000000 + 1000 * user + step}")
    (directory / "u.data").write_text("\n".join(lines) + "\n")
    genre_flags = "|".join(["0"] * 18 + ["1"])  # the 19th genre: Western
    items = [f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{genre_flags}" for i in range(1, num_items + 1)]
    (directory / "u.item").write_text("\n".join(items) + "\n", encoding="ISO-8859-1")
    return directory


def write_amazon_sequences(directory: Path, num_users: int = 10, num_items: int = 12) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    sequences = [f"U{u} " + " ".join(f"A{(u + s) % num_items}" for s in range(5)) for u in range(num_users)]
    (directory / "user_sequence.txt").write_text("\n".join(sequences) + "\n")
    titles = ["asin\tdhr_item_int\ttitle"] + [f"A{i}\t{i}\tProduct number {i} &amp; more" for i in range(num_items)]
    (directory / "item_titles.tsv").write_text("\n".join(titles) + "\n")
    return directory / "user_sequence.txt", directory / "item_titles.tsv"


def write_amazon_reviews(directory: Path, num_users: int = 10, num_items: int = 12) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(directory / "reviews.json.gz", "wt") as f:
        for u in range(num_users):
            for s in range(5):
                record = {"reviewerID": f"U{u}", "asin": f"A{(u + s) % num_items}", "unixReviewTime": 1000 * s + u}
                f.write(json.dumps(record) + "\n")
    with open(directory / "meta.json", "w") as f:
        for i in range(num_items):
            # The 2014 metadata dumps are Python literals, not JSON.
            f.write(
                repr({"asin": f"A{i}", "title": f"Lipstick {i}", "brand": "Acme", "categories": [["Beauty", "Lips"]]})
            )
            f.write("\n")
    return directory / "reviews.json.gz", directory / "meta.json"


@pytest.fixture
def ml100k_dir(tmp_path: Path) -> Path:
    return write_ml100k(tmp_path / "ml-100k")


@pytest.fixture
def small_datamodules(tmp_path: Path) -> dict:
    sequences, titles = write_amazon_sequences(tmp_path / "amazon-seq")
    reviews, meta = write_amazon_reviews(tmp_path / "amazon-reviews")
    kwargs = {"num_eval_negatives": 5, "batch_size": 16}
    return {
        "ml-1m": MovieLens1MDataModule(batch_size=256),
        "ml-100k": MovieLens100KDataModule(str(write_ml100k(tmp_path / "ml-100k")), **kwargs),
        "amazon-sequences": AmazonDataModule(sequence_file=str(sequences), titles_file=str(titles), **kwargs),
        "amazon-reviews": AmazonDataModule(reviews_file=str(reviews), meta_file=str(meta), **kwargs),
    }


COLORS = ["red", "blue", "green", "amber"]
NOUNS = ["vase", "lamp", "chair", "table", "sofa", "rug", "mirror", "clock", "shelf", "desk"]


@pytest.fixture
def color_shops(tmp_path: Path) -> tuple[str, str]:
    """Amazon-format sequence and title files where each user buys 6 items of one color: the next
    item's color is planted in the history (GPT4Rec and M6Rec tests)."""
    generator = torch.Generator().manual_seed(0)
    lines = []
    for u in range(160):
        color = u % len(COLORS)
        nouns = torch.randperm(len(NOUNS), generator=generator)[:6].tolist()
        lines.append(f"U{u} " + " ".join(f"{COLORS[color]}-{NOUNS[n]}" for n in nouns))
    (tmp_path / "seq.txt").write_text("\n".join(lines) + "\n")
    titles = "".join(f"{c}-{n}\t{c} {n}\n" for c in COLORS for n in NOUNS)
    (tmp_path / "titles.tsv").write_text("asin\ttitle\n" + titles)
    return str(tmp_path / "seq.txt"), str(tmp_path / "titles.tsv")
