import logging
import os

import pandas as pd
import pytest
import torch

from lightning_rec.data.interactions import EncodedInteractions
from lightning_rec.data_modules import AmazonDataModule, LogDataModule, MovieLens1MDataModule
from tests.conftest import write_amazon_sequences


def same_data(a: EncodedInteractions, b: EncodedInteractions) -> bool:
    tensors = ("train_users", "train_items", "train_indptr", "val_items", "test_items", "val_unrankable",
               "test_unrankable")  # fmt: skip
    same_tensors = all(torch.equal(getattr(a, name), getattr(b, name)) for name in tensors)
    same_ids = list(a.user_ids) == list(b.user_ids) and a.items.equals(b.items)
    return same_tensors and same_ids and a.ordering == b.ordering


def amazon(tmp_path, **kwargs) -> AmazonDataModule:
    sequences, titles = tmp_path / "data" / "user_sequence.txt", tmp_path / "data" / "item_titles.tsv"
    return AmazonDataModule(sequence_file=str(sequences), titles_file=str(titles), prepared_dir=str(tmp_path / "prep"),
                            num_eval_negatives=3, **kwargs)  # fmt: skip


def test_a_second_module_reads_the_prepared_arrays_without_parsing(tmp_path, monkeypatch, caplog):
    write_amazon_sequences(tmp_path / "data", num_users=12)
    (tmp_path / "data" / "user_sequence.txt").write_text("U0 A1\nU1 A1 A2 A3 A4\nU2 A2 A3 A4 A9\nU3 A1 A2 A3 A5\n")
    with caplog.at_level(logging.INFO, logger="lightning_rec"):
        first = amazon(tmp_path).data
    parsed_log = caplog.text
    assert "dropped 1 users with fewer than 3 interactions" in parsed_log
    folders = list((tmp_path / "prep").iterdir())
    assert len(folders) == 1 and not list((tmp_path / "prep").glob("*.tmp"))

    monkeypatch.setattr(AmazonDataModule, "load_log", lambda self: pytest.fail("parsed again"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lightning_rec"):
        second = amazon(tmp_path, batch_size=3, eval_batch_size=2).data  # loader options: the same arrays
    assert same_data(first, second)
    assert "dropped 1 users with fewer than 3 interactions" in caplog.text  # what the parse said, said again
    assert f"prepared data read from {folders[0]}" in caplog.text


def test_a_changed_file_or_split_option_prepares_again(tmp_path):
    write_amazon_sequences(tmp_path / "data")
    before = amazon(tmp_path).data
    assert same_data(before, amazon(tmp_path, seed=1).data)  # split by position: another seed, the same split
    sequences = tmp_path / "data" / "user_sequence.txt"
    sequences.write_text(sequences.read_text() + "U99 A1 A2 A3 A5\n")
    after = amazon(tmp_path).data
    assert after.num_users == before.num_users + 1
    assert len(list((tmp_path / "prep").iterdir())) == 3


def test_a_corrupt_prepared_folder_is_rebuilt(tmp_path, caplog):
    write_amazon_sequences(tmp_path / "data")
    reference = amazon(tmp_path).data
    folder = next((tmp_path / "prep").iterdir())
    array = folder / "train_items.npy"
    array.write_bytes(array.read_bytes()[:-8])  # a cut write
    with caplog.at_level(logging.WARNING):
        rebuilt = amazon(tmp_path).data
    assert "cannot be read" in caplog.text and same_data(rebuilt, reference)
    assert amazon(tmp_path).data.train_items.tolist() == reference.train_items.tolist()


def test_in_memory_logs_and_prepared_dir_none_are_never_kept(tmp_path):
    frame = pd.DataFrame({"user_id": ["a"] * 3, "item_id": ["x", "y", "z"], "timestamp": [1, 2, 3]})
    assert LogDataModule(frame, prepared_dir=str(tmp_path)).prepared_folder is None
    dm = MovieLens1MDataModule(prepared_dir=None)
    assert dm.prepared_folder is None and dm.num_users > 0 and not os.listdir(tmp_path)


def test_prepared_arrays_are_memory_mapped_and_shared(tmp_path):
    dm = MovieLens1MDataModule(prepared_dir=str(tmp_path))
    parsed = dm.data
    mapped = MovieLens1MDataModule(prepared_dir=str(tmp_path)).data
    assert same_data(parsed, mapped)
    mapped_files = open("/proc/self/maps").read()  # Linux: the arrays are file pages, shared between processes
    assert str(next(tmp_path.iterdir()) / "train_items.npy") in mapped_files


def test_an_edited_subclass_parser_never_reads_the_old_prepared_arrays(tmp_path, monkeypatch):
    """A user's own data module: changing its ``load_log`` code prepares again instead of serving old arrays."""
    import importlib
    import sys

    write_amazon_sequences(tmp_path / "data")
    module = tmp_path / "my_data.py"
    source = """from lightning_rec.data_modules import AmazonDataModule


class MyData(AmazonDataModule):
    def load_log(self):
        log = super().load_log()
        log.interactions = log.interactions[log.interactions["user_id"] != "{drop}"]
        return log
"""
    monkeypatch.syspath_prepend(str(tmp_path))
    module.write_text(source.format(drop="U0"))
    first = importlib.import_module("my_data")
    data = tmp_path / "data"
    kwargs = dict(sequence_file=str(data / "user_sequence.txt"), titles_file=str(data / "item_titles.tsv"),
                  num_eval_negatives=3, prepared_dir=str(tmp_path / "prep"))  # fmt: skip
    assert "U0" not in first.MyData(**kwargs).user_ids
    module.write_text(source.format(drop="U1"))
    second = importlib.reload(first)
    users = second.MyData(**kwargs).user_ids
    assert "U0" in users and "U1" not in users
    assert len(list((tmp_path / "prep").iterdir())) == 2
    sys.modules.pop("my_data", None)


@pytest.mark.parametrize("cold_item_fraction", [0.0, 0.2])
def test_negatives_from_the_prepared_keys_equal_those_of_a_fresh_parse(tmp_path, cold_item_fraction):
    # The prepared folder keeps the sorted training-pair keys; a wrong key layout (cold start numbers the warm
    # items first) would draw other negatives, or seen items, without an error.
    kept = MovieLens1MDataModule(prepared_dir=str(tmp_path), cold_item_fraction=cold_item_fraction)
    kept.data  # noqa: B018 - prepares the folder
    mapped = MovieLens1MDataModule(prepared_dir=str(tmp_path), cold_item_fraction=cold_item_fraction)
    fresh = MovieLens1MDataModule(prepared_dir=None, cold_item_fraction=cold_item_fraction)
    assert mapped.data.train_keys is not None and fresh.data.train_keys is None
    for epoch in (0, 1):
        assert torch.equal(
            mapped._train_columns(epoch)["negative_items"], fresh._train_columns(epoch)["negative_items"]
        )
