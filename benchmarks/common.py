"""Shared benchmark plumbing: fit/test through Lightning's Trainer, time epochs, write result rows."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_output_dir: Path | None = None


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out`` (a run folder, ``runs/<name>`` by default) and ``--publish`` (write into the committed results)."""
    parser.add_argument("--out", default=f"runs/{name}", help="folder for this run's JSON rows and figures")
    parser.add_argument("--publish", action="store_true",
                        help="write into benchmarks/results/ (the committed results) instead of --out")  # fmt: skip


def use_output_dir(args: argparse.Namespace) -> Path:
    """Where this run writes: ``--out``, or ``benchmarks/results/`` with ``--publish``; created if missing."""
    global _output_dir
    _output_dir = RESULTS_DIR if args.publish else Path(args.out)
    _output_dir.mkdir(parents=True, exist_ok=True)
    return _output_dir


def results_dir() -> Path:
    """The folder chosen by :func:`use_output_dir` (a benchmark never writes the committed results unasked)."""
    if _output_dir is None:
        raise RuntimeError("call use_output_dir(args) first")
    return _output_dir


PROTOCOL_NAMES = {"sampled": "sampled-99", "full": "full"}


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend; without matplotlib, an error naming the install."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise SystemExit('error: the figures need matplotlib: pip install -e ".[benchmarks]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def quiet_trainer(**trainer_kwargs: Any) -> L.Trainer:
    """A Trainer for benchmarks: no logger, checkpoints, summary or progress bar unless asked for.

    Benchmarks print their own tables; Lightning's extra output would only interleave with them.
    """
    quiet = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False,
             "enable_progress_bar": False}  # fmt: skip
    return L.Trainer(**{**quiet, **trainer_kwargs})


def fit_and_test(
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    epochs: int,
    callbacks: list[L.Callback] | None = None,
    patience: int | None = None,
    monitor: str = "val/sampled/NDCG@10",
    **trainer_kwargs: Any,
) -> dict[str, Any]:
    """Trains for ``epochs`` and tests; returns metrics, seconds per epoch, epochs run and the best epoch.

    Without ``patience`` there is no validation and the last weights are tested. With it, validation
    runs every epoch, training stops after ``patience`` epochs without a better ``monitor`` (at most
    ``epochs``), and the best epoch's checkpoint is tested.
    """
    timer = Timer()
    extra: list[L.Callback] = []
    if patience is not None:
        checkpoint = ModelCheckpoint(dirpath=tempfile.mkdtemp(prefix="bench-ckpt-"), monitor=monitor, mode="max")
        extra = [EarlyStopping(monitor=monitor, mode="max", patience=patience), checkpoint]
    trainer = quiet_trainer(
        max_epochs=epochs, limit_val_batches=0 if patience is None else 1.0, enable_checkpointing=patience is not None,
        callbacks=[timer, *(callbacks or []), *extra], num_sanity_val_steps=0, **trainer_kwargs,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    epochs_run = max(1, trainer.current_epoch)
    seconds_per_epoch = timer.time_elapsed("train") / epochs_run
    start = time.perf_counter()
    best = {}
    if patience is None:
        metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    else:
        metrics = trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)[0]
        best_epoch = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)["epoch"]
        best = {"best_epoch": best_epoch, "best_val": round(float(checkpoint.best_model_score), 4)}
        shutil.rmtree(checkpoint.dirpath, ignore_errors=True)
    return {"metrics": metrics, "seconds_per_epoch": seconds_per_epoch, "test_seconds": time.perf_counter() - start,
            "epochs_run": epochs_run, **best}  # fmt: skip


def catalog_cache_seconds(callbacks: list[L.Callback]) -> float:
    """The seconds a fit spent computing item-text caches (0 when read from disk), for the rows.

    The first text model of a run pays the one-time catalog pass inside its fit; the others read the file."""
    return sum(getattr(c, "cache_build_seconds", 0.0) for c in callbacks)


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
    """Prints a table of ``columns`` and writes ``<results_dir()>/<name>.json``."""
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown_table(rows, columns))
    print(f"\nwrote {path} ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")  # fmt: skip
    return path


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
