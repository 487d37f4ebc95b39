"""GENRE-style multi-task recommender (Liu et al. 2023): language-model features for users and items,
hand-built pair features f(x), a logistic click head p(y|x) = sigmoid(theta^T f(x)), and weighted tasks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_rec.models.base import Batch, Recommender, check_per_item, normal_embedding, require_history
from lightning_rec.nn.losses import recommendation_loss
from lightning_rec.nn.text_encoder import Pooling, frozen_text_vectors
from lightning_rec.nn.towers import history_mean

#: Columns of f(x) after the learned text and ID interactions: cosine of the text vectors, the
#: user's preference for the item's categories, the item's log popularity.
NUM_SCALAR_FEATURES = 3


class GENRE(Recommender):
    """Language-model features, feature engineering, a logistic click head, ``L = sum_t alpha_t L_t``.

    **Features.** The item text encoder (any Hugging Face backbone, frozen, run once) turns each item's
    text into a vector ``t_i``; the user's profile is the mean of the text vectors of their latest
    items ``t_u`` and their category profile ``c_u`` (the share of their items in each category). For a
    pair ``x = (u, i)``: ``f(x) = [P t_u * P t_i, e_u * e_i, cos(t_u, t_i), c_u . c_i / |c_i|,
    log(1 + pop_i)]`` (``P`` a learned projection, ``e`` ID embeddings). **Heads.** Click:
    ``p(y|x) = sigmoid(theta^T f(x) + b)``; rating: a second linear head on ``f(x)`` (MSE, where the
    data module's batches carry ``rating``); category: logits over categories from the user's
    features (cross-entropy against the positive item's categories). **Tasks** are weighted by
    ``click_weight``, ``rating_weight`` and ``category_weight``; each loss is logged as
    ``train/loss_<task>``. Ranking uses the click head. Data: ``history_length`` > 0.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        item_texts: text of each item (linked).
        item_categories: categories of each item (linked).
        item_popularity: training interactions per item (linked).
        backbone: text encoder name or path (all-MiniLM-L6-v2, ``gpt2``), or ``tiny-gpt2``.
        pretrained: load the encoder's weights.
        pooling: ``mean`` over tokens or ``last`` token.
        max_length: tokens per item text.
        factor: width of the projected text vectors and of the ID embeddings.
        click_weight: alpha of the click task (BCE over the positive and sampled negatives).
        rating_weight: alpha of rating regression (needs ratings in the batches; 0 turns it off).
        category_weight: alpha of next-item category prediction (0 turns it off).
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> import torch
        >>> model = GENRE(2, 3, ["red lipstick", "blue pen", "skin cream"], [["lips"], ["office"], ["skin"]],
        ...               [5, 1, 2], backbone="tiny-gpt2", pretrained=False, factor=8)
        >>> model.click_probability(torch.tensor([0]), torch.tensor([[0, 1, 2]]), torch.tensor([[-1, 2]])).shape
        torch.Size([1, 3])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_texts: list[str] | None = None,
        item_categories: list[list[str]] | None = None,
        item_popularity: Sequence[int] | None = None,
        backbone: str = "gpt2",
        pretrained: bool = True,
        pooling: Pooling = "mean",
        max_length: int = 32,
        factor: int = 32,
        click_weight: float = 1.0,
        rating_weight: float = 0.0,
        category_weight: float = 0.0,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        super().__init__(num_users, num_items, "bce", learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters(ignore=["item_texts", "item_categories", "item_popularity"])
        check_per_item(item_texts, num_items, "item_texts", required=True)
        check_per_item(item_categories, num_items, "item_categories", required=True)
        if min(click_weight, rating_weight, category_weight) < 0 or click_weight + rating_weight + category_weight == 0:
            raise ValueError("task weights must be >= 0 and not all 0")
        vectors = frozen_text_vectors(item_texts, backbone, pretrained, pooling, max_length)
        self.register_buffer("item_text_vectors", vectors, persistent=False)
        self.category_names = sorted({c for categories in item_categories for c in categories})
        index = {name: j for j, name in enumerate(self.category_names)}
        multi_hot = torch.zeros(num_items, max(1, len(self.category_names)))
        for item, categories in enumerate(item_categories):
            multi_hot[item, [index[c] for c in categories]] = 1.0
        self.register_buffer("item_category_multi_hot", multi_hot, persistent=False)
        popularity = torch.as_tensor(item_popularity if item_popularity is not None else [0] * num_items)
        self.register_buffer("item_log_popularity", torch.log1p(popularity.float()), persistent=False)

        self.text_projection = nn.Linear(vectors.shape[1], factor)
        self.user_embedding = normal_embedding(num_users, factor)
        self.item_embedding = normal_embedding(num_items, factor)
        feature_size = 2 * factor + NUM_SCALAR_FEATURES
        self.click_head = nn.Linear(feature_size, 1)  # theta
        self.rating_head = nn.Linear(feature_size, 1)
        self.category_head = nn.Linear(factor + multi_hot.shape[1], multi_hot.shape[1])

    # ------------------------------------------------------------------ features
    def user_profile(self, history: Tensor) -> tuple[Tensor, Tensor]:
        """The user's text vector ``[B, D]`` and category profile ``[B, num_categories]`` from their history."""
        return history_mean(self.item_text_vectors, history), history_mean(self.item_category_multi_hot, history)

    def pair_features(self, users: Tensor, items: Tensor, history: Tensor) -> Tensor:
        """``f(x)`` for every (user, candidate) pair: ``[B, C, 2 * factor + 3]``."""
        user_text, user_categories = self.user_profile(history)
        item_text = self.item_text_vectors[items]  # [B, C, D]
        text_interaction = self.text_projection(user_text).unsqueeze(1) * self.text_projection(item_text)
        id_interaction = self.user_embedding(users).unsqueeze(1) * self.item_embedding(items)
        cosine = F.cosine_similarity(user_text.unsqueeze(1), item_text, dim=-1)
        item_categories = self.item_category_multi_hot[items]
        category_match = (item_categories * user_categories.unsqueeze(1)).sum(-1) / item_categories.sum(-1).clamp(min=1)
        scalars = torch.stack([cosine, category_match, self.item_log_popularity[items]], dim=-1)
        return torch.cat([text_interaction, id_interaction, scalars], dim=-1)

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.item_embedding.weight]

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        """Click logits ``theta^T f(x) + b``."""
        return self.click_head(self.pair_features(users, items, require_history(history, self))).squeeze(-1)

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        """The click logits of every item at once: ``theta^T f(x)`` is linear in each block of ``f(x)``,
        so each block is one ``[B, F] @ [F, num_items]`` product instead of ``B x num_items`` feature rows."""
        user_text, user_categories = self.user_profile(require_history(history, self))
        theta = self.click_head.weight[0]
        factor = self.hparams.factor
        text_weight, id_weight, (cosine_w, category_w, popularity_w) = theta[:factor], theta[factor:-3], theta[-3:]
        item_text = self.item_text_vectors
        scores = (self.text_projection(user_text) * text_weight) @ self.text_projection(item_text).T
        scores = scores + (self.user_embedding(users) * id_weight) @ self.item_embedding.weight.T
        scores = scores + cosine_w * F.normalize(user_text, dim=-1) @ F.normalize(item_text, dim=-1).T
        categories = self.item_category_multi_hot
        scores = scores + category_w * user_categories @ (categories / categories.sum(-1, keepdim=True).clamp(min=1)).T
        return scores + popularity_w * self.item_log_popularity + self.click_head.bias

    def click_probability(self, users: Tensor, items: Tensor, history: Tensor) -> Tensor:
        """``p(y = 1 | x) = sigmoid(theta^T f(x) + b)``."""
        return torch.sigmoid(self.score(users, items, history))

    # ------------------------------------------------------------------ multi-task training
    def task_losses(self, batch: Batch) -> dict[str, Tensor]:
        users, history = batch["user"], require_history(batch.get("history"), self)
        items = torch.cat([batch["item"].unsqueeze(1), batch["negative_items"]], dim=1)
        features = self.pair_features(users, items, history)
        scores = self.click_head(features).squeeze(-1)
        losses = {"click": recommendation_loss(scores[:, :1], scores[:, 1:], "bce")}
        if self.hparams.rating_weight > 0:
            if "rating" not in batch:
                raise ValueError("rating_weight > 0 but the batches carry no ratings: this dataset has none")
            predicted = self.rating_head(features[:, 0]).squeeze(-1)
            losses["rating"] = F.mse_loss(predicted, batch["rating"].float())
        if self.hparams.category_weight > 0:
            user_text, user_categories = self.user_profile(history)
            logits = self.category_head(torch.cat([self.text_projection(user_text), user_categories], dim=-1))
            target = self.item_category_multi_hot[batch["item"]]
            has_categories = target.sum(-1) > 0
            target = target / target.sum(-1, keepdim=True).clamp(min=1)
            per_user = -(target * logits.log_softmax(-1)).sum(-1)
            losses["category"] = per_user[has_categories].mean() if has_categories.any() else logits.sum() * 0
        return losses

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        losses = self.task_losses(batch)
        weights = {"click": self.hparams.click_weight, "rating": self.hparams.rating_weight,
                   "category": self.hparams.category_weight}  # fmt: skip
        loss = sum(weights[task] * value for task, value in losses.items())
        size = len(batch["user"])
        self.log_dict({f"train/loss_{task}": value for task, value in losses.items()}, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss
