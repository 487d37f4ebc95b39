"""Train on cached item text embeddings first, then switch to dynamic, fine-tuned extraction.

The callback talks to the model only through :class:`lightning_rec.protocols.SupportsTextCache`, so
any LightningModule implementing those four members gets the same behaviour.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_rec.protocols import SupportsTextCache

log = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".tmp"
#: A temporary cache file older than this was left by a killed write (writing takes seconds).
STALE_TEMPORARY_SECONDS = 600


class MetadataCacheCallback(Callback):
    """Cached text embeddings until ``switch_at_epoch`` / ``switch_at_step``, dynamic extraction after.

    - At fit start the item text cache is loaded from ``cache_dir/<hash of key>.pt`` when the key
      stored in the file matches (the key hashes backbone identity and weights, adapters, pooling, max
      length and the texts), or computed by rank 0 and written atomically (temporary file + rename,
      created with the process umask) while the other ranks wait at a barrier; every rank then reads
      the same file. A corrupt file, or one with the wrong key or shape, is rebuilt; temporary files
      left by a killed write are removed once they are ten minutes old.
    - At the switch the model turns to dynamic extraction, so its LoRA (or unfrozen) weights start
      to learn; they were in the optimizer all along with no gradient, hence untouched until then.
    - Its state (``switched``) is checkpointed: a run resumed after the switch stays dynamic, one
      resumed before switches on time. Every new fit starts before the switch (one callback can serve
      a sweep of fits); a switch that ``max_epochs`` / ``max_steps`` make impossible is warned about.
      It never toggles ``requires_grad``, so resuming cannot leave adapters frozen (the failure mode
      of ``BaseFinetuning`` in Lightning issue #21901), and DDP keeps syncing the adapters' gradients
      (use ``strategy="ddp_find_unused_parameters_true"``, since adapters are unused before the switch).
    - After fit, with ``save_tuned_cache``, the tuned model's cache is written too, for fast reuse.

    Args:
        cache_dir: folder for cache files.
        switch_at_epoch: first epoch trained with dynamic extraction (``None``: never by epoch).
        switch_at_step: first global step trained with dynamic extraction (``None``: never by step).
            With both ``None`` the callback is a persistent cache only: the fit trains on cached
            vectors throughout (the fast strategy), and models with the same backbone share the file.
        save_tuned_cache: write the cache of the fine-tuned model at the end of fit.

    Example:
        >>> callback = MetadataCacheCallback(cache_dir=".cache/item_text", switch_at_epoch=2)
        >>> trainer = L.Trainer(callbacks=[callback], strategy="auto")  # fit a SupportsTextCache model
    """

    def __init__(
        self,
        cache_dir: str = ".cache/lightning_rec",
        switch_at_epoch: int | None = 1,
        switch_at_step: int | None = None,
        save_tuned_cache: bool = True,
    ) -> None:
        for name, value in (("switch_at_epoch", switch_at_epoch), ("switch_at_step", switch_at_step)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.cache_dir = Path(cache_dir)
        self.switch_at_epoch, self.switch_at_step = switch_at_epoch, switch_at_step
        self.save_tuned_cache = save_tuned_cache
        self.switched = False
        self.cache_path: Path | None = None
        # Seconds the last fit spent computing catalog caches (the initial one unless read from disk, and the
        # tuned one after a switch), so a benchmark can tell the catalog passes from training time.
        self.cache_build_seconds = 0.0

    @staticmethod
    def _model(pl_module: L.LightningModule) -> SupportsTextCache:
        if not isinstance(pl_module, SupportsTextCache):
            raise TypeError(
                f"{type(pl_module).__name__} does not implement SupportsTextCache "
                "(text_mode, set_text_mode, text_cache_key, compute_text_cache, set_text_cache)"
            )
        return pl_module

    # ------------------------------------------------------------------ cache files
    def path_for(self, key: str) -> Path:
        """The file of a cache key: its hash, so any key (long, with ``/``) is a valid file name."""
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"

    def _use(self, path: Path, key: str, model: SupportsTextCache) -> bool:
        """Hands the file's embeddings to the model when the file is readable and the model accepts them."""
        if not path.is_file():
            return False
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            embeddings = payload["embeddings"]
            if payload["key"] != key or embeddings.dim() != 2 or not torch.isfinite(embeddings).all():
                raise ValueError("key, shape or values do not match")
            model.set_text_cache(embeddings)  # the model rejects a shape it cannot use
            return True
        except Exception as err:  # any unusable file is rebuilt, never used
            log.warning("cache file %s is corrupt or mismatched (%s); rebuilding it", path, err)
            return False

    def _write(self, path: Path, key: str, embeddings: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # torch.save creates the file with the process umask, so a team's shared cache stays readable.
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")
        torch.save({"key": key, "embeddings": embeddings.cpu()}, temporary)
        os.replace(temporary, path)  # atomic: readers see the old file or the whole new one

    @staticmethod
    def _remove_stale_temporaries(folder: Path) -> None:
        # A write killed between save and rename leaves its temporary file; none lives this long.
        now = time.time()
        for stale in folder.glob(f".*{TEMPORARY_SUFFIX}"):
            with contextlib.suppress(OSError):  # another process may remove it first
                if now - stale.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                    stale.unlink()
                    log.info("removed a stale temporary cache file %s", stale)

    def load_or_build(self, trainer: L.Trainer, model: SupportsTextCache) -> None:
        """Gives the model its cache from disk when the key matches, else computes it once (rank 0) and saves it."""
        key = model.text_cache_key()
        path = self.path_for(key)
        ready = False
        if trainer.is_global_zero:
            if self.cache_dir.is_dir():
                self._remove_stale_temporaries(self.cache_dir)
            ready = self._use(path, key, model)
            if not ready:
                rank_zero_info(f"building item text cache {path}")
                start = time.perf_counter()
                embeddings = model.compute_text_cache()
                self.cache_build_seconds += time.perf_counter() - start
                self._write(path, key, embeddings)
                model.set_text_cache(embeddings)
                ready = True
        trainer.strategy.barrier("metadata_cache")
        if not ready and not self._use(path, key, model):
            raise RuntimeError(f"cache file {path} is unusable after it was written")
        self.cache_path = path

    # ------------------------------------------------------------------ the switch
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # The switch belongs to one fit: a new fit starts before it, and only a checkpoint restore
        # (which Lightning runs after ``setup``) says a run is already past it.
        if stage == "fit":
            self.switched, self.cache_path, self.cache_build_seconds = False, None, 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = self._model(pl_module)
        if self.switched:  # resumed after the switch: stay dynamic
            model.set_text_mode("dynamic")
            rank_zero_info("metadata cache: resumed after the switch, dynamic text extraction")
            return
        self._warn_if_the_switch_cannot_happen(trainer)
        if model.text_mode == "dynamic" and self.switch_at_epoch is None and self.switch_at_step is None:
            rank_zero_warn(
                "metadata cache: the model starts in dynamic text mode (built with use_cache=False), but this "
                "callback has no switch, so the whole fit trains on cached text embeddings; set switch_at_epoch "
                "or switch_at_step, or drop the callback for dynamic extraction from the first step"
            )
        self.load_or_build(trainer, model)
        model.set_text_mode("cached")
        rank_zero_info(f"metadata cache: training on cached item text embeddings ({self.cache_path})")

    def _warn_if_the_switch_cannot_happen(self, trainer: L.Trainer) -> None:
        if self.switch_at_epoch is None and self.switch_at_step is None:
            return  # a cache only, by request
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
        max_steps = trainer.max_steps if trainer.max_steps >= 0 else None
        by_epoch = self.switch_at_epoch is not None and (max_epochs is None or self.switch_at_epoch < max_epochs)
        by_step = self.switch_at_step is not None and (max_steps is None or self.switch_at_step < max_steps)
        if not (by_epoch or by_step):
            limits = []
            if self.switch_at_epoch is not None:
                limits.append(f"switch_at_epoch={self.switch_at_epoch} >= max_epochs={max_epochs}")
            if self.switch_at_step is not None:
                limits.append(f"switch_at_step={self.switch_at_step} >= max_steps={max_steps}")
            rank_zero_warn(
                f"metadata cache: the switch to dynamic extraction can never happen ({'; '.join(limits)}): "
                "this fit trains on cached text embeddings only"
            )

    def _switch(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._model(pl_module).set_text_mode("dynamic")
        self.switched = True
        rank_zero_info(
            f"metadata cache: switched to dynamic text extraction at epoch {trainer.current_epoch}, "
            f"step {trainer.global_step}"
        )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.switched and self.switch_at_epoch is not None and trainer.current_epoch >= self.switch_at_epoch:
            self._switch(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.switched and self.switch_at_step is not None and trainer.global_step >= self.switch_at_step:
            self._switch(trainer, pl_module)

    # ------------------------------------------------------------------ evaluation outside a fit
    def _cache_for_evaluation(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Loading checkpoint weights drops the model's in-memory cache (it belongs to other weights); a cached
        # model would then encode the whole catalog again before a test. The file of its key is read instead.
        model = self._model(pl_module)
        if model.text_mode == "cached" and getattr(model, "reads_text", True):
            self.load_or_build(trainer, model)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._cache_for_evaluation(trainer, pl_module)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._cache_for_evaluation(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":  # a fit's validation already has the fit's cache
            self._cache_for_evaluation(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.switched and self.save_tuned_cache:
            self.load_or_build(trainer, self._model(pl_module))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"switched": self.switched}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.switched = bool(state_dict["switched"])
