"""Item text encoder: any Hugging Face backbone, pooled, with an optional LoRA adapter and a cache.

Item texts are tokenized once (HF ``datasets``, batched ``map``) when the encoder is built; the
encoder then turns item indices into vectors, either dynamically through the backbone (with
gradients into LoRA or unfrozen weights) or from a cache of pooled backbone states (one row per item,
computed under ``no_grad``), which :class:`lightning_rec.callbacks.MetadataCacheCallback` persists on disk.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import datasets
import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from lightning_rec.nn.backbones import (
    blocks_name,
    default_lora_targets,
    load_pretrained,
    lower_layers_skipped,
    resolve_backbone,
    transformer_layers,
)

log = logging.getLogger(__name__)

Pooling = Literal["mean", "last"]


def load_backbone(name_or_path: str, pretrained: bool) -> nn.Module:
    """Pretrained weights by name/path, or a random initialisation of that configuration."""
    if pretrained:
        # from_pretrained returns eval mode, and Lightning keeps each module's mode: without train() the
        # backbone's dropout would stay off while the recommender trains.
        return load_pretrained(AutoModel.from_pretrained, name_or_path).train()
    return AutoModel.from_config(load_pretrained(AutoConfig.from_pretrained, name_or_path))


def load_tokenizer(name_or_path: str):
    """The backbone's tokenizer, padding on the right with a pad token (the end-of-text token where
    it has none, as GPT-2; padding is masked out). Generation pads on the left by itself."""
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def tokenize_texts(texts: Sequence[str], tokenizer, max_length: int) -> tuple[Tensor, Tensor]:
    """``(input_ids, attention_mask)`` ``[N, max_length]``, right-padded, via a batched ``datasets.map``.

    Empty texts would leave nothing to pool; they become the end-of-text token (logged count).
    """
    empty = sum(1 for text in texts if not text.strip())
    if empty:
        log.warning("%d item texts are empty; encoded as the end-of-text token", empty)
    filler = tokenizer.eos_token or tokenizer.pad_token or " "
    dataset = datasets.Dataset.from_dict({"text": [text if text.strip() else filler for text in texts]})
    was_disabled = datasets.utils.logging.is_progress_bar_enabled() is False
    datasets.disable_progress_bars()  # one tokenization pass per model: a progress bar is only noise
    try:
        dataset = dataset.map(
            lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length, padding="max_length"),
            batched=True,
            remove_columns=["text"],
        )
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
    columns = dataset.with_format("torch")[:]
    return columns["input_ids"], columns["attention_mask"]


def add_lora(
    backbone: nn.Module,
    rank: int,
    alpha: int,
    dropout: float,
    target_modules: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
) -> nn.Module:
    """Wraps ``backbone`` with PEFT LoRA adapters on ``target_modules`` (``None``: the architecture's
    attention projections, :func:`default_lora_targets`) of the blocks in ``layers`` (``None``: all);
    only the adapters stay trainable."""
    from peft import LoraConfig

    model_type = getattr(backbone.config, "model_type", "")
    # GPT-2's Conv1D stores weights as (in, out): LoRA must know to transpose.
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none", fan_in_fan_out=model_type == "gpt2",
        target_modules=list(target_modules or default_lora_targets(model_type)),
        layers_to_transform=None if layers is None else list(layers),
        layers_pattern=None if layers is None else blocks_name(backbone),
    )  # fmt: skip
    return apply_peft(backbone, config)


def apply_peft(model: nn.Module, config) -> nn.Module:
    """``peft.get_peft_model``, without the deprecation warning peft's own call into transformers 5 raises."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _drop_cache(encoder: ItemTextEncoder, incompatible_keys) -> None:
    encoder.set_cache(None)
    encoder.lower_states = None


