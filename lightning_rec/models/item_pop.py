"""ItemPop: rank items by their number of training interactions (the non-personalised baseline)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_rec.models.base import Batch, Recommender


class ItemPop(Recommender):
    """Scores an item by how often it occurs as a positive in the training batches.

    It learns by counting during the first training epoch (no gradient, no optimizer), so it is
    trained and checkpointed like every other model; one epoch is enough.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> import torch
        >>> model = ItemPop(num_users=2, num_items=3)
        >>> model.item_counts += torch.tensor([1.0, 5.0, 2.0])
        >>> model.score_all(torch.tensor([0])).argmax().item()
        1
    """

    def __init__(
        self, num_users: int, num_items: int, top_k: Sequence[int] = (5, 10, 20), predict_top_k: int = 10
    ) -> None:
        super().__init__(num_users, num_items, top_k=top_k, predict_top_k=predict_top_k)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.register_buffer("item_counts", torch.zeros(num_items))
        self.register_buffer("counted_epochs", torch.zeros((), dtype=torch.long))

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        if self.counted_epochs == 0:
            self.item_counts.index_add_(0, batch["item"], torch.ones_like(batch["item"], dtype=torch.float))

    def on_train_epoch_end(self) -> None:
        if self.counted_epochs == 0:
            # Each process counted its shard; the catalog counts are the sum.
            self.item_counts.copy_(self.trainer.strategy.reduce(self.item_counts, reduce_op="sum"))
        self.counted_epochs += 1

    def configure_optimizers(self) -> None:
        return None

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        return self.item_counts[items]

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.item_counts.expand(len(users), -1)
