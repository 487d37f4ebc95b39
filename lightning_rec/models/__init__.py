"""Recommenders, one LightningModule per file; all share the scoring interface of :class:`Recommender`."""

from lightning_rec.models.base import Recommender
from lightning_rec.models.bert4rec import BERT4Rec
from lightning_rec.models.content_rec import ContentRec
from lightning_rec.models.fm_bpr import FMBPR
from lightning_rec.models.genre import GENRE
from lightning_rec.models.gmf import GMF
from lightning_rec.models.gpt2_enhanced import GPT2RecommenderEnhanced
from lightning_rec.models.gpt2_recommender import GPT2Recommender
from lightning_rec.models.gpt4rec import GPT4Rec
from lightning_rec.models.item_pop import ItemPop
from lightning_rec.models.m6rec import M6Rec
from lightning_rec.models.mf_bpr import MFBPR
from lightning_rec.models.mlp import MLP
from lightning_rec.models.neumf import NeuMF
from lightning_rec.models.sasrec import SASRec
from lightning_rec.models.text_sasrec import TextSASRec
from lightning_rec.models.youtube_dnn import YouTubeDNN

__all__ = [
    "BERT4Rec",
    "ContentRec",
    "FMBPR",
    "GENRE",
    "GMF",
    "MFBPR",
    "MLP",
    "GPT2Recommender",
    "GPT2RecommenderEnhanced",
    "GPT4Rec",
    "ItemPop",
    "M6Rec",
    "NeuMF",
    "Recommender",
    "SASRec",
    "TextSASRec",
    "YouTubeDNN",
]