class ItemTextEncoder(nn.Module):
    """Encodes items by their text with a Hugging Face backbone.

    Args:
        item_texts: one text per item index (the data module's ``item_texts``).
        backbone: hub name (``gpt2``), local path, ``tiny-gpt2`` (bundled config + real tokenizer), or
            ``smollm2-135m`` / a ``.gguf`` file (see :mod:`lightning_rec.nn.backbones`).
        pretrained: load the backbone's weights; ``False`` initialises its configuration randomly.
        pooling: ``last`` (last non-pad token: GPT-2 is causal, so it has read the whole text) or ``mean``.
        max_length: tokens kept per item text.
        freeze: keep the backbone's own weights fixed (LoRA adapters, if any, still train).
        use_peft: add LoRA adapters through ``peft``.
        lora_rank: LoRA rank ``r``.
        lora_alpha: LoRA scaling ``alpha``.
        lora_dropout: dropout on the LoRA path.
        lora_target_modules: module names that get adapters; ``None``: the architecture's default
            (``c_attn`` for GPT-2, ``q_proj``/``v_proj`` for Llama-style models such as SmolLM2).
        encode_batch_size: items per forward when building the cache.
        dynamic_layers: run only the top ``dynamic_layers`` blocks live; the lower blocks must be frozen
            (LoRA then goes to the top blocks only), so their output per item token never changes and is
            computed once (kept in bf16 in memory). ``None``: every block, as without a split.

    Example:
        >>> encoder = ItemTextEncoder(["Toy Story (1995) | Comedy", "Heat (1995) | Crime"],
        ...                           backbone="tiny-gpt2", pretrained=False, use_peft=True)
        >>> encoder.encode(torch.tensor([1, 0, 1])).shape
        torch.Size([3, 64])
    """

    def __init__(
        self,
        item_texts: Sequence[str],
        backbone: str = "gpt2",
        pretrained: bool = True,
        pooling: Pooling = "last",
        max_length: int = 32,
        freeze: bool = True,
        use_peft: bool = False,
        lora_rank: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.0,
        lora_target_modules: Sequence[str] | None = None,
        encode_batch_size: int = 128,
        dynamic_layers: int | None = None,
    ) -> None:
        super().__init__()
        if not item_texts:
            raise ValueError("ItemTextEncoder needs the item texts (link data.item_texts to the model)")
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean' or 'last', got {pooling!r}")
        self.backbone_name, self.pretrained, self.pooling, self.max_length = backbone, pretrained, pooling, max_length
        self.encode_batch_size = encode_batch_size
        self.texts_digest = hashlib.sha256("\x1e".join(item_texts).encode()).hexdigest()
        input_ids, attention_mask = tokenize_texts(item_texts, load_tokenizer(backbone), max_length)
        # Rebuilt from the texts on every construction, so not stored in checkpoints.
        self.register_buffer("input_ids", input_ids, persistent=False)
        self.register_buffer("attention_mask", attention_mask, persistent=False)
        model = load_backbone(backbone, pretrained)
        if freeze or use_peft:
            model.requires_grad_(False)
        num_layers = model.config.num_hidden_layers
        if dynamic_layers is not None and not 1 <= dynamic_layers <= num_layers:
            raise ValueError(f"dynamic_layers must be in 1..{num_layers} (the backbone's blocks), got {dynamic_layers}")
        #: Blocks below this index are frozen and skipped in live passes (0: no split).
        self.split_layer = num_layers - dynamic_layers if dynamic_layers is not None else 0
        if self.split_layer and not (freeze or use_peft):
            raise ValueError("dynamic_layers below the full depth needs frozen lower blocks: set freeze or use_peft")
        top = range(self.split_layer, num_layers) if self.split_layer else None
        self.backbone = (
            add_lora(model, lora_rank, lora_alpha, lora_dropout, lora_target_modules, top) if use_peft else model
        )
        self.hidden_size = model.config.hidden_size
        self.register_buffer("cache", None, persistent=False)
        self.register_buffer("lower_states", None, persistent=False)
        # A cache belongs to the weights it was computed from: loading other weights drops it.
        self.register_load_state_dict_post_hook(_drop_cache)

    @property
    def num_items(self) -> int:
        return len(self.input_ids)

    def trainable_backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of the backbone that learn in dynamic mode (LoRA adapters or unfrozen weights)."""
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def _pool(self, items: Tensor) -> Tensor:
        mask = self.attention_mask[items]
        length = int(mask.sum(1).max())  # trim padding shared by the whole batch
        mask = mask[:, :length]
        inputs = {"input_ids": self.input_ids[items, :length], "attention_mask": mask}
        if self.split_layer:
            states = self.frozen_lower_states()[items, :length].to(self.backbone.dtype)
            with lower_layers_skipped(transformer_layers(self.backbone), self.split_layer, states):
                hidden = self.backbone(**inputs).last_hidden_state
        else:
            hidden = self.backbone(**inputs).last_hidden_state
        return self._pool_states(hidden, mask)

    def _pool_states(self, hidden: Tensor, mask: Tensor) -> Tensor:
        if self.pooling == "last":
            return hidden[torch.arange(len(hidden), device=hidden.device), mask.sum(1) - 1]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        """Pooled states ``[len(texts), hidden]`` of texts outside the catalog (items added after training),
        in eval mode through the whole backbone (the frozen lower blocks of a split included)."""
        if not texts:
            raise ValueError("encode_texts needs at least one text")
        input_ids, attention_mask = tokenize_texts(texts, load_tokenizer(self.backbone_name), self.max_length)
        was_training = self.training
        self.eval()
        device = self.input_ids.device
        chunks = []
        for start in range(0, len(texts), self.encode_batch_size):
            ids, mask = (t[start : start + self.encode_batch_size].to(device) for t in (input_ids, attention_mask))
            chunks.append(self._pool_states(self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state, mask))
        self.train(was_training)
        return torch.cat(chunks).float()

    def encode(self, items: Tensor) -> Tensor:
        """Pooled backbone states ``[N, hidden]`` for item indices ``[N]``, each distinct item run once."""
        unique, inverse = torch.unique(items, return_inverse=True)
        return self._pool(unique)[inverse]

    @torch.no_grad()
    def frozen_lower_states(self) -> Tensor:
        """Input states of block ``split_layer`` for every item token ``[num_items, max_length, hidden]``
        (bf16), from one pass over the catalog; right padding leaves the real tokens' states unchanged."""
        if self.lower_states is None:
            was_training = self.training
            self.eval()
            chunks = []
            for start in range(0, self.num_items, self.encode_batch_size):
                items = slice(start, start + self.encode_batch_size)
                output = self.backbone(input_ids=self.input_ids[items], attention_mask=self.attention_mask[items],
                                       output_hidden_states=True)  # fmt: skip
                chunks.append(output.hidden_states[self.split_layer].to(torch.bfloat16))
            self.train(was_training)
            self.lower_states = torch.cat(chunks)
        return self.lower_states

    @torch.no_grad()
    def compute_cache(self) -> Tensor:
        """Pooled states of every item ``[num_items, hidden]``, in eval mode, bf16 autocast on capable GPUs."""
        was_training = self.training
        self.eval()
        device = self.input_ids.device
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        chunks = []
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            for start in range(0, self.num_items, self.encode_batch_size):
                items = torch.arange(start, min(start + self.encode_batch_size, self.num_items), device=device)
                chunks.append(self._pool(items).float())
        self.train(was_training)
        return torch.cat(chunks)

    def set_cache(self, embeddings: Tensor | None) -> None:
        if embeddings is not None and tuple(embeddings.shape) != (self.num_items, self.hidden_size):
            raise ValueError(f"cache of shape {tuple(embeddings.shape)}, expected {(self.num_items, self.hidden_size)}")
        self.cache = None if embeddings is None else embeddings.to(self.input_ids.device)

    def cache_key(self) -> str:
        """Hash of everything the cached vectors depend on: backbone identity and weights (adapters
        included), pooling, max length and the item texts."""
        digest = hashlib.sha256()
        header = f"{self.backbone_name}|{self.pretrained}|{self.pooling}|{self.max_length}|{self.texts_digest}"
        # Vectors through the split read bf16 lower states, so they differ (slightly) from unsplit ones.
        digest.update((header + (f"|split{self.split_layer}" if self.split_layer else "")).encode())
        for name, tensor in self.backbone.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:32]


