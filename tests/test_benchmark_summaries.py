"""Benchmarks: mean rows over every seed, the cold-start protocol end to end on the embedded data, and the
sequential benchmark's recipe options."""

import json
import sys
from argparse import Namespace

import torch

from benchmarks.gpt2_movielens import summarise
from tests.conftest import write_ml100k


def test_a_mean_row_averages_every_metric_and_lists_text_fields_the_seeds_disagree_on():
    rows = [
        {"model": "NeuMF", "protocol": "full", "HR@10": 0.2, "Recall@10": 0.2, "NDCG@10": 0.10, "seed": 0,
         "peak_memory_mb": 1000, "split": "random", "cached_phase": "best 10"},
        {"model": "NeuMF", "protocol": "full", "HR@10": 0.4, "Recall@10": 0.4, "NDCG@10": 0.20, "seed": 1,
         "peak_memory_mb": 3000, "split": "random", "cached_phase": "best 11"},
        {"model": "NeuMF", "protocol": "sampled-99", "HR@10": 0.8, "Recall@10": 0.8, "NDCG@10": 0.5, "seed": 0},
    ]  # fmt: skip
    full, sampled = summarise(rows)
    assert full["seed"] == "mean of 0,1" and full["seeds"] == 2
    assert full["HR@10"] == full["Recall@10"] == 0.3
    assert full["NDCG@10"] == 0.15 and abs(full["NDCG@10 sd"] - 0.0707) < 1e-4
    assert full["peak_memory_mb"] == 3000  # the highest peak, not a mean of peaks
    assert full["split"] == "random" and full["cached_phase"] == ["best 10", "best 11"]
    assert sampled["seed"] == "mean of 0" and sampled["NDCG@10 sd"] == 0.0


def test_a_field_missing_from_one_seed_gets_no_mean_over_the_others():
    rows = [
        {"model": "GMF", "protocol": "full", "HR@10": 0.2, "NDCG@10": 0.1, "seed": 0, "fit_seconds": 10},
        {"model": "GMF", "protocol": "full", "HR@10": 0.4, "NDCG@10": 0.2, "seed": 1},
    ]
    (entry,) = summarise(rows)
    assert "fit_seconds" not in entry and "fit_seconds sd" not in entry


def test_the_cold_start_benchmark_runs_end_to_end_and_separates_the_catalog_pass(tmp_path):
    from benchmarks.cold_start import results_file, run
    from benchmarks.common import use_output_dir
    from lightning_rec.data.synthetic import EMBEDDED_DIR

    args = Namespace(dataset="ml-1m", data=str(EMBEDDED_DIR), seeds="0", epochs=1, cold_fraction=0.2,
                     eval_negatives=20, backbone="tiny-gpt2", models="ItemPop,GPT2Recommender,SASRec,TextSASRec-text",
                     id_dropout=0.0,
                     cache_dir=str(tmp_path), out=str(tmp_path / "out"), publish=False)  # fmt: skip
    use_output_dir(args)
    rows = run(args)
    assert json.loads(results_file().read_text()) == rows  # each model's rows were written as its fit ended
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    assert set(by_model) == {"ItemPop", "GPT2Recommender[tiny-gpt2]", "SASRec", "TextSASRec-text[tiny-gpt2]"}
    for model_rows in by_model.values():  # 3 tests x 2 protocols, cold ones named so
        assert sorted(r["protocol"] for r in model_rows if "cold" in r["protocol"]) == [
            "cold, cold-all, full", "cold, cold-all, sampled-99", "cold, cold-only, full", "cold, cold-only, sampled-99"
        ]  # fmt: skip
    # An ID-only model cannot rank cold items above each other: ties count against the target.
    assert all(r["NDCG@10"] == 0 for r in by_model["ItemPop"] if r["test"] != "warm")
    assert all(r["NDCG@10"] == 0 for r in by_model["SASRec"] if r["test"] == "cold-only")  # mean-filled cold rows
    text = by_model["GPT2Recommender[tiny-gpt2]"]
    assert text[0]["catalog_cache_seconds"] > 0 and by_model["ItemPop"][0]["catalog_cache_seconds"] == 0
    assert all(r["catalog_cache_seconds"] <= r["fit_seconds"] + 1 for r in text)


def test_the_sequential_benchmark_names_its_recipe_and_tests_the_checkpoint_its_monitor_chose(tmp_path, monkeypatch):
    from benchmarks import sequential

    data = write_ml100k(tmp_path / "ml-100k", num_users=30)
    out = tmp_path / "out"
    argv = ["sequential", "--dataset", "ml-100k", "--data", str(data), "--models", "SASRec", "--loss", "ce",
            "--dim", "8", "--max-length", "5", "--block", "sasrec", "--monitor", "HR@10", "--max-epochs", "3",
            "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    sequential.main()
    (row,) = json.loads((out / "sequential.json").read_text())
    # Only the options that differ from the defaults name the row (and its checkpoint folder).
    assert (row["block"], row["monitor"]) == ("sasrec", "HR@10") and "init" not in row and "negatives" not in row
    (folder,) = (out / "checkpoints").iterdir()
    assert folder.name.endswith("-ce-sasrec-HR@10")
    best = torch.load(folder / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["hyper_parameters"]["block"] == "sasrec"
    stopping = [key for key in best["callbacks"] if key.startswith(("EarlyStopping", "ModelCheckpoint"))]
    assert sum("'monitor': 'val/full/HR@10'" in key for key in stopping) == 2  # early stopping and the best checkpoint
    assert row["best_epoch"] == best["epoch"]
    sequential.main()  # the finished row is found and skipped
    assert len(json.loads((out / "sequential.json").read_text())) == 1
