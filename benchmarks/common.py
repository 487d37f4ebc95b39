"""Shared benchmark plumbing: fit/test through Lightning's Trainer, time epochs, write result rows."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROTOCOL_NAMES = {"sampled": "sampled-99", "full": "full"}


def fit_and_test(
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    epochs: int,
    callbacks: list[L.Callback] | None = None,
    **trainer_kwargs: Any,
) -> dict[str, Any]:
    """Trains for ``epochs`` without validation, tests, and returns metrics plus seconds per epoch."""
    timer = Timer()
    trainer = L.Trainer(
        max_epochs=epochs, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=False, callbacks=[timer, *(callbacks or [])], **trainer_kwargs,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    seconds_per_epoch = timer.time_elapsed("train") / max(1, trainer.current_epoch)
    start = time.perf_counter()
    metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    return {"metrics": metrics, "seconds_per_epoch": seconds_per_epoch, "test_seconds": time.perf_counter() - start}


def result_rows(dataset: str, model: str, run: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
    """One row per protocol in the shared result shape (``HR@10``, ``NDCG@10``, ... as keys)."""
    rows = []
    for protocol, name in PROTOCOL_NAMES.items():
        prefix = f"test/{protocol}/"
        metrics = {
            k.removeprefix(prefix): round(float(v), 4) for k, v in run["metrics"].items() if k.startswith(prefix)
        }
        if metrics:
            row = {"dataset": dataset, "model": model, "protocol": name, **metrics}
            row.update(seconds_per_epoch=round(run["seconds_per_epoch"], 2), **extra)
            rows.append(row)
    return rows


def write_results(name: str, rows: list[dict[str, Any]], columns: list[str]) -> Path:
    """Prints a table of ``columns`` and writes ``benchmarks/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown_table(rows, columns))
    print(f"\nwrote {path} ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")  # fmt: skip
    return path


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