#: Frozen pretrained vectors of the latest catalogs, so that several models or seeds in one process
#: (a benchmark, a sweep) encode a catalog once; a handful, as each is ``num_items x hidden``.
_FROZEN_VECTORS: dict[str, Tensor] = {}
_FROZEN_VECTORS_KEPT = 4


def frozen_text_vectors(
    texts: Sequence[str], backbone: str, pretrained: bool, pooling: Pooling, max_length: int
) -> Tensor:
    """One pooled vector per text from a frozen encoder, ``[len(texts), hidden]``. The encoder runs
    once and is dropped: models keep only these vectors (and rebuild them from the texts on load).

    Pretrained vectors are the same on every call, so they are kept in memory for the process and each
    caller gets its own copy. A random initialisation (``pretrained=False``) depends on the RNG state at
    the call and is never shared.
    """
    if not pretrained:
        return ItemTextEncoder(texts, backbone, pretrained, pooling, max_length, freeze=True).compute_cache()
    digest = hashlib.sha256(f"{resolve_backbone(backbone)}\0{pooling}\0{max_length}".encode())
    for text in texts:
        digest.update(b"\0" + text.encode())
    key = digest.hexdigest()
    if key not in _FROZEN_VECTORS:
        vectors = ItemTextEncoder(texts, backbone, pretrained, pooling, max_length, freeze=True).compute_cache()
        _FROZEN_VECTORS[key] = vectors
        while len(_FROZEN_VECTORS) > _FROZEN_VECTORS_KEPT:
            _FROZEN_VECTORS.pop(next(iter(_FROZEN_VECTORS)))
    return _FROZEN_VECTORS[key].clone()
