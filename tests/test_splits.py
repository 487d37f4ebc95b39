import logging

import pandas as pd
import pytest
import torch

from lightning_rec.data.interactions import encode
from lightning_rec.data.splits import deduplicate, drop_short_users, keep_latest, leave_one_out
from lightning_rec.data.tables import DataFormatError
from lightning_rec.data_modules import AmazonDataModule, MovieLens1MDataModule


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "order"])


def test_leave_one_out_by_time_uses_timestamps_not_file_order():
    interactions = frame([("u", "a", 30), ("u", "b", 10), ("u", "c", 20), ("u", "d", 5)])
    train, val, test = leave_one_out(interactions, "time")
    assert test["item_id"].tolist() == ["a"] and val["item_id"].tolist() == ["c"]
    assert sorted(train["item_id"]) == ["b", "d"]


def test_random_split_is_seeded():
    interactions = frame([("u", str(i), 0) for i in range(20)])
    first = leave_one_out(interactions, "none", seed=1)[2]["item_id"].tolist()
    assert first == leave_one_out(interactions, "none", seed=1)[2]["item_id"].tolist()
    others = {leave_one_out(interactions, "none", seed=s)[2]["item_id"].item() for s in range(2, 12)}
    assert len(others) > 1


def test_short_users_dropped_with_logged_count(caplog):
    interactions = frame([("u", "a", 1), ("u", "b", 2), ("v", "a", 1), ("v", "b", 2), ("v", "c", 3)])
    with caplog.at_level(logging.WARNING):
        kept = drop_short_users(interactions, 3, "toy")
    assert set(kept["user_id"]) == {"v"}
    assert "dropped 1 users with fewer than 3" in caplog.text
    with pytest.raises(DataFormatError, match="no user has 5 or more"):
        drop_short_users(interactions, 5, "toy")


def test_deduplicate_keeps_first():
    interactions = frame([("u", "a", 1), ("u", "a", 2), ("u", "b", 3)])
    assert deduplicate(interactions)["order"].tolist() == [1, 3]


def test_vocabulary_comes_from_train_only(caplog):
    interactions = frame([("u", "a", 1), ("u", "b", 2), ("u", "cold", 3), ("v", "a", 1), ("v", "b", 2), ("v", "c", 3)])
    items = pd.DataFrame({"item_id": ["a", "b", "c", "cold"], "title": list("abcd"), "categories": [[]] * 4,
                          "text": list("abcd")})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        data = encode(*leave_one_out(interactions, "time"), items)
    assert data.items["item_id"].tolist() == ["a"]  # b and c are validation/test items only
    assert "2 of 2 validation items never occur in training" in caplog.text
    assert "2 of 2 test items never occur in training" in caplog.text
    assert (data.val_items == -1).all() and (data.test_items == -1).all()
    # The users stay in the evaluation: no model can rank their items, so they count as misses.
    assert data.val_unrankable.all() and data.test_unrankable.all()


def test_no_leak_on_embedded_data(ml1m):
    data = ml1m.data
    train = set(zip(data.train_users.tolist(), data.train_items.tolist()))
    for held_out in (data.val_items, data.test_items):
        users = torch.nonzero(held_out >= 0).squeeze(1)
        assert not train & set(zip(users.tolist(), held_out[users].tolist()))
    # Every batch of an epoch holds training interactions only.
    seen = {(u, i) for b in ml1m.train_dataloader() for u, i in zip(b["user"].tolist(), b["item"].tolist())}
    assert seen == train
    # Popularity is a training statistic.
    assert int(ml1m.item_popularity.sum()) == len(train)


def test_amazon_preprocessing_counts(tmp_path, caplog):
    (tmp_path / "seq.txt").write_text("U1 A B A C D\nU2 B C D E\nU3 E F\n")
    long_title = "x" * 401
    (tmp_path / "titles.tsv").write_text(f"asin\ttitle\nA\tAlpha\nB\tBeta\nC\t\nD\tDelta\nE\t{long_title}\nF\tFox\n")
    dm = AmazonDataModule(sequence_file=str(tmp_path / "seq.txt"), titles_file=str(tmp_path / "titles.tsv"),
                          num_eval_negatives=1)  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert dm.num_users == 1  # U2 keeps B D, U3 keeps F: both too short
    assert "dropped 1 repeated user-item interactions" in caplog.text
    assert "dropped 2 items with a missing or >400-character title and their 4 interactions" in caplog.text
    assert "dropped 2 users with fewer than 3 interactions" in caplog.text


def test_keep_latest_history_items(tmp_path, caplog):
    # U1 has 8 ordered items; with max_history=3 the test target E8 keeps only its 3 predecessors.
    (tmp_path / "seq.txt").write_text("U1 " + " ".join(f"E{i}" for i in range(1, 9)) + "\nU2 E1 E2 E3\n")
    (tmp_path / "titles.tsv").write_text("asin\ttitle\n" + "".join(f"E{i}\tItem {i}\n" for i in range(1, 9)))
    dm = AmazonDataModule(sequence_file=str(tmp_path / "seq.txt"), titles_file=str(tmp_path / "titles.tsv"),
                          max_history=3, num_eval_negatives=1)  # fmt: skip
    with caplog.at_level(logging.INFO):
        data = dm.data
    assert "dropped 4 interactions older than each user's latest 4" in caplog.text
    item_ids = dm.item_table["item_id"].tolist()
    history = [item_ids[i] for i in data.train_items[data.train_indptr[0] : data.train_indptr[1]].tolist()]
    assert history == ["E5", "E6"]  # E7 validation, E8 test


def test_keep_latest_needs_an_order():
    with pytest.raises(ValueError, match="needs time-ordered"):
        keep_latest(frame([("u", "a", 0)]), "none", 15)


def test_eval_user_ids_restrict_validation_and_test_to_those_users():
    everyone = MovieLens1MDataModule(eval_protocols=["sampled"], prepared_dir=None)
    chosen = everyone.user_ids[10:20:3]
    some = MovieLens1MDataModule(eval_protocols=["sampled"], prepared_dir=None, eval_user_ids=chosen)
    for loader in ("val_dataloader", "test_dataloader"):
        (batch,) = list(getattr(some, loader)())
        assert [some.user_ids[u] for u in batch["user"]] == chosen
        full = {int(u): row for b in getattr(everyone, loader)() for u, row in zip(b["user"], b["candidate_items"])}
        # Candidates are a function of (seed, user): the same whoever else is evaluated.
        assert all(torch.equal(full[int(u)], row) for u, row in zip(batch["user"], batch["candidate_items"]))
    with pytest.raises(ValueError, match="eval_user_ids: 1 ids are not users of this data"):
        MovieLens1MDataModule(eval_user_ids=["nobody"], prepared_dir=None).test_dataloader()
