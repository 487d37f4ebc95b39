"""Recommenders, one LightningModule per file; all share the scoring interface of :class:`Recommender`."""

from lightning_rec.models.base import Recommender
from lightning_rec.models.gmf import GMF
from lightning_rec.models.item_pop import ItemPop
from lightning_rec.models.mf_bpr import MFBPR
from lightning_rec.models.mlp import MLP
from lightning_rec.models.neumf import NeuMF

__all__ = ["GMF", "MFBPR", "MLP", "ItemPop", "NeuMF", "Recommender"]
