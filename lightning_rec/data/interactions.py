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
        val_unrankable, test_unrankable: ``[U]`` True where the user's held-out item never occurs in
            training: no model can rank it, so evaluation counts the user as a miss.
        ordering: how each user's interactions were ordered for the split.
        train_ratings: explicit rating of each training interaction, where the dataset has them.
        num_cold_items: cold start: the last ``num_cold_items`` item indices are items held out of
            training with all their interactions (in the vocabulary for their text, never trained on).
        cold_users, cold_items: cold start: every (user, cold item) interaction of a user in the vocabulary.
        cold_test_items: cold start: ``[U]`` each user's cold test item (their latest interaction with a
            cold item), ``-1`` where the user has none.
        train_keys: the distinct training pairs as sorted ``user * num_warm_items + item`` keys (the negative
            samplers' membership test), kept with the prepared arrays so every process maps one copy; ``None``
            for data that is not kept (the data module builds them when it first draws negatives).
    """

    user_ids: np.ndarray
    items: pd.DataFrame
    train_users: Tensor
    train_items: Tensor
    train_indptr: Tensor
    val_items: Tensor
    test_items: Tensor
    val_unrankable: Tensor
    test_unrankable: Tensor
    ordering: Ordering = "time"
    train_ratings: Tensor | None = None
    num_cold_items: int = 0
    cold_users: Tensor | None = None
    cold_items: Tensor | None = None
    cold_test_items: Tensor | None = None
    train_keys: Tensor | None = None

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_warm_items(self) -> int:
        """Items with training interactions come first in the vocabulary: indices ``0..num_warm_items-1``."""
        return self.num_items - self.num_cold_items

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
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame,
    name: str = "",
    cold: pd.DataFrame | None = None,
    cold_test: pd.DataFrame | None = None,
) -> EncodedInteractions:
    """Builds the item vocabulary from ``train`` alone and encodes all three splits with it.

    A held-out interaction with an item never seen in training cannot be scored by an ID model, and
    adding the item to the vocabulary would leak catalog knowledge; its user stays in the evaluation
    and counts as a miss (logged count). The exception is the cold-start protocol: the items of
    ``cold`` (every interaction with the held-out items; ``cold_test`` the test rows among them) are
    added after the training items, deliberately, so text models can score them.
    """
    item_vocab = pd.Index(np.sort(train["item_id"].unique()))
    num_cold_items = 0
    if cold is not None:
        cold_vocab = np.sort(cold["item_id"].unique())
        num_cold_items = len(cold_vocab)
        item_vocab = item_vocab.append(pd.Index(cold_vocab))
    user_vocab = pd.Index(train["user_id"].unique())
    train_users = torch.as_tensor(user_vocab.get_indexer(train["user_id"]), dtype=torch.long)
    train_items = torch.as_tensor(item_vocab.get_indexer(train["item_id"]), dtype=torch.long)
    indptr = torch.zeros(len(user_vocab) + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(train_users, minlength=len(user_vocab)), 0)

    def held_out(frame: pd.DataFrame, split: str) -> tuple[Tensor, Tensor]:
        users = user_vocab.get_indexer(frame["user_id"])
        item_index = item_vocab.get_indexer(frame["item_id"])
        targets = torch.full((len(user_vocab),), -1, dtype=torch.long)
        unrankable = torch.zeros(len(user_vocab), dtype=torch.bool)
        known_user = users >= 0
        known = known_user & (item_index >= 0)
        targets[torch.as_tensor(users[known])] = torch.as_tensor(item_index[known], dtype=torch.long)
        cold = known_user & (item_index < 0)
        unrankable[torch.as_tensor(users[cold])] = True
        if cold.any():
            log.warning(
                "%s: %d of %d %s items never occur in training; those users count as misses in evaluation",
                name, int(cold.sum()), int(known_user.sum()), split,
            )  # fmt: skip
        return targets, unrankable

    table = items.drop_duplicates("item_id").set_index("item_id").reindex(item_vocab)
    no_text = table["title"].isna()
    if no_text.any():
        log.warning("%s: %d items have no metadata; their title and text are empty", name, int(no_text.sum()))
        table.loc[no_text, ["title", "text"]] = ""
        table.loc[no_text, "categories"] = pd.Series(
            [[] for _ in range(int(no_text.sum()))], index=table.index[no_text]
        )
    table = table.reset_index().rename(columns={"index": "item_id"})
    val_items, val_unrankable = held_out(validation, "validation")
    test_items, test_unrankable = held_out(test, "test")
    cold_columns = {}
    if cold is not None:
        users = user_vocab.get_indexer(cold["user_id"])
        known = users >= 0
        if not known.all():
            log.warning(
                "%s: %d cold interactions of %d users without training interactions are left out",
                name, int((~known).sum()), cold.loc[~known, "user_id"].nunique(),
            )  # fmt: skip
        cold_items = torch.as_tensor(item_vocab.get_indexer(cold["item_id"])[known], dtype=torch.long)
        cold_test_items = torch.full((len(user_vocab),), -1, dtype=torch.long)
        test_users = user_vocab.get_indexer(cold_test["user_id"])
        has_user = test_users >= 0
        cold_test_items[torch.as_tensor(test_users[has_user])] = torch.as_tensor(
            item_vocab.get_indexer(cold_test["item_id"])[has_user], dtype=torch.long
        )
        cold_columns = dict(num_cold_items=num_cold_items, cold_users=torch.as_tensor(users[known]),
                            cold_items=cold_items, cold_test_items=cold_test_items)  # fmt: skip
    return EncodedInteractions(
        user_ids=user_vocab.to_numpy(),
        items=table[["item_id", "title", "categories", "text"]],
        train_users=train_users,
        train_items=train_items,
        train_indptr=indptr,
        val_items=val_items,
        test_items=test_items,
        val_unrankable=val_unrankable,
        test_unrankable=test_unrankable,
        train_ratings=torch.tensor(train["rating"].to_numpy(dtype=np.float32)) if "rating" in train else None,
        **cold_columns,
    )
