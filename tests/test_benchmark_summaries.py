"""Benchmark mean rows: every field is over all seeds, never one seed's value passed off as the mean."""

from benchmarks.gpt2_movielens import summarise


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
