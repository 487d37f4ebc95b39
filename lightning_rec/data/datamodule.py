"""The shared data module: parse -> preprocess -> leave-one-out -> encode -> tensor batches.

Dataset-specific modules in ``data_modules/`` only say how to parse their files (:meth:`load_log`).

Batches are ``dict[str, Tensor]``:

- train: ``user`` ``[B]``, ``item`` ``[B]`` (a positive), ``negative_items`` ``[B, num_negatives]``
  (uniform over items the user has not interacted with in train, redrawn every epoch from the seed),
  and ``rating`` ``[B]`` (float) where the dataset has explicit ratings.
- validation / test: ``user`` ``[B]``, ``target_item`` ``[B]`` (``-1`` where the held-out item never
  occurs in training: no model can rank it, and evaluation counts that user as a miss); with the ``sampled`` protocol
  ``candidate_items`` ``[B, 1 + num_eval_negatives]`` (target first, then negatives the user never
  interacted with, fixed by the seed); with the ``full`` protocol ``seen_mask`` ``[B, num_items]``
  (items the user had before the target, to be excluded from the ranking).
- predict: ``user`` ``[B]``, ``seen_mask`` ``[B, num_items]`` (every item the user is known to have:
  train, validation and test, so recommendations are new to the user).
- with ``history_length`` > 0 every batch also has ``history`` ``[B, history_length]``: the user's
  latest items before the target (before the positive, in training), left-padded with ``-1``.
- with ``train_mode="sequences"`` (sequence models: SASRec, BERT4Rec) a training batch is one row
  per user instead: ``user`` ``[B]``, ``sequence_items`` ``[B, history_length + 1]`` (the user's
  latest training items, left-padded with ``-1``) and ``negative_items`` ``[B, history_length]``
  (one negative per next-item position, redrawn every epoch from the seed).
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Literal

import lightning as L
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_rec.data.batching import Batch, BatchStream, csr, dense_mask, latest_items, stream_loader
from lightning_rec.data.interactions import EncodedInteractions, encode
from lightning_rec.data.negatives import (
    InteractionSet,
    TooFewUnseenItems,
    sample_distinct_negatives,
    sample_negatives,
)
from lightning_rec.data.splits import drop_short_users, leave_one_out
from lightning_rec.data.tables import InteractionLog

log = logging.getLogger(__name__)

EvalProtocol = Literal["sampled", "full"]
TrainMode = Literal["pairs", "sequences"]


class InteractionDataModule(L.LightningDataModule):
    """Leave-one-out implicit-feedback data with seeded negatives; subclasses implement :meth:`load_log`.

    Args:
        batch_size: positives per training batch (each comes with ``num_negatives`` negatives).
        eval_batch_size: users per validation/test/predict batch.
        num_negatives: sampled training negatives per positive (NCF uses 4).
        num_eval_negatives: negatives per user for the ``sampled`` protocol (NCF uses 99).
        eval_protocols: which rankings validation and test report: ``sampled`` candidates and/or
            ``full`` catalog ranking with the user's earlier items masked out.
        min_user_interactions: users with fewer interactions are dropped (logged count).
        history_length: add each user's latest ``history_length`` earlier items to every batch
            (for sequence and history-attention models); 0 leaves them out.
        train_mode: ``pairs`` (one row per training interaction) or ``sequences`` (one row per
            user with the latest ``history_length + 1`` items, for sequence models).
        seed: fixes the split where no order is known, the training negatives of each epoch and
            the evaluation candidates (identical across models for the same seed).
    """

    def __init__(
        self,
        batch_size: int = 256,
        eval_batch_size: int = 256,
        num_negatives: int = 4,
        num_eval_negatives: int = 99,
        eval_protocols: list[EvalProtocol] | None = None,
        min_user_interactions: int = 3,
        history_length: int = 0,
        train_mode: TrainMode = "pairs",
        seed: int = 42,
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1), ("num_negatives", num_negatives, 1),
            ("num_eval_negatives", num_eval_negatives, 1), ("history_length", history_length, 0),
            # Leave-one-out takes a validation and a test item and needs one more to train on.
            ("min_user_interactions", min_user_interactions, 3),
        ):  # fmt: skip
            if not (isinstance(value, int) and value >= least):
                raise ValueError(f"{type(self).__name__}: {name} must be an integer >= {least}, got {value!r}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_negatives = num_negatives
        self.num_eval_negatives = num_eval_negatives
        self.eval_protocols = list(eval_protocols or ["sampled", "full"])
        unknown = set(self.eval_protocols) - {"sampled", "full"}
        if unknown:
            raise ValueError(f"unknown eval_protocols {sorted(unknown)}; choose from 'sampled', 'full'")
        self.min_user_interactions = min_user_interactions
        self.history_length = history_length
        if train_mode not in ("pairs", "sequences"):
            raise ValueError(f"train_mode must be 'pairs' or 'sequences', got {train_mode!r}")
        if train_mode == "sequences" and history_length <= 0:
            raise ValueError("train_mode='sequences' needs history_length > 0 (the maximum sequence length)")
        self.train_mode = train_mode
        self.seed = seed

    # ------------------------------------------------------------------ what subclasses provide
    def load_log(self) -> InteractionLog:
        """Parses the dataset files into raw-id tables."""
        raise NotImplementedError

    def preprocess(self, interaction_log: InteractionLog) -> InteractionLog:
        """Dataset-specific filtering before the split; the default keeps everything."""
        return interaction_log

    # ------------------------------------------------------------------ the encoded data
    @cached_property
    def data(self) -> EncodedInteractions:
        """Parsed, split and encoded on first use, so the CLI can link sizes before ``setup``."""
        parsed = self.preprocess(self.load_log())
        interactions = drop_short_users(parsed.interactions, self.min_user_interactions, parsed.name)
        train, validation, test = leave_one_out(interactions, parsed.ordering, self.seed)
        data = encode(train, validation, test, parsed.items, parsed.name)
        data.ordering = parsed.ordering
        log.info(
            "%s: %d users, %d items, %d train interactions, split by %s",
            parsed.name, data.num_users, data.num_items, len(data.train_items), parsed.ordering,
        )  # fmt: skip
        return data

    @property
    def num_users(self) -> int:
        return self.data.num_users

    @property
    def num_items(self) -> int:
        return self.data.num_items

    @property
    def ordering(self) -> str:
        """How each user's interactions were ordered for the split: time, position or none (random)."""
        return self.data.ordering

    @property
    def user_ids(self) -> list[str]:
        """Raw id of each user index."""
        return self.data.user_ids.tolist()

    @property
    def item_table(self) -> pd.DataFrame:
        """Items in index order: ``item_id`` (raw), ``title``, ``categories``, ``text``."""
        return self.data.items

    @property
    def item_titles(self) -> list[str]:
        return self.data.items["title"].tolist()

    @property
    def item_texts(self) -> list[str]:
        return self.data.items["text"].tolist()

    @property
    def item_categories(self) -> list[list[str]]:
        """Categories (MovieLens genres, Amazon categories) of each item index; may be empty lists."""
        return [list(categories) for categories in self.data.items["categories"]]

    @property
    def item_popularity(self) -> Tensor:
        return self.data.item_popularity()

    @cached_property
    def train_pairs(self) -> InteractionSet:
        return InteractionSet(self.data.train_users, self.data.train_items, self.num_items)

    @cached_property
    def all_pairs(self) -> InteractionSet:
        """Every known interaction: the sampled protocol's negatives avoid all of them."""
        return InteractionSet(*self.data.history("predict"), self.num_items)

    def setup(self, stage: str) -> None:
        self.data  # noqa: B018 - parse once per process, before the loaders ask

    # ------------------------------------------------------------------ loaders
    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _train_columns(self, epoch: int) -> Batch:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.data.train_items), generator=generator)
        users = self.data.train_users[order]
        negatives = sample_negatives(users, self.num_negatives, self.train_pairs, generator)
        columns = {"user": users, "item": self.data.train_items[order], "negative_items": negatives}
        if self.data.train_ratings is not None:
            columns["rating"] = self.data.train_ratings[order]
        if self.history_length:
            columns["row"] = order  # the history is cut per batch, from the positive's position
        return columns

    def _add_train_history(self, batch: Batch) -> Batch:
        row = batch.pop("row")
        data = self.data
        batch["history"] = latest_items(data.train_indptr, data.train_items, batch["user"], row, self.history_length)
        return batch

    def _sequence_columns(self, epoch: int) -> Batch:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        users = torch.randperm(self.num_users, generator=generator)
        negatives = sample_negatives(users, self.history_length, self.train_pairs, generator)
        return {"user": users, "negative_items": negatives}

    def _add_sequences(self, batch: Batch) -> Batch:
        indptr, items, users = self.data.train_indptr, self.data.train_items, batch["user"]
        batch["sequence_items"] = latest_items(indptr, items, users, indptr[users + 1], self.history_length + 1)
        return batch

    def train_dataloader(self) -> DataLoader:
        if self.train_mode == "sequences":
            rows, make_columns, finish = self.num_users, self._sequence_columns, self._add_sequences
        else:
            rows, make_columns = len(self.data.train_items), self._train_columns
            finish = self._add_train_history if self.history_length else None
        stream = BatchStream(
            rows, self.batch_size, make_columns, finish_batch=finish, epoch_fn=self._epoch,
            even_shards=True, start_fn=self._batches_done_this_epoch,
        )  # fmt: skip
        return stream_loader(stream)

    def _batches_done_this_epoch(self) -> int:
        # A run resumed mid-epoch continues where it stopped instead of replaying the epoch's start.
        epoch_loop = self.trainer.fit_loop.epoch_loop if self.trainer is not None else None
        if epoch_loop is None or not epoch_loop.restarting:
            return 0
        return epoch_loop.batch_progress.current.ready

    def _eval_loader(self, stage: Literal["validate", "test"]) -> DataLoader:
        data = self.data
        targets, unrankable = (
            (data.val_items, data.val_unrankable) if stage == "validate" else (data.test_items, data.test_unrankable)
        )
        # Users whose held-out item never occurs in training stay in, with target -1: they count as misses.
        users = torch.nonzero((targets >= 0) | unrankable).squeeze(1)
        columns = {"user": users, "target_item": targets[users]}
        if "sampled" in self.eval_protocols:
            try:
                negatives = sample_distinct_negatives(
                    users, self.num_eval_negatives, self.all_pairs, seed=self.seed + (1 if stage == "validate" else 2)
                )
            except TooFewUnseenItems as err:
                raw = [str(data.user_ids[user]) for user in err.users[:10]]
                raise ValueError(
                    f"{len(err.users)} users have fewer than num_eval_negatives={self.num_eval_negatives} items they "
                    f"never interacted with (user ids {raw}{' ...' if len(err.users) > 10 else ''}): lower "
                    "num_eval_negatives or leave 'sampled' out of eval_protocols"
                ) from None
            columns["candidate_items"] = torch.cat([targets[users].unsqueeze(1), negatives], dim=1)
        return self._user_loader(columns, csr(*self.data.history(stage), self.num_users), "full" in self.eval_protocols)

    def _user_loader(self, columns: Batch, known: tuple[Tensor, Tensor], mask_known: bool) -> DataLoader:
        """Batches of users with, as asked, the mask of their known items and their latest items."""
        indptr, items = known

        def finish(batch: Batch) -> Batch:
            users = batch["user"]
            if mask_known:
                batch["seen_mask"] = dense_mask(indptr, items, users, self.num_items)
            if self.history_length:
                batch["history"] = latest_items(indptr, items, users, indptr[users + 1], self.history_length)
            return batch

        stream = BatchStream(len(columns["user"]), self.eval_batch_size, lambda epoch: columns, finish)
        return stream_loader(stream)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validate")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        known = csr(*self.data.history("predict"), self.num_users)
        return self._user_loader({"user": torch.arange(self.num_users)}, known, mask_known=True)
