"""Evaluation metrics; they know no model, only scores and targets."""

from lightning_rec.metrics.beyond_accuracy import BeyondAccuracyMetrics
from lightning_rec.metrics.ranking import RankingMetrics, target_positions

__all__ = ["BeyondAccuracyMetrics", "RankingMetrics", "target_positions"]
