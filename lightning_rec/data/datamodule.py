"""The shared data module: parse -> preprocess -> leave-one-out -> encode -> tensor batches.

Dataset-specific modules in ``data_modules/`` only say how to parse their files (:meth:`load_log`).

Batches are ``dict[str, Tensor]``:

- train: ``user`` ``[B]``, ``item`` ``[B]`` (a positive), ``negative_items`` ``[B, num_negatives]``
  (uniform over items the user has not interacted with in train, redrawn every epoch from the seed),
  and ``rating`` ``[B]`` (float) where the dataset has explicit ratings.
- validation / test: ``user`` ``[B]``, ``target_item`` ``[B]`` (``-1`` where the held-out item never
  occurs in training: no model can rank it, and evaluation counts that user as a miss); with the ``sampled`` protocol
  ``candidate_items`` ``[B, 1 + num_eval_negatives]`` (target first, then negatives the user never
  interacted with: each user's a function of the seed and the user, drawn per batch); with the ``full``
  protocol ``seen_mask`` ``[B, num_items]``
  (items the user had before the target, to be excluded from the ranking).
- cold start (``cold_item_fraction`` > 0, ``test_on="cold"``): test batches as above, with each user's
  cold test item as ``target_item``; see :class:`InteractionDataModule`.
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

import inspect
import logging
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightning as L
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_rec.data.batching import Batch, BatchStream, csr, dense_mask, latest_items, stream_loader
from lightning_rec.data.interactions import EncodedInteractions, encode
from lightning_rec.data.negatives import InteractionSet, pair_keys, sample_distinct_negatives, sample_negatives
from lightning_rec.data.prepared import load_prepared, preparation_key, recorded_logs, save_prepared
from lightning_rec.data.splits import drop_short_users, hold_out_items, latest_per_user, leave_one_out
from lightning_rec.data.tables import InteractionLog

log = logging.getLogger(__name__)

EvalProtocol = Literal["sampled", "full"]
TrainMode = Literal["pairs", "sequences"]
ColdRanking = Literal["all", "cold"]
TestOn = Literal["warm", "cold"]

#: Options that shape only the loaders, not the prepared arrays (changing them reuses the prepared data).
LOADER_OPTIONS = frozenset({
    "batch_size", "eval_batch_size", "num_negatives", "num_eval_negatives", "eval_protocols", "history_length",
    "train_mode", "cold_ranking", "test_on", "eval_user_ids", "prepared_dir", "trainer", "prepare_data_per_node",
    "allow_zero_length_dataloader_with_multiple_devices",
})  # fmt: skip


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
        cold_item_fraction: cold-start protocol: hold out this seeded share of the items with all their
            interactions (0 turns it off). Held-out (cold) items stay in the vocabulary, after the warm
            ones, with their text; training, its negatives, validation and the ``warm`` test see warm
            items only (cold items are masked out of their rankings). ID models give cold items the mean
            of their trained item vectors (:meth:`Recommender.fill_untrained_items`).
        cold_ranking: what the ``cold`` test ranks each cold target against: ``all`` items (sampled
            negatives from all items) or ``cold`` items only. The user's other cold interactions are
            masked and never drawn as negatives; training and validation items are masked as usual.
        test_on: ``warm`` (the leave-one-out test on warm items) or ``cold`` (each user's latest
            interaction with a cold item, seeded random where the log has no order, after all of the
            user's warm interactions as history; users without one are not tested).
        eval_user_ids: validate and test only these users (raw ids, as in the files), for example a fixed
            sample shared with a model too slow to rank every user; ``None`` evaluates everyone.
        prepared_dir: where the parsed, split and encoded arrays are kept, one folder per input files'
            identity (path, size, modification time) and split options; every later fit (and every DDP
            process) memory-maps them instead of parsing. ``None`` parses every time. In-memory inputs (a
            DataFrame) are never kept.
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
        cold_item_fraction: float = 0.0,
        cold_ranking: ColdRanking = "all",
        test_on: TestOn = "warm",
        eval_user_ids: list[str] | None = None,
        prepared_dir: str | None = ".cache/lightning_rec/prepared",
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
        if not (isinstance(cold_item_fraction, (int, float)) and 0 <= cold_item_fraction < 1):
            raise ValueError(f"cold_item_fraction must be in [0, 1), got {cold_item_fraction!r}")
        if cold_ranking not in ("all", "cold"):
            raise ValueError(f"cold_ranking must be 'all' or 'cold', got {cold_ranking!r}")
        if test_on not in ("warm", "cold"):
            raise ValueError(f"test_on must be 'warm' or 'cold', got {test_on!r}")
        if test_on == "cold" and not cold_item_fraction:
            raise ValueError("test_on='cold' needs cold items: set cold_item_fraction > 0 (for example 0.2)")
        self.cold_item_fraction = float(cold_item_fraction)
        self.cold_ranking = cold_ranking
        self.test_on = test_on
        self.eval_user_ids = eval_user_ids
        self.prepared_dir = prepared_dir

    # ------------------------------------------------------------------ what subclasses provide
    def load_log(self) -> InteractionLog:
        """Parses the dataset files into raw-id tables."""
        raise NotImplementedError

    def fetch(self) -> None:
        """Brings input files that are missing (a download); runs before anything is read. Default: nothing."""

    def preprocess(self, interaction_log: InteractionLog) -> InteractionLog:
        """Dataset-specific filtering before the split; the default keeps everything."""
        return interaction_log

    # ------------------------------------------------------------------ the encoded data
    @cached_property
    def data(self) -> EncodedInteractions:
        """Parsed, split and encoded on first use, so the CLI can link sizes before ``setup``; read from
        :attr:`prepared_folder` when an earlier run (or rank 0 of this one) prepared it."""
        self.fetch()
        folder = self.prepared_folder
        data = load_prepared(folder) if folder is not None else None
        if data is not None:
            return data
        with recorded_logs() as records:
            data = self._parse_and_split()
        if folder is not None:
            # Kept with the arrays so every process maps one copy; unkept data builds them when negatives are drawn.
            data.train_keys = pair_keys(data.train_users, data.train_items, data.num_warm_items)
            save_prepared(data, folder, records)
        return data

    def _parse_and_split(self) -> EncodedInteractions:
        parsed = self.preprocess(self.load_log())
        interactions, items, ordering, name = parsed.interactions, parsed.items, parsed.ordering, parsed.name
        del parsed  # from here on only the split parts hold rows: the whole table is freed before encoding
        cold, cold_test = None, None
        if self.cold_item_fraction:
            interactions, cold = hold_out_items(interactions, self.cold_item_fraction, self.seed, name)
        interactions = drop_short_users(interactions, self.min_user_interactions, name)
        train, validation, test = leave_one_out(interactions, ordering, self.seed)
        del interactions
        if cold is not None:
            cold_test = cold[latest_per_user(cold, ordering, self.seed)]
        data = encode(train, validation, test, items, name, cold, cold_test)
        del train, validation, test
        data.ordering = ordering
        log.info(
            "%s: %d users, %d items, %d train interactions, split by %s",
            name, data.num_users, data.num_items, len(data.train_items), ordering,
        )  # fmt: skip
        return data

    def preparation_options(self) -> dict[str, Any] | None:
        """What the prepared arrays depend on: every option of this module (and of a subclass) except those
        that shape only the loaders; ``None`` (nothing is kept) if one is not plain data, such as a DataFrame."""
        options = {}
        for name, value in vars(self).items():
            if name.startswith("_") or name in LOADER_OPTIONS or isinstance(getattr(type(self), name, None),
                                                                           cached_property):  # fmt: skip
                continue
            if not _plain(value):
                return None
            options[name] = value
        return options

    @property
    def prepared_folder(self) -> Path | None:
        """The folder of this data's prepared arrays, or ``None`` where they are not kept."""
        options = self.preparation_options() if self.prepared_dir else None
        definition = self._definition_source()
        if options is None or definition is None:
            return None
        name = f"{type(self).__module__}.{type(self).__name__}\n{definition}"
        return Path(self.prepared_dir) / preparation_key(name, options)

    def _definition_source(self) -> str | None:
        """The source of this class and of its bases below :class:`InteractionDataModule`: an edit to a
        subclass's ``load_log`` or ``preprocess`` must never read arrays prepared by the old code. ``None``
        (nothing is kept) where the source cannot be read, as for a class typed into a REPL."""
        sources = []
        for cls in type(self).__mro__:
            if cls is InteractionDataModule:
                return "\n".join(sources)
            try:
                sources.append(inspect.getsource(cls))
            except (OSError, TypeError):
                return None
        return None

    def prepare_data(self) -> None:
        """Rank 0 of each node fetches, parses and writes the prepared arrays before the other processes
        read them in ``setup``."""
        self.data  # noqa: B018

    @property
    def num_users(self) -> int:
        return self.data.num_users

    @property
    def num_items(self) -> int:
        return self.data.num_items

    @property
    def num_warm_items(self) -> int:
        """Items with training interactions (indices ``0..num_warm_items-1``); all of them unless cold start."""
        return self.data.num_warm_items

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
        # Negatives come from warm items: a cold item must not be trained on, even as a negative.
        if self.data.train_keys is not None:  # prepared: memory-mapped, one copy for every process
            return InteractionSet.from_keys(self.data.train_keys, self.num_warm_items)
        return InteractionSet(self.data.train_users, self.data.train_items, self.num_warm_items)

    @cached_property
    def all_pairs(self) -> InteractionSet:
        """Every known warm interaction: the sampled protocol's negatives (warm items) avoid all of them."""
        return InteractionSet(*self.data.history("predict"), self.num_warm_items)

    @cached_property
    def cold_items_mask(self) -> Tensor | None:
        """``[num_items]`` True for cold items (masked out of warm rankings); ``None`` without cold start."""
        if not self.data.num_cold_items:
            return None
        return torch.arange(self.num_items) >= self.num_warm_items

    def setup(self, stage: str) -> None:
        self.data  # noqa: B018 - parse once per process, before the loaders ask

    # ------------------------------------------------------------------ loaders
    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _train_columns(self, epoch: int, positions: Tensor | None = None) -> Batch:
        data = self.data
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        # Negatives are drawn in user order (train_users is sorted: the membership test stays local) and stay
        # in that order: each batch gathers its rows through ``order``, and its users and items straight from
        # the (memory-mapped) training arrays.
        columns, stored = _epoch_layout(_shuffled(len(data.train_items), generator), positions)
        num_stored = len(data.train_items) if stored is None else len(stored)
        negatives = torch.empty(num_stored, self.num_negatives, dtype=torch.int32)
        sample_negatives(data.train_users, self.num_negatives, self.train_pairs, generator, out=negatives, keep=stored)
        return {**columns, "negative_items": negatives}

    def _add_train_rows(self, batch: Batch) -> Batch:
        row, data = batch.pop("row"), self.data
        batch["user"], batch["item"] = data.train_users[row], data.train_items[row]
        if data.train_ratings is not None:
            batch["rating"] = data.train_ratings[row]
        if self.history_length:  # cut from the positive's position
            batch["history"] = latest_items(
                data.train_indptr, data.train_items, batch["user"], row, self.history_length
            )
        return batch

    def _sequence_columns(self, epoch: int, positions: Tensor | None = None) -> Batch:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        columns, stored = _epoch_layout(_shuffled(self.num_users, generator), positions)
        users = torch.arange(self.num_users)
        negatives = sample_negatives(users, self.history_length, self.train_pairs, generator, keep=stored)
        return {**columns, "negative_items": negatives}

    def _add_sequences(self, batch: Batch) -> Batch:
        indptr, items = self.data.train_indptr, self.data.train_items
        users = batch["user"] = batch.pop("row")
        batch["sequence_items"] = latest_items(indptr, items, users, indptr[users + 1], self.history_length + 1)
        return batch

    def train_dataloader(self) -> DataLoader:
        if self.train_mode == "sequences":
            rows, make_columns, finish = self.num_users, self._sequence_columns, self._add_sequences
        else:
            rows, make_columns, finish = len(self.data.train_items), self._train_columns, self._add_train_rows
        stream = BatchStream(
            rows, self.batch_size, make_columns, finish_batch=finish, epoch_fn=self._epoch,
            even_shards=True, start_fn=self._batches_done_this_epoch, positions_only=True,
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
        users = torch.nonzero(((targets >= 0) | unrankable) & self._evaluated_users()).squeeze(1)
        columns = {"user": users, "target_item": targets[users]}
        draw = None
        if "sampled" in self.eval_protocols:
            draw = self._eval_negative_draw(users, self.all_pairs, self.seed + (1 if stage == "validate" else 2))
        known = csr(*self.data.history(stage), self.num_users)
        return self._user_loader(columns, known, "full" in self.eval_protocols, always_masked=self.cold_items_mask,
                                 draw_negatives=draw)  # fmt: skip

    def _evaluated_users(self) -> Tensor:
        """``[num_users]`` True for the users :attr:`eval_user_ids` names (everyone without it)."""
        if self.eval_user_ids is None:
            return torch.ones(self.num_users, dtype=torch.bool)
        ids = pd.Index(self.data.user_ids)
        wanted = pd.Index(self.eval_user_ids).astype(ids.dtype) if len(self.eval_user_ids) else pd.Index([])
        positions = ids.get_indexer(wanted)
        if (positions < 0).any():
            unknown = list(wanted[positions < 0][:5])
            raise ValueError(
                f"eval_user_ids: {int((positions < 0).sum())} ids are not users of this data "
                f"(e.g. {unknown}): use the raw ids of the files, of users with 3 or more interactions"
            )
        evaluated = torch.zeros(self.num_users, dtype=torch.bool)
        evaluated[torch.as_tensor(positions)] = True
        return evaluated

    def _eval_negative_draw(
        self, users: Tensor, exclude: InteractionSet, seed: int, offset: int = 0, pool: str = "items"
    ) -> Callable[[Tensor], Tensor]:
        """Draws distinct negatives for a batch's users from ``offset + [0, exclude.num_items)`` (the ``pool``),
        avoiding ``exclude``. Each user's are a function of ``(seed, user)``, so they are drawn batch by batch,
        only for the users scored; ``users`` (all the loader's) are checked here, before the first batch."""
        count = self.num_eval_negatives
        unseen = exclude.num_items - exclude.count_per_user(self.num_users)[users]
        short = users[unseen < count].tolist()
        if short:
            raw = [str(self.data.user_ids[user]) for user in short[:10]]
            raise ValueError(
                f"{len(short)} users have fewer than num_eval_negatives={self.num_eval_negatives} {pool} they "
                f"never interacted with (user ids {raw}{' ...' if len(short) > 10 else ''}): lower "
                "num_eval_negatives or leave 'sampled' out of eval_protocols"
            )
        return lambda batch_users: offset + sample_distinct_negatives(batch_users, count, exclude, seed)

    def _cold_test_loader(self) -> DataLoader:
        """Each user's cold test item, ranked against all items or the cold ones (``cold_ranking``)."""
        data, warm = self.data, self.num_warm_items
        users = torch.nonzero((data.cold_test_items >= 0) & self._evaluated_users()).squeeze(1)
        targets = data.cold_test_items[users]
        columns = {"user": users, "target_item": targets}
        # Every warm interaction (train, validation, test) is known when cold items are tested: the
        # history and the mask. The user's other cold items are positives too: masked, never negatives.
        warm_users, warm_items = data.history("predict")
        other = data.cold_items != data.cold_test_items[data.cold_users]
        other_users, other_items = data.cold_users[other], data.cold_items[other]
        draw = None
        if "sampled" in self.eval_protocols:
            seed = self.seed + 3
            if self.cold_ranking == "cold":
                exclude = InteractionSet(data.cold_users, data.cold_items - warm, data.num_cold_items)
                draw = self._eval_negative_draw(users, exclude, seed, offset=warm, pool="cold items")
            else:
                exclude = InteractionSet(torch.cat([warm_users, data.cold_users]),
                                         torch.cat([warm_items, data.cold_items]), self.num_items)  # fmt: skip
                draw = self._eval_negative_draw(users, exclude, seed)
        masked = csr(torch.cat([warm_users, other_users]), torch.cat([warm_items, other_items]), self.num_users)
        warm_catalog = torch.arange(self.num_items) < warm if self.cold_ranking == "cold" else None
        history = csr(warm_users, warm_items, self.num_users)
        return self._user_loader(columns, masked, "full" in self.eval_protocols, history, warm_catalog, draw)

    def _user_loader(
        self,
        columns: Batch,
        known: tuple[Tensor, Tensor],
        mask_known: bool,
        history: tuple[Tensor, Tensor] | None = None,
        always_masked: Tensor | None = None,
        draw_negatives: Callable[[Tensor], Tensor] | None = None,
    ) -> DataLoader:
        """Batches of users with, as asked, the mask of their known items (plus ``always_masked``
        items), their latest items (from ``history``, by default from ``known``) and their sampled
        candidates (the target, then ``draw_negatives(users)``)."""
        indptr, items = known
        history_indptr, history_items = history or known

        def finish(batch: Batch) -> Batch:
            users = batch["user"]
            if draw_negatives is not None:
                batch["candidate_items"] = torch.cat([batch["target_item"].unsqueeze(1), draw_negatives(users)], 1)
            if mask_known:
                seen = dense_mask(indptr, items, users, self.num_items)
                batch["seen_mask"] = seen if always_masked is None else seen | always_masked
            if self.history_length:
                end = history_indptr[users + 1]
                batch["history"] = latest_items(history_indptr, history_items, users, end, self.history_length)
            return batch

        stream = BatchStream(len(columns["user"]), self.eval_batch_size, lambda epoch: columns, finish)
        return stream_loader(stream)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validate")

    def test_dataloader(self) -> DataLoader:
        return self._cold_test_loader() if self.test_on == "cold" else self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        data = self.data
        users, items = data.history("predict")
        history = csr(users, items, self.num_users)
        if data.cold_users is None:
            return self._user_loader({"user": torch.arange(self.num_users)}, history, mask_known=True)
        # Cold start: the user's cold items are known too, so they are never recommended again.
        known = csr(torch.cat([users, data.cold_users]), torch.cat([items, data.cold_items]), self.num_users)
        return self._user_loader({"user": torch.arange(self.num_users)}, known, mask_known=True, history=history)


def _plain(value: Any) -> bool:
    """Data a key can describe: numbers, strings, paths, and lists or dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str, Path)):
        return True
    if isinstance(value, (list, tuple)):
        return all(map(_plain, value))
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain(item) for key, item in value.items())
    return False


def _shuffled(num_rows: int, generator: torch.Generator) -> Tensor:
    """A random permutation of ``num_rows`` rows, as 32-bit indices where they fit (half the memory of an epoch's
    order; the permutation and the generator's next draws are those of the 64-bit one)."""
    dtype = torch.int32 if num_rows < 2**31 else torch.long
    return torch.randperm(num_rows, generator=generator, dtype=dtype)


def _epoch_layout(order: Tensor, positions: Tensor | None) -> tuple[Batch, Tensor | None]:
    """How an epoch in ``order`` is stored for :class:`BatchStream`: every row in place (``positions`` is
    ``None``), or only the distinct rows at ``positions`` (a process's share), ascending, under a ``row`` column.
    Also returns those stored rows (``None``: all), for which the epoch's draws are kept."""
    if positions is None:
        return {"order": order}, None
    share = order[positions]
    taken = torch.zeros(len(order), dtype=torch.bool)
    taken[share] = True
    place = taken.cumsum(0, dtype=torch.int32)[share] - 1  # each share entry's place among the stored rows
    stored = torch.nonzero(taken).squeeze(1).to(order.dtype)
    return {"row": stored, "order": place}, stored
