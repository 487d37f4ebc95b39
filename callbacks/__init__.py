"""Lightning callbacks that work with any module implementing the documented protocols."""

from callbacks.metadata_cache import MetadataCacheCallback
from callbacks.prediction_writer import TopKPredictionWriter

__all__ = ["MetadataCacheCallback", "TopKPredictionWriter"]
