"""ContentRec (GPT4Rec's content baseline): items are their text, a user is the mean of their items."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_rec.models.base import Recommender, check_per_item, require_history
from lightning_rec.nn.losses import RecommendationLoss
from lightning_rec.nn.text_encoder import Pooling, frozen_text_vectors
from lightning_rec.nn.towers import dot_scores, history_mean


class ContentRec(Recommender):
    """``score(u, i) = <mean(P t_h for h in history(u)), P t_i> + b_i`` where ``t_i`` is the frozen
    text vector of item ``i`` (any Hugging Face encoder: the pretrained all-MiniLM-L6-v2 in the
    benchmark, the bundled ``tiny-gpt2`` offline) and ``P`` a learned projection. No item or user
    IDs: the model can rank items never seen in training by their text alone.

    Args:
        num_users: number of users (linked from the data module; unused, users are histories).
        num_items: number of items (linked from the data module).
        item_texts: one text per item (linked from the data module's ``item_texts``).
        backbone: Hugging Face name or local path, or ``tiny-gpt2``.
        pretrained: load the backbone's weights.
        pooling: ``mean`` over tokens or ``last`` token.
        max_length: tokens per item text.
        factor: width of the projected text vectors.
        loss: ``bpr`` (default), ``bce`` or ``softmax`` over the sampled negatives.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> import torch
        >>> model = ContentRec(2, 3, ["red lipstick", "blue pen", "skin cream"], backbone="tiny-gpt2",
        ...                    pretrained=False, factor=8)
        >>> model.score_all(torch.tensor([0]), history=torch.tensor([[0, 2]])).shape
        torch.Size([1, 3])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_texts: list[str] | None = None,
        backbone: str = "gpt2",
        pretrained: bool = True,
        pooling: Pooling = "mean",
        max_length: int = 32,
        factor: int = 64,
        loss: RecommendationLoss = "bpr",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        super().__init__(num_users, num_items, loss, learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        check_per_item(item_texts, num_items, "item_texts")
        vectors = frozen_text_vectors(item_texts or [], backbone, pretrained, pooling, max_length)
        self.register_buffer("item_text_vectors", vectors, persistent=False)
        self.projection = nn.Linear(vectors.shape[1], factor)
        self.item_bias = nn.Parameter(torch.zeros(num_items))

    def item_vectors(self) -> Tensor:
        return self.projection(self.item_text_vectors)

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.item_bias]

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        item_vectors = self.item_vectors()
        user_vectors = history_mean(item_vectors, require_history(history, self))
        return dot_scores(user_vectors, item_vectors, items) + self.item_bias[items]

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        item_vectors = self.item_vectors()
        return history_mean(item_vectors, require_history(history, self)) @ item_vectors.T + self.item_bias
