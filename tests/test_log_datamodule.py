import logging

import pandas as pd
import pytest
import torch

from lightning_rec.cli import main
from lightning_rec.data.parsers import parse_interaction_table
from lightning_rec.data.synthetic import OWN_LOG_DIR, write_own_log
from lightning_rec.data.tables import DataFormatError
from lightning_rec.data_modules import LogDataModule, MovieLens1MDataModule

COLUMNS = dict(user_column="user", item_column="item", time_column="time", rating_column="rating",
               item_id_column="item_id", categories_column="genres")  # fmt: skip


def own_log(**kwargs) -> LogDataModule:
    return LogDataModule(OWN_LOG_DIR / "interactions.csv", OWN_LOG_DIR / "items.csv", **{**COLUMNS, **kwargs})


def test_the_shipped_example_is_the_embedded_data_as_an_own_log(tmp_path):
    write_own_log(tmp_path)
    for name in ("interactions.csv", "items.csv"):
        assert (tmp_path / name).read_text() == (OWN_LOG_DIR / name).read_text()


def test_own_log_splits_by_its_dates_like_the_embedded_movielens_module():
    """The same interactions as the embedded ML-1M data (string ids, ISO dates) give the same split."""
    dm, reference = own_log(), MovieLens1MDataModule()
    ours, theirs = dm.data, reference.data
    assert dm.ordering == "time" and dm.num_users == 150
    # Each user's held-out items are the same movies in both (ids differ only by the "m" prefix).
    theirs_users = {user: index for index, user in enumerate(theirs.user_ids)}
    for index in range(0, 150, 17):
        other = theirs_users[ours.user_ids[index].removeprefix("user")]
        for split in ("val_items", "test_items"):
            ours_item = ours.items["item_id"][int(getattr(ours, split)[index])]
            theirs_item = theirs.items["item_id"][int(getattr(theirs, split)[other])]
            assert ours_item == "m" + theirs_item
    first = dm.item_table.iloc[0]
    assert first["text"] == f"{first['title']} | {'|'.join(first['categories'])}" and first["categories"]


def test_parquet_and_dataframes_read_the_same_as_csv(tmp_path):
    interactions = pd.read_csv(OWN_LOG_DIR / "interactions.csv")
    items = pd.read_csv(OWN_LOG_DIR / "items.csv")
    interactions.to_parquet(tmp_path / "log.parquet")
    items.assign(genres=items["genres"].str.split("|")).to_parquet(tmp_path / "items.parquet")  # a list column
    csv = own_log().data
    for dm in (
        LogDataModule(tmp_path / "log.parquet", tmp_path / "items.parquet", **COLUMNS),
        LogDataModule(interactions, items, **COLUMNS),
    ):
        assert torch.equal(dm.data.train_items, csv.train_items) and torch.equal(dm.data.test_items, csv.test_items)
        assert dm.item_texts == own_log().item_texts


def test_a_folder_of_parquet_parts_reads_as_one_log(tmp_path):
    interactions = pd.read_csv(OWN_LOG_DIR / "interactions.csv")
    (tmp_path / "log").mkdir()
    for part, rows in enumerate((interactions.iloc[:1000], interactions.iloc[1000:])):  # as Spark writes it
        rows.to_parquet(tmp_path / "log" / f"part-{part:05d}.parquet")
    dm = LogDataModule(tmp_path / "log", OWN_LOG_DIR / "items.csv", **COLUMNS)
    assert torch.equal(dm.data.train_items, own_log().data.train_items)


def test_a_tsv_with_numeric_ids_and_text_columns(tmp_path):
    (tmp_path / "log.tsv").write_text("u\ti\tts\n1\t10\t5\n1\t11\t3\n1\t12\t9\n2\t10\t1\n2\t12\t2\n2\t11\t3\n")
    (tmp_path / "items.tsv").write_text("i\tname\tbrand\tblurb\n10\tSoap\tAcme\tsmells nice\n11\tComb\t\tplastic\n")
    log = parse_interaction_table(tmp_path / "log.tsv", tmp_path / "items.tsv", user_column="u", item_column="i",
                                  time_column="ts", title_column="name", brand_column="brand",
                                  text_columns=["blurb"])  # fmt: skip
    texts = dict(zip(log.items["item_id"], log.items["text"]))
    assert texts == {10: "Soap | Acme | smells nice", 11: "Comb | plastic"}  # numeric ids stay int64
    assert log.interactions["item_id"].dtype == "int64" and log.interactions["user_id"].dtype == "int64"
    assert log.interactions["order"].tolist() == [5, 3, 9, 1, 2, 3]
    # Numbers in the log, text in the item table: both become strings, so "10" still finds its title.
    (tmp_path / "items.tsv").write_text("i\tname\nx10\tNothing\n10\tSoap\n")
    log = parse_interaction_table(tmp_path / "log.tsv", tmp_path / "items.tsv", user_column="u", item_column="i",
                                  time_column="ts", title_column="name")  # fmt: skip
    assert dict(zip(log.items["item_id"], log.items["title"]))["10"] == "Soap"
    assert set(log.interactions["item_id"]) == {"10", "11", "12"}


def test_missing_column_names_the_file_and_the_columns_it_has():
    with pytest.raises(DataFormatError, match=r"interactions.csv:1: no column 'user_id' \(columns are \['user'"):
        LogDataModule(OWN_LOG_DIR / "interactions.csv").data  # noqa: B018


def test_a_value_that_is_no_date_names_its_row(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\na,x,2020-01-01\na,y,yesterday\n")
    with pytest.raises(DataFormatError, match=r"log.csv: column 'timestamp' row 2 is neither a number nor a date"):
        parse_interaction_table(tmp_path / "log.csv")


def test_rows_without_a_user_item_or_time_are_dropped_and_counted(tmp_path, caplog):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\na,x,1\n,y,2\na,,3\na,z,\na,w,5\n")
    with caplog.at_level(logging.WARNING):
        log = parse_interaction_table(tmp_path / "log.csv")
    assert log.interactions["item_id"].tolist() == ["x", "w"]
    assert "dropped 3 rows with an empty user_id or item_id or timestamp" in caplog.text


def test_order_column_or_no_order(tmp_path, caplog):
    (tmp_path / "log.csv").write_text("user_id,item_id,step\na,x,2\na,y,1\n")
    assert parse_interaction_table(tmp_path / "log.csv", time_column=None, order_column="step").ordering == "position"
    with caplog.at_level(logging.WARNING):
        assert parse_interaction_table(tmp_path / "log.csv", time_column=None).ordering == "none"
    assert "seeded random leave-one-out" in caplog.text
    with pytest.raises(ValueError, match="time_column or order_column, not both"):
        LogDataModule(tmp_path / "log.csv", order_column="step")


def test_the_custom_config_trains_a_text_model_with_linked_item_texts(monkeypatch, tmp_path):
    cli = main(["fit", "--config", "text_sasrec.yaml", "--data", "configs/data/custom.yaml",
                "--trainer.fast_dev_run", "1", "--trainer.logger", "false",
                "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    assert cli.datamodule.name == "own-log" and cli.trainer.state.finished
    assert cli.model.hparams.item_texts == cli.datamodule.item_texts and cli.model.hparams.item_texts[0]
