"""Small protocols through which callbacks talk to models, so a user's own module can implement them."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from torch import Tensor

TextMode = Literal["cached", "dynamic"]


@runtime_checkable
class SupportsTextCache(Protocol):
    """A module whose item text vectors come from a cache or from a live, trainable encoder.

    ``lightning_rec.callbacks.MetadataCacheCallback`` needs exactly this:

    - ``text_mode``: ``"cached"`` (train on cached item text states; the encoder is not run) or
      ``"dynamic"`` (run the encoder in every training step so its trainable weights learn).
    - ``set_text_mode(mode)``: switch; the trainable encoder parameters must already be in the
      optimizer (they get no gradient while cached, so the optimizer leaves them untouched).
    - ``text_cache_key()``: a string that changes whenever the cached vectors would change.
    - ``compute_text_cache()``: ``[num_items, dim]`` item text states under ``no_grad``.
    - ``set_text_cache(embeddings)``: use these cached states (``None`` drops the cache).
    """

    text_mode: TextMode

    def set_text_mode(self, mode: TextMode) -> None: ...

    def text_cache_key(self) -> str: ...

    def compute_text_cache(self) -> Tensor: ...

    def set_text_cache(self, embeddings: Tensor | None) -> None: ...
