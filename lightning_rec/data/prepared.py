"""Prepared arrays: the parsed, split and encoded data, written once and memory-mapped by every process.

A folder per key (input files' identity + every option that shapes the split) holds one ``.npy`` per
array, ``users.parquet`` and ``items.parquet``, and ``meta.json``. It is written under a temporary name
and renamed into place, so a reader sees no folder or a whole one; a folder that fails to load (cut,
edited, from another version) is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lightning_rec.data.interactions import EncodedInteractions

log = logging.getLogger(__name__)

#: Bumped whenever parsing, splitting or encoding changes what a key's folder should hold.
FORMAT_VERSION = 2


def file_identity(value: Any) -> list | None:
    """``[path, size, mtime_ns]`` of a file, or of every file in a folder; ``None`` if ``value`` is no path."""
    if not isinstance(value, (str, Path)) or not str(value):
        return None
    path = Path(value)
    if path.is_file():
        stat = path.stat()
        return [[str(path.resolve()), stat.st_size, stat.st_mtime_ns]]
    if path.is_dir():
        return [entry for child in sorted(path.iterdir()) if child.is_file() for entry in file_identity(child)]
    return None


def preparation_key(name: str, options: dict[str, Any]) -> str:
    """A digest of the data module's class, its options and the identity of every file they name."""
    described = {key: file_identity(value) or value for key, value in sorted(options.items())}
    text = json.dumps([FORMAT_VERSION, name, described], default=str, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@contextmanager
def recorded_logs() -> Iterator[list[logging.LogRecord]]:
    """The library's log records while parsing (dropped counts...), kept with the prepared data and repeated
    whenever it is read, so a later run says what the first one said."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("lightning_rec")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def save_prepared(data: EncodedInteractions, folder: Path, records: list[logging.LogRecord] = ()) -> None:
    """Writes ``data`` (and the parsing's log ``records``) to ``folder`` atomically; a concurrent writer of the
    same key is harmless."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.with_name(f"{folder.name}.{uuid.uuid4().hex}.tmp")
    temporary.mkdir()
    try:
        arrays = []
        for field in fields(EncodedInteractions):
            value = getattr(data, field.name)
            if isinstance(value, torch.Tensor):
                np.save(temporary / f"{field.name}.npy", value.numpy())
                arrays.append(field.name)
        pd.DataFrame({"user_id": data.user_ids}).to_parquet(temporary / "users.parquet")
        data.items.to_parquet(temporary / "items.parquet")
        meta = {"version": FORMAT_VERSION, "arrays": arrays, "ordering": data.ordering,
                "num_cold_items": data.num_cold_items,
                "log": [[record.name, record.levelno, record.getMessage()] for record in records]}  # fmt: skip
        (temporary / "meta.json").write_text(json.dumps(meta))
        os.replace(temporary, folder)
    except OSError:
        if not folder.is_dir():  # another process may have won the rename: then its folder serves
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def load_prepared(folder: Path) -> EncodedInteractions | None:
    """The arrays of ``folder``, memory-mapped (shared by every process on the machine); ``None`` if there is
    no folder, or it cannot be read (then it is removed so that the caller rebuilds it)."""
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta["version"] != FORMAT_VERSION:
            raise ValueError(f"format version {meta['version']}, expected {FORMAT_VERSION}")
        # Copy-on-write mapping: pages are shared and read lazily; a write (none is expected) stays private.
        arrays = {name: torch.from_numpy(np.load(folder / f"{name}.npy", mmap_mode="c")) for name in meta["arrays"]}
        items = pd.read_parquet(folder / "items.parquet")
        items["categories"] = [list(categories) for categories in items["categories"]]
        user_ids = pd.read_parquet(folder / "users.parquet")["user_id"].to_numpy()
        data = EncodedInteractions(user_ids=user_ids, items=items, ordering=meta["ordering"],
                                   num_cold_items=meta["num_cold_items"], **arrays)  # fmt: skip
        if len(data.train_indptr) != len(user_ids) + 1 or int(data.train_indptr[-1]) != len(data.train_items):
            raise ValueError("arrays of different lengths")
    except Exception as err:  # noqa: BLE001 - any unreadable folder is rebuilt, never trusted
        log.warning("prepared data %s cannot be read (%s): rebuilding it", folder, err)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    for name, level, message in meta.get("log", []):
        logging.getLogger(name).log(level, "%s", message)
    log.info("prepared data read from %s (delete the folder to parse again)", folder)
    return data
