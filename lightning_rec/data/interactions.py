"""Encoding a split into contiguous ids and tensors. Vocabulary and statistics come from train only."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lightning_rec.data.tables import Ordering

log = logging.getLogger(__name__)


@dataclass
class EncodedInteractions:
    """A leave-one-out split in contiguous ids (users ``0..U-1``, items ``0..I-1``).

    Attributes:
        user_ids: raw user id of each user index.
        items: item table in index order (``item_id``, ``title``, ``categories``, ``text``).
        train_users, train_items: training interactions, sorted by user and then by order.
        train_indptr: ``[U + 1]`` offsets of each user's slice of ``train_items`` (CSR layout).
        val_items, test_items: ``[U]`` held-out item per user, ``-1`` where the user has none.
        ordering: how each user's interactions were ordered for the split.
        train_ratings: explicit rating of each training interaction, where the dataset has them.
    """

    user_ids: np.ndarray
    items: pd.DataFrame
    train_users: Tensor
    train_items: Tensor
    train_indptr: Tensor
    val_items: Tensor
    test_items: Tensor
    ordering: Ordering = "time"
    train_ratings: Tensor | None = None

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def item_popularity(self) -> Tensor:
        """Training interactions per item."""
        return torch.bincount(self.train_items, minlength=self.num_items)

    def history(self, stage: str) -> tuple[Tensor, Tensor]:
        """``(users, items)`` known before ``stage``, in order: train for validation; then the
        validation item for test; then the test item for predict (recommending beyond all known)."""
        users, items = [self.train_users], [self.train_items]
        held_out = {"validate": [], "test": [self.val_items], "predict": [self.val_items, self.test_items]}[stage]
        for targets in held_out:
            has = torch.nonzero(targets >= 0).squeeze(1)
            users.append(has)
            items.append(targets[has])
        return torch.cat(users), torch.cat(items)


def encode(
    train: pd.DataFrame, validation: pd.DataFrame, test: pd.DataFrame, items: pd.DataFrame, name: str = ""
) -> EncodedInteractions:
    """Builds the item vocabulary from ``train`` alone and encodes all three splits with it.

    Held-out interactions with an item never seen in training cannot be scored by an ID model and
    would leak catalog knowledge if added to the vocabulary; they are dropped with a logged count.
    """
    item_vocab = pd.Index(np.sort(train["item_id"].unique()))
    user_vocab = pd.Index(train["user_id"].unique())
    train_users = torch.as_tensor(user_vocab.get_indexer(train["user_id"]), dtype=torch.long)
    train_items = torch.as_tensor(item_vocab.get_indexer(train["item_id"]), dtype=torch.long)
    indptr = torch.zeros(len(user_vocab) + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(train_users, minlength=len(user_vocab)), 0)

    def held_out(frame: pd.DataFrame, split: str) -> Tensor:
        users = user_vocab.get_indexer(frame["user_id"])
        item_index = item_vocab.get_indexer(frame["item_id"])
        known = (users >= 0) & (item_index >= 0)
        if (~known).any():
            log.warning(
                "%s: dropped %d %s interactions with an item unseen in training", name, int((~known).sum()), split
            )
        targets = torch.full((len(user_vocab),), -1, dtype=torch.long)
        targets[torch.as_tensor(users[known])] = torch.as_tensor(item_index[known], dtype=torch.long)
        return targets

    table = items.drop_duplicates("item_id").set_index("item_id").reindex(item_vocab)
    no_text = table["title"].isna()
    if no_text.any():
        log.warning("%s: %d items have no metadata; their title and text are empty", name, int(no_text.sum()))
        table.loc[no_text, ["title", "text"]] = ""
        table.loc[no_text, "categories"] = pd.Series(
            [[] for _ in range(int(no_text.sum()))], index=table.index[no_text]
        )
    table = table.reset_index().rename(columns={"index": "item_id"})
    return EncodedInteractions(
        user_ids=user_vocab.to_numpy(),
        items=table[["item_id", "title", "categories", "text"]],
        train_users=train_users,
        train_items=train_items,
        train_indptr=indptr,
        val_items=held_out(validation, "validation"),
        test_items=held_out(test, "test"),
        train_ratings=torch.as_tensor(train["rating"].to_numpy(), dtype=torch.float) if "rating" in train else None,
    )
