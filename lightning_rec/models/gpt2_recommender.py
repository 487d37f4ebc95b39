"""GPT-2 recommender (basic): frozen, precomputed GPT-2 item text embeddings concatenated with ID
embeddings under a NeuMF head (He et al. 2017, Sec. 3.4), the project brief's baseline LLM model."""

from __future__ import annotations

from collections.abc import Sequence

from lightning_rec.models.gpt2_enhanced import GPT2RecommenderEnhanced
from lightning_rec.nn.losses import RecommendationLoss
from lightning_rec.nn.text_encoder import Pooling


class GPT2Recommender(GPT2RecommenderEnhanced):
    """``score(u, i) = w^T [p_u * (q_i + t_i); MLP(p_u, [q_i; t_i])]`` with ``t_i`` a projection of
    the frozen, cached GPT-2 state of item ``i``'s text.

    The enhanced model with its extras off: cached text only, no attention, no adapters, no
    contrastive term. Only the projection, the ID embeddings and the head learn.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        item_texts: one text per item (linked from the data module's ``item_texts``).
        backbone: Hugging Face name or path (``gpt2``), or ``tiny-gpt2`` (bundled, random init).
        pretrained: load the backbone's weights; ``False`` initialises it randomly.
        pooling: ``last`` non-pad token or ``mean`` over tokens.
        max_length: tokens per item text.
        factor: width of ID embeddings, projected text vectors and the predictive layers.
        num_layers: hidden layers of the MLP branch.
        dropout: dropout in the MLP branch.
        loss: ``bce`` or ``bpr`` over the sampled negatives.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> model = GPT2Recommender(2, 3, ["red lipstick", "blue pen", "skin cream"], backbone="tiny-gpt2",
        ...                         pretrained=False, factor=8)
        >>> model.text_mode, model.fusion is None, model.text_encoder.trainable_backbone_parameters()
        ('cached', True, [])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_texts: list[str] | None = None,
        backbone: str = "gpt2",
        pretrained: bool = True,
        pooling: Pooling = "last",
        max_length: int = 32,
        factor: int = 32,
        num_layers: int = 2,
        dropout: float = 0.0,
        loss: RecommendationLoss = "bce",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        super().__init__(
            num_users, num_items, item_texts, backbone, pretrained, pooling, max_length, factor, num_layers, dropout,
            use_cache=True, use_attention=False, freeze_backbone=True, use_peft=False, contrastive_weight=0.0,
            loss=loss, learning_rate=learning_rate, weight_decay=weight_decay, top_k=top_k, predict_top_k=predict_top_k,
        )  # fmt: skip
        self.save_hyperparameters()
