"""Lightning callbacks that work with any module implementing the documented protocols."""

from lightning_rec.callbacks.metadata_cache import MetadataCacheCallback
from lightning_rec.callbacks.prediction_writer import TopKPredictionWriter

__all__ = ["MetadataCacheCallback", "TopKPredictionWriter"]
