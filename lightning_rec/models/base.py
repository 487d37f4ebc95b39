"""What every recommender shares: the scoring interface, the sampled-negative loss, one evaluation.

A model implements :meth:`Recommender.score` (and, when it can do better than scoring every item
pair by pair, :meth:`Recommender.score_all`); training, validation, test and predict then work the
same for every model, so their numbers are comparable by construction.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from lightning_rec.metrics import RankingMetrics
from lightning_rec.nn.losses import RecommendationLoss, recommendation_loss
from lightning_rec.nn.optim import adam

log = logging.getLogger(__name__)

Batch = dict[str, Tensor]
PROTOCOL_KEYS = {"sampled": "candidate_items", "full": "seen_mask"}


class Recommender(L.LightningModule):
    """Base class of all recommenders.

    Args:
        num_users: number of users (linked from the data module by the CLI).
        num_items: number of items (linked from the data module by the CLI).
        loss: ``bce`` (pointwise, NCF) or ``bpr`` (pairwise) over the sampled negatives.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay (L2 regularisation).
        top_k: cut-offs for the evaluation metrics.
        predict_top_k: how many items ``predict`` returns per user.
    """

    #: Items scored per forward in :meth:`score_all`, bounding memory for pairwise scorers.
    score_chunk_pairs: int = 2**20

    def __init__(
        self,
        num_users: int,
        num_items: int,
        loss: RecommendationLoss = "bce",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        super().__init__()
        if num_users <= 0 or num_items <= 0:
            raise ValueError(f"num_users and num_items must be positive, got {num_users} and {num_items}")
        self.num_users, self.num_items = num_users, num_items
        self.loss_kind, self.learning_rate, self.weight_decay = loss, learning_rate, weight_decay
        self.predict_top_k = predict_top_k
        #: Adam's betas (a subclass with an ``adam_betas`` argument sets them).
        self.adam_betas: tuple[float, float] = (0.9, 0.999)
        #: Items with training interactions, indices ``0..num_training_items-1`` (all of them unless the data
        #: module holds items out for cold start): the classes of a full training softmax and the pool of sampled
        #: negatives. A held-out item must not be trained even as a negative, or a text model learns to bury it.
        self.num_training_items = num_items
        self.metrics = nn.ModuleDict(
            {f"{stage}_{protocol}": RankingMetrics(top_k) for stage in ("val", "test") for protocol in PROTOCOL_KEYS}
        )

    def save_hyperparameters(self, *args: Any, **kwargs: Any) -> None:
        # Every model records its constructor arguments here, so they are checked here, once for all.
        kwargs.setdefault("frame", inspect.currentframe().f_back)
        super().save_hyperparameters(*args, **kwargs)
        check_hyperparameters(self.hparams, type(self).__name__)

    def setup(self, stage: str) -> None:
        check_sizes_match(self, self.trainer.datamodule)
        self.num_training_items = getattr(self.trainer.datamodule, "num_warm_items", self.num_items)

    # ------------------------------------------------------------------ the scoring interface
    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        """Scores ``items`` ``[B, C]`` for ``users`` ``[B]``; returns ``[B, C]`` (higher is better).

        ``history`` ``[B, H]`` holds each user's latest earlier items, left-padded with ``-1``; it is
        in the batch when the data module's ``history_length`` > 0, and models that need none ignore it.
        """
        raise NotImplementedError

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        """Scores every item for ``users`` ``[B]``; returns ``[B, num_items]``."""
        return self.score_items(users, torch.arange(self.num_items, device=users.device), history)

    def score_items(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        """Scores the same ``items`` ``[N]`` for every one of ``users`` ``[B]``, pair by pair in chunks of
        at most :attr:`score_chunk_pairs` pairs; returns ``[B, N]``."""
        chunk = max(1, self.score_chunk_pairs // max(1, len(users)))
        blocks = [self.score(users, block.expand(len(users), -1), history) for block in items.split(chunk)]
        return torch.cat(blocks, dim=1)

    def score_unseen(self, users: Tensor, seen_mask: Tensor, history: Tensor | None = None) -> Tensor:
        """:meth:`score_all` in float with the items of ``seen_mask`` ``[B, num_items]`` at ``-inf``.

        A pairwise scorer (one that keeps the default :meth:`score_all`) pays per pair, so it skips the items
        that every user of the batch has seen, for example the warm items of a cold-items-only ranking.
        """
        if type(self).score_all is not Recommender.score_all:  # a vectorised score_all: skipping saves nothing
            return self.score_all(users, history).float().masked_fill(seen_mask, float("-inf"))
        open_items = (~seen_mask).any(dim=0).nonzero().squeeze(1)
        scores = torch.full(seen_mask.shape, float("-inf"), device=seen_mask.device)
        if len(open_items):  # else every user has seen every item (predict can ask for that)
            scores[:, open_items] = self.score_items(users, open_items, history).float()
        return scores.masked_fill(seen_mask, float("-inf"))

    # ------------------------------------------------------------------ cold start
    def item_id_parameters(self) -> list[nn.Parameter]:
        """Parameters with a learned row per item index, catalog first (ID embeddings, item biases); ``[]``
        for models whose items are only text or counts."""
        return []

    @torch.no_grad()
    def fill_untrained_items(self, num_trained_items: int) -> None:
        """Sets the rows of items ``num_trained_items..num_items-1`` (the cold-start protocol's held-out
        items, never in training) in every :meth:`item_id_parameters` table to the mean of the trained
        rows: an average item, instead of a random initialisation no training ever moved."""
        for parameter in self.item_id_parameters():
            parameter[num_trained_items : self.num_items] = parameter[:num_trained_items].mean(0)

    def _fill_cold_items(self) -> None:
        # The data module says how many items had training interactions (all of them unless cold start).
        if self.num_training_items < self.num_items:
            self.fill_untrained_items(self.num_training_items)

    def _flush_optimizer(self) -> None:
        # Rows an optimizer steps lazily (CatchUpSparseAdam) are brought up to date before the whole table is read,
        # at points of the schedule (every validation and epoch end), so that a resumed run flushes where the
        # uninterrupted one did and a checkpoint saved there holds up-to-date rows.
        if self._trainer is not None:
            for optimizer in self.trainer.optimizers:
                getattr(optimizer, "flush", lambda: None)()

    def on_validation_start(self) -> None:
        self._flush_optimizer()
        self._fill_cold_items()

    def on_train_epoch_end(self) -> None:
        self._flush_optimizer()

    def on_test_start(self) -> None:
        self._fill_cold_items()
        self._test_clock, self._test_users = time.perf_counter(), 0

    def on_predict_start(self) -> None:
        self._fill_cold_items()

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: Batch) -> Tensor:
        # One call for positives and negatives, so shared work (e.g. text encoding) runs once.
        items = torch.cat([batch["item"].unsqueeze(1), batch["negative_items"]], dim=1)
        scores = self.score(batch["user"], items, batch.get("history"))
        return recommendation_loss(scores[:, :1], scores[:, 1:], self.loss_kind)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["user"]))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Embedding tables built with sparse gradients (``sparse_gradients=True``) get a sparse Adam step.
        return adam(self, lr=self.learning_rate, weight_decay=self.weight_decay, betas=tuple(self.adam_betas))

    # ------------------------------------------------------------------ exact resume
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["model_class"] = type(self).__name__  # checked before a tool builds a model from it
        # Dropout and masking draw from torch's global generator; Lightning does not checkpoint it,
        # so without this a resumed run would diverge from the uninterrupted one.
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if torch.cuda.is_available():
            checkpoint["cuda_rng_states"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
        if "cuda_rng_states" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng_states"])
        if type(self).configure_optimizers is Recommender.configure_optimizers:  # a custom optimizer keeps its own
            _drop_frozen_parameters_from_optimizer_state(checkpoint, list(self.parameters()))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, batch: Batch, stage: str) -> None:
        rankable = batch["target_item"] >= 0
        if not bool(rankable.all()):
            # Held-out items never seen in training: no model can rank them, so each is a miss.
            misses = int((~rankable).sum())
            for protocol, key in PROTOCOL_KEYS.items():
                if key in batch:
                    self.metrics[f"{stage}_{protocol}"].add_misses(misses)
            batch = {name: values[rankable] for name, values in batch.items()}
            if not bool(rankable.any()):
                return
        users, history = batch["user"], batch.get("history")
        if "candidate_items" in batch:
            # The target is column 0 of the candidates.
            scores = self.score(users, batch["candidate_items"], history)
            self.metrics[f"{stage}_sampled"].update(scores.float(), torch.zeros_like(users).unsqueeze(1))
        if "seen_mask" in batch:
            scores = self.score_unseen(users, batch["seen_mask"], history)
            self.metrics[f"{stage}_full"].update(scores, batch["target_item"].unsqueeze(1))

    def log_metrics(self, stage: str) -> None:
        for protocol in PROTOCOL_KEYS:
            metric = self.metrics[f"{stage}_{protocol}"]
            if metric.update_called:
                values = metric.compute()  # synchronised across processes by torchmetrics
                self.log_dict({f"{stage}/{protocol}/{name}": value for name, value in values.items()})
            metric.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._test_users += len(batch["user"])
        self.evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test")
        if self._test_users and self.trainer.is_global_zero:
            # Full ranking by a pair scorer costs catalog x users forwards: say what a test of more users will cost.
            seconds = time.perf_counter() - self._test_clock
            log.info("test: %d users in %.1f s, %.2f s per 1,000 users (this process)", self._test_users, seconds,
                     1000 * seconds / self._test_users)  # fmt: skip

    def predict_step(self, batch: Batch, batch_idx: int) -> Batch:
        """Top ``predict_top_k`` unseen items per user: ``user``, ``items`` and ``scores``.

        A user with fewer unseen items than ``predict_top_k`` gets ``-1`` in the slots left over:
        an item the user already has is never returned.
        """
        seen = batch.get("seen_mask")
        if seen is None:
            scores = self.score_all(batch["user"], batch.get("history")).float()
        else:
            scores = self.score_unseen(batch["user"], seen, batch.get("history"))
        top = scores.topk(min(self.predict_top_k, self.num_items), dim=1)
        items = top.indices if seen is None else top.indices.masked_fill(seen.gather(1, top.indices), -1)
        return {"user": batch["user"], "items": items, "scores": top.values}


def frozen_pretrained_weights(module: nn.Module, prefix: str, pretrained: bool) -> dict[str, Tensor]:
    """The parameters of ``module`` (state-dict names under ``prefix``) that are pretrained and frozen. Checkpoints
    leave them out (a LoRA checkpoint of a 135M LM is then megabytes, not half a gigabyte) and a load refills
    them from the backbone loaded by name; random initialisations are kept, as no name can rebuild them."""
    if not pretrained:
        return {}
    return {f"{prefix}.{name}": p for name, p in module.named_parameters() if not p.requires_grad}


def drop_frozen_weights(checkpoint: dict[str, Any], frozen: Mapping[str, Tensor]) -> None:
    for name in frozen:
        checkpoint["state_dict"].pop(name, None)


def refill_frozen_weights(checkpoint: dict[str, Any], frozen: Mapping[str, Tensor]) -> None:
    # Only the weights left out on purpose are filled in; loading stays strict, so a checkpoint of another
    # model or configuration still fails naming its keys.
    for name, parameter in frozen.items():
        checkpoint["state_dict"].setdefault(name, parameter.detach())


def require_history(history: Tensor | None, model: Recommender) -> Tensor:
    if history is None:
        raise ValueError(
            f"{type(model).__name__} scores from the user's latest items: set the data module's history_length > 0"
        )
    return history


def require_sequences(batch: Batch, model: Recommender) -> Tensor:
    if "sequence_items" not in batch:
        raise ValueError(f"{type(model).__name__} trains on sequences: set the data module's train_mode='sequences'")
    return batch["sequence_items"]


def check_per_item(values: Sequence | None, num_items: int, name: str, required: bool = False) -> None:
    """A linked per-item list (``item_texts``, ``item_titles``, ...) must have one entry per item;
    ``required`` also rejects a missing one."""
    if values is None and not required:
        return
    count = 0 if values is None else len(values)
    if count != num_items:
        label = name.replace("_", " ")
        raise ValueError(f"got {count} {label} for {num_items} items (link data.{name} to the model)")


def normal_embedding(count: int, dim: int, std: float = 0.01, sparse: bool = False) -> nn.Embedding:
    """An embedding table initialised from N(0, std^2), as NCF does; ``sparse`` gives it sparse gradients
    (the optimizer then updates only the rows a batch looked up)."""
    embedding = nn.Embedding(count, dim, sparse=sparse)
    nn.init.normal_(embedding.weight, std=std)
    return embedding


def _drop_frozen_parameters_from_optimizer_state(checkpoint: dict, parameters: list[nn.Parameter]) -> None:
    """Checkpoints from before Adam skipped frozen parameters (November 2026) hold one Adam group over every
    parameter, frozen ones included (they never had a gradient, so no state): renumber the group and its state
    to the trainable parameters, so that such a run still resumes."""
    states = checkpoint.get("optimizer_states") or []
    if len(states) != 1 or len(states[0].get("param_groups", [])) != 1:
        return
    group = states[0]["param_groups"][0]
    trainable = [index for index, parameter in enumerate(parameters) if parameter.requires_grad]
    if len(group["params"]) != len(parameters) or len(trainable) == len(parameters):
        return
    renumber = {old: new for new, old in enumerate(trainable)}
    states[0]["state"] = {renumber[key]: value for key, value in states[0]["state"].items() if key in renumber}
    group["params"] = list(range(len(trainable)))


def bias_table(count: int, sparse: bool = False) -> nn.Embedding:
    """Zero-initialised biases, one per row, as an ``[count, 1]`` table: looked up per batch, so that with
    ``sparse`` their gradients are sparse too. Load older checkpoints that held a ``[count]`` vector through
    :func:`load_bias_vectors`."""
    table = nn.Embedding(count, 1, sparse=sparse)
    nn.init.zeros_(table.weight)
    return table


def load_bias_vectors(module: nn.Module, names: Sequence[str]) -> None:
    """Lets ``module`` load checkpoints whose biases ``names`` were ``[count]`` parameters (before
    :func:`bias_table`)."""

    def reshape(state_dict: dict, prefix: str, *args) -> None:
        for name in names:
            if prefix + name in state_dict:
                state_dict[prefix + name + ".weight"] = state_dict.pop(prefix + name).unsqueeze(1)

    module._register_load_state_dict_pre_hook(reshape)


#: Constructor arguments every model checks by name (see :func:`check_hyperparameters`).
AT_LEAST_ONE = (
    "factor", "dim", "num_layers", "num_heads", "max_length", "lora_rank", "score_dim", "num_beams",
    "num_queries", "num_negatives", "max_title_tokens", "max_item_tokens", "max_query_tokens", "num_virtual_tokens",
    "predict_top_k", "text_max_length",
)  # fmt: skip
NON_NEGATIVE = (
    "weight_decay", "contrastive_weight", "generation_weight", "click_weight", "rating_weight", "category_weight",
    "warmup_steps", "max_history",
)  # fmt: skip
#: As AT_LEAST_ONE, where ``None`` means "no limit".
AT_LEAST_ONE_OR_NONE = ("dynamic_items_per_step", "refresh_every_n_steps", "dynamic_layers")
POSITIVE = ("learning_rate", "temperature", "lora_alpha")
PROBABILITY = ("dropout", "mask_probability")


def check_hyperparameters(hparams: Mapping[str, Any], owner: str) -> None:
    """Rejects constructor arguments no model can train with, naming the argument.

    Example:
        >>> check_hyperparameters({"factor": 0}, "NeuMF")
        Traceback (most recent call last):
        ...
        ValueError: NeuMF: factor must be an integer >= 1, got 0
    """

    def fail(name: str, rule: str) -> None:
        raise ValueError(f"{owner}: {name} must be {rule}, got {hparams[name]!r}")

    for name in AT_LEAST_ONE:
        if name in hparams and not (isinstance(hparams[name], int) and hparams[name] >= 1):
            fail(name, "an integer >= 1")
    for name in AT_LEAST_ONE_OR_NONE:
        value = hparams.get(name)
        if value is not None and not (isinstance(value, int) and value >= 1):
            fail(name, "an integer >= 1 or None")
    for name in NON_NEGATIVE:
        if name in hparams and not hparams[name] >= 0:
            fail(name, ">= 0")
    for name in POSITIVE:
        if name in hparams and not hparams[name] > 0:
            fail(name, "> 0")
    for name in PROBABILITY:
        if name in hparams and not 0 <= hparams[name] < 1:
            fail(name, "in [0, 1)")
    for name in ("top_k", "hidden_dims"):
        if name in hparams and (not hparams[name] or min(hparams[name]) < 1):
            fail(name, "a non-empty list of integers >= 1")


def check_sizes_match(model: L.LightningModule, datamodule: Any) -> None:
    """A model built for other data fails here, naming the size, instead of deep inside torch."""
    if datamodule is None:
        return
    for size in ("num_users", "num_items"):
        expected, built = getattr(datamodule, size, None), getattr(model, size, None)
        if expected is not None and built is not None and expected != built:
            raise ValueError(
                f"{type(model).__name__} was built with {size}={built} but the data module has {size}={expected}: "
                "link the sizes from the data module (the CLI does) or rebuild the model for this data"
            )
