"""Evaluation metrics; they know no model, only scores and targets."""

from lightning_rec.metrics.ranking import RankingMetrics, target_positions

__all__ = ["RankingMetrics", "target_positions"]
