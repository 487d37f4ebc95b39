"""Train on cached item text embeddings first, then switch to dynamic, fine-tuned extraction.

The callback talks to the model only through :class:`lightning_rec.protocols.SupportsTextCache`, so
any LightningModule implementing those four members gets the same behaviour.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from lightning_rec.protocols import SupportsTextCache

log = logging.getLogger(__name__)


class MetadataCacheCallback(Callback):
    """Cached text embeddings until ``switch_at_epoch`` / ``switch_at_step``, dynamic extraction after.

    - At fit start the item text cache is loaded from ``cache_dir/<key>.pt`` when the key matches
      (the key hashes backbone identity and weights, adapters, pooling, max length and the texts), or
      computed by rank 0 and written atomically (temporary file + rename) while the other ranks wait
      at a barrier; every rank then reads the same file. A corrupt or mismatched file is rebuilt.
    - At the switch the model turns to dynamic extraction, so its LoRA (or unfrozen) weights start
      to learn; they were in the optimizer all along with no gradient, hence untouched until then.
    - Its state (``switched``) is checkpointed: a run resumed after the switch stays dynamic, one
      resumed before switches on time. It never toggles ``requires_grad``, so resuming cannot leave
      adapters frozen (the failure mode of ``BaseFinetuning`` in Lightning issue #21901), and DDP keeps
      syncing the adapters' gradients (use ``strategy="ddp_find_unused_parameters_true"``, since
      adapters are unused before the switch).
    - After fit, with ``save_tuned_cache``, the tuned model's cache is written too, for fast reuse.

    Args:
        cache_dir: folder for cache files.
        switch_at_epoch: first epoch trained with dynamic extraction (``None``: never by epoch).
        switch_at_step: first global step trained with dynamic extraction (``None``: never by step).
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
        if switch_at_epoch is None and switch_at_step is None:
            raise ValueError("set switch_at_epoch or switch_at_step")
        self.cache_dir = Path(cache_dir)
        self.switch_at_epoch, self.switch_at_step = switch_at_epoch, switch_at_step
        self.save_tuned_cache = save_tuned_cache
        self.switched = False
        self.cache_path: Path | None = None

    @staticmethod
    def _model(pl_module: L.LightningModule) -> SupportsTextCache:
        if not isinstance(pl_module, SupportsTextCache):
            raise TypeError(
                f"{type(pl_module).__name__} does not implement SupportsTextCache "
                "(text_mode, set_text_mode, text_cache_key, compute_text_cache, set_text_cache)"
            )
        return pl_module

    # ------------------------------------------------------------------ cache files
    def _read(self, path: Path, key: str) -> torch.Tensor | None:
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            embeddings = payload["embeddings"]
            if payload["key"] != key or embeddings.dim() != 2 or not torch.isfinite(embeddings).all():
                raise ValueError("key, shape or values do not match")
            return embeddings
        except Exception as err:  # any unreadable file is rebuilt, never used
            log.warning("cache file %s is corrupt or mismatched (%s); rebuilding it", path, err)
            return None

    def _write(self, path: Path, key: str, embeddings: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(handle)
        torch.save({"key": key, "embeddings": embeddings.cpu()}, temporary)
        os.replace(temporary, path)  # atomic: readers see the old file or the whole new one

    def load_or_build(self, trainer: L.Trainer, model: SupportsTextCache) -> torch.Tensor:
        """The model's cache from disk when the key matches, else computed once (rank 0) and saved."""
        key = model.text_cache_key()
        path = self.cache_dir / f"{key}.pt"
        if trainer.is_global_zero and self._read(path, key) is None:
            rank_zero_info(f"building item text cache {path}")
            self._write(path, key, model.compute_text_cache())
        trainer.strategy.barrier("metadata_cache")
        embeddings = self._read(path, key)
        if embeddings is None:
            raise RuntimeError(f"cache file {path} is unreadable after it was written")
        self.cache_path = path
        return embeddings

    # ------------------------------------------------------------------ the switch
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = self._model(pl_module)
        if self.switched:  # resumed after the switch: stay dynamic
            model.set_text_mode("dynamic")
            rank_zero_info("metadata cache: resumed after the switch, dynamic text extraction")
            return
        model.set_text_cache(self.load_or_build(trainer, model))
        model.set_text_mode("cached")
        rank_zero_info(f"metadata cache: training on cached item text embeddings ({self.cache_path})")

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

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.switched and self.save_tuned_cache:
            self.load_or_build(trainer, self._model(pl_module))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"switched": self.switched}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.switched = bool(state_dict["switched"])
