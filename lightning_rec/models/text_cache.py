"""The :class:`~lightning_rec.protocols.SupportsTextCache` implementation shared by every model whose item
text vectors come from an :class:`~lightning_rec.nn.text_encoder.ItemTextEncoder`, cached or live.

A model mixes in :class:`ItemTextCacheMixin` before :class:`~lightning_rec.models.base.Recommender`, sets
``self.text_encoder``, ``self.text_mode``, ``self.dynamic_items_per_step`` and ``self.refresh_every_n_steps``,
and asks :meth:`ItemTextCacheMixin.pooled_text` for the pooled text states of a step's distinct items.
The mixin keeps the in-memory cache in step with the weights (built at fit start, refreshed under a
per-step budget and before every evaluation after dynamic training) and leaves the frozen pretrained
backbone out of checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from lightning_rec.models.base import drop_frozen_weights, frozen_pretrained_weights, refill_frozen_weights
from lightning_rec.nn.text_encoder import ItemTextEncoder
from lightning_rec.protocols import TextMode


class ItemTextCacheMixin:
    """Cached/dynamic item text for a :class:`~lightning_rec.models.base.Recommender` (see the module)."""

    text_encoder: ItemTextEncoder
    text_mode: TextMode
    dynamic_items_per_step: int | None
    refresh_every_n_steps: int | None

    @property
    def reads_text(self) -> bool:
        """Whether the model reads item text at all (an IDs-only ablation does not)."""
        return True

    def pooled_text(self, ids: Tensor) -> Tensor:
        """Pooled text states ``[len(ids), hidden]`` of distinct item ids: from the cache, or live through
        the encoder while training dynamically (at most ``dynamic_items_per_step`` of them live)."""
        encoder = self.text_encoder
        live = self.training and self.text_mode == "dynamic"
        budget = self.dynamic_items_per_step
        if encoder.cache is not None and not live:
            return encoder.cache[ids]
        if live and budget is not None and len(ids) > budget:
            # A random subset trains the adapters this step; the rest read the cache of recent adapters.
            chosen = torch.randperm(len(ids), device=ids.device)[:budget]
            pooled = self.text_cache_or_build()[ids].clone()
            pooled[chosen] = encoder.encode(ids[chosen])
            return pooled
        return encoder.encode(ids)

    def text_cache_or_build(self) -> Tensor:
        if self.text_encoder.cache is None:
            self.set_text_cache(self.compute_text_cache())
        return self.text_encoder.cache

    # ------------------------------------------------------------------ the SupportsTextCache protocol
    def set_text_mode(self, mode: TextMode) -> None:
        if mode not in ("cached", "dynamic"):
            raise ValueError(f"text mode must be 'cached' or 'dynamic', got {mode!r}")
        self.text_mode = mode

    def text_cache_key(self) -> str:
        return self.text_encoder.cache_key()

    def compute_text_cache(self) -> Tensor:
        return self.text_encoder.compute_cache()

    def set_text_cache(self, embeddings: Tensor | None) -> None:
        self.text_encoder.set_cache(embeddings)

    # ------------------------------------------------------------------ cache upkeep in memory
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.text_mode == "cached" and self.text_encoder.cache is None and self.reads_text:
            rank_zero_info("computing item text embeddings in memory (add MetadataCacheCallback to reuse them)")
            self.set_text_cache(self.compute_text_cache())

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        every = self.refresh_every_n_steps
        if (
            every is not None and self.dynamic_items_per_step is not None and self.text_mode == "dynamic"
            and self.global_step > 0 and self.global_step % every == 0
        ):  # fmt: skip
            self.set_text_cache(self.compute_text_cache())

    def _refresh_for_evaluation(self) -> None:
        # After dynamic training the cache is stale: one pass over the catalog, then fast scoring.
        if self.reads_text and (self.text_mode == "dynamic" or self.text_encoder.cache is None):
            self.set_text_cache(self.compute_text_cache())

    def on_validation_epoch_start(self) -> None:
        self._refresh_for_evaluation()

    def on_test_epoch_start(self) -> None:
        self._refresh_for_evaluation()

    def on_predict_epoch_start(self) -> None:
        self._refresh_for_evaluation()

    # ------------------------------------------------------------------ checkpoints
    def frozen_pretrained_state(self) -> dict[str, Tensor]:
        """Backbone weights that are both pretrained and frozen: reloaded by name, so never checkpointed."""
        encoder = self.text_encoder
        return frozen_pretrained_weights(encoder.backbone, "text_encoder.backbone", encoder.pretrained)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["text_mode"] = self.text_mode
        drop_frozen_weights(checkpoint, self.frozen_pretrained_state())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.text_mode = checkpoint.get("text_mode", self.text_mode)
        refill_frozen_weights(checkpoint, self.frozen_pretrained_state())
