"""The GPU check: the CUDA claims of the library in one run of at most 10 minutes on one CUDA device.

    python -m benchmarks.gpu_check --out runs/gpu_check                 # needs a CUDA device
    python -m benchmarks.gpu_check --out runs/gpu_check --data path/to/ml-1m

Fits, each for ``--steps`` training steps on MovieLens-1M (``--data``) or the embedded data, and reports the median
s/step beside the same fit on the CPU (one short CPU fit per model, measured in the same run):

- NeuMF (factor 16, batch 256 x (1 + 4)) and SASRec (1 block, dim 64, batch 128 x length 50, full softmax) in
  ``32-true``, ``16-mixed`` and ``bf16-mixed``;
- the enhanced GPT-2 recommender, hybrid strategy (cached text vectors, then dynamic LoRA extraction from the
  middle step on), in ``16-mixed`` and ``bf16-mixed``, with the bundled tiny GPT-2 (``--backbone gpt2`` online);
- NeuMF under Lightning's FSDP strategy on the one device;
- the full-ranking test of SASRec (whole catalog per user), seconds per 1,000 users.

Each row says whether the loss stayed finite. Writes ``gpu_check.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import lightning as L
import torch

from benchmarks.common import add_output_arguments, markdown_table, quiet_trainer, results_dir, use_output_dir
from benchmarks.scale import StepTimer
from lightning_rec.callbacks import MetadataCacheCallback
from lightning_rec.data_modules import MovieLens1MDataModule
from lightning_rec.models import GPT2RecommenderEnhanced, NeuMF, SASRec


def data_module(args, sequences: bool = False, history: int = 0) -> MovieLens1MDataModule:
    shape = dict(batch_size=128, train_mode="sequences", history_length=50) if sequences else \
        dict(batch_size=256, history_length=history)  # fmt: skip
    return MovieLens1MDataModule(args.data, eval_protocols=["full"], eval_batch_size=1000, **shape)


def build(name: str, dm, args) -> L.LightningModule:
    if name == "NeuMF":
        return NeuMF(dm.num_users, dm.num_items, factor=16, num_layers=3)
    if name == "SASRec":
        return SASRec(dm.num_users, dm.num_items, dim=64, max_length=50, num_layers=1, num_heads=1, dropout=0.2,
                      loss="ce")  # fmt: skip
    return GPT2RecommenderEnhanced(dm.num_users, dm.num_items, dm.item_texts, backbone=args.backbone,
                                   pretrained=args.backbone != "tiny-gpt2", factor=32, use_peft=True,
                                   dynamic_items_per_step=64)  # fmt: skip


def fit(name: str, args, accelerator: str, precision: str = "32-true", strategy: str = "auto") -> dict[str, Any]:
    L.seed_everything(0)
    dm = data_module(args, sequences=name == "SASRec", history=10 if name == "Enhanced-hybrid" else 0)
    model = build(name, dm, args)
    timer = StepTimer()
    callbacks: list[L.Callback] = [timer]
    if name == "Enhanced-hybrid":  # cached vectors first, dynamic extraction from the middle of the fit
        callbacks.append(MetadataCacheCallback(cache_dir=args.cache_dir, switch_at_step=args.steps // 2))
    trainer = quiet_trainer(accelerator=accelerator, devices=1, precision=precision, strategy=strategy,
                            max_steps=args.steps, limit_val_batches=0, callbacks=callbacks)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
    row = {"model": name, "accelerator": accelerator, "precision": precision, "strategy": strategy,
           "s_per_step": round(statistics.median(timer.seconds[3:] or timer.seconds), 5),
           "finite_loss": math.isfinite(loss), "final_loss": round(loss, 4)}  # fmt: skip
    if name == "SASRec":
        start = time.perf_counter()
        trainer.test(model, datamodule=dm, verbose=False)
        users = int(((dm.data.test_items >= 0) | dm.data.test_unrankable).sum())
        row["full_ranking_test_s_per_1k_users"] = round((time.perf_counter() - start) / users * 1000, 4)
    return row


def run(args) -> list[dict[str, Any]]:
    rows = []
    plans = [("NeuMF", ("32-true", "16-mixed", "bf16-mixed")), ("SASRec", ("32-true", "16-mixed", "bf16-mixed")),
             ("Enhanced-hybrid", ("16-mixed", "bf16-mixed"))]  # fmt: skip
    for name, precisions in plans:
        cpu = fit(name, argparse.Namespace(**{**vars(args), "steps": max(10, args.steps // 5)}), "cpu")
        rows.append(cpu)
        for precision in precisions:
            row = fit(name, args, "cuda", precision)
            row["speedup_over_cpu"] = round(cpu["s_per_step"] / row["s_per_step"], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    rows.append(fit("NeuMF", args, "cuda", "bf16-mixed", strategy="fsdp"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="MovieLens-1M folder (default: the embedded data)")
    parser.add_argument("--steps", type=int, default=200, help="training steps per GPU fit (CPU: a fifth)")
    parser.add_argument("--backbone", default="tiny-gpt2", help="LM of the enhanced hybrid (gpt2 online)")
    parser.add_argument("--cache-dir", default=".cache/lightning_rec/item_text")
    add_output_arguments(parser, "gpu_check")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: the GPU check needs a CUDA device (torch.cuda.is_available() is False)")
    use_output_dir(args)
    rows = run(args)
    device = torch.cuda.get_device_name(0)
    for row in rows:
        row["device"] = device if row["accelerator"] == "cuda" else "cpu"
    path = results_dir() / "gpu_check.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown_table(rows, ["model", "accelerator", "precision", "strategy", "s_per_step", "speedup_over_cpu",
                                "finite_loss", "full_ranking_test_s_per_1k_users"]))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
