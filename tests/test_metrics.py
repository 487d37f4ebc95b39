import math

import pytest
import torch

from lightning_rec.metrics import RankingMetrics, target_positions


def compute(scores, targets, top_k=(1, 3, 10)):
    metric = RankingMetrics(top_k=top_k)
    metric.update(torch.tensor(scores), torch.tensor(targets))
    return {k: round(v.item(), 6) for k, v in metric.compute().items()}


def test_hand_computed_single_target():
    # User 1: target (col 2) is 3rd -> HR@1 0, HR@3 1, NDCG@3 = 1/log2(4) = 0.5, MRR 1/3.
    # User 2: target (col 0) is 1st -> all 1.
    result = compute([[0.9, 0.8, 0.7, 0.1], [0.5, 0.4, 0.3, 0.2]], [[2], [0]])
    assert result["HR@1"] == 0.5 and result["HR@3"] == 1.0
    assert result["NDCG@3"] == pytest.approx((0.5 + 1.0) / 2)
    assert result["MRR@3"] == pytest.approx((1 / 3 + 1) / 2)
    assert result["MRR@1"] == 0.5


def test_ties_count_against_the_target():
    # A constant scorer must not get credit: the target is ranked after all tied items.
    assert target_positions(torch.zeros(1, 5), torch.tensor([[2]])).item() == 4.0
    result = compute([[1.0, 1.0, 1.0, 0.0]], [[0]])
    assert result["HR@1"] == 0.0 and result["HR@3"] == 1.0 and result["NDCG@3"] == pytest.approx(0.5)


def test_k_larger_than_catalog_and_excluded_items():
    scores = [[float("-inf"), 0.3, 0.2]]  # item 0 seen and masked out
    result = compute(scores, [[2]], top_k=(1, 10))
    assert result["HR@10"] == 1.0 and result["NDCG@10"] == pytest.approx(1 / math.log2(3))


def test_multiple_targets_recall_and_ideal_dcg():
    # Targets at cols 1 and 3; ranking 0, 1, 2, 3 -> positions 1 and 3.
    result = compute([[0.9, 0.8, 0.7, 0.6]], [[1, 3]], top_k=(2, 4))
    assert result["Recall@2"] == 0.5 and result["HR@2"] == 1.0
    ideal = 1 + 1 / math.log2(3)
    assert result["NDCG@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert result["MRR@4"] == 0.5
    # Padding (-1) is ignored.
    assert compute([[0.9, 0.8, 0.7, 0.6]], [[1, -1]], top_k=(2,))["Recall@2"] == 1.0


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        compute([[float("nan"), 1.0]], [[0]])


def test_state_is_sums_so_shards_merge_exactly():
    scores, targets = torch.randn(10, 30), torch.randint(30, (10, 1))
    whole = RankingMetrics(top_k=[5])
    whole.update(scores, targets)
    left, right = RankingMetrics(top_k=[5]), RankingMetrics(top_k=[5])
    left.update(scores[:3], targets[:3])
    right.update(scores[3:], targets[3:])
    left.merge_state(right)  # what the sum reduction across processes does
    merged, expected = left.compute(), whole.compute()
    assert merged.keys() == expected.keys()
    assert all(torch.isclose(merged[k], expected[k]) for k in expected)
