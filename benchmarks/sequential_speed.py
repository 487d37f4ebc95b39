"""Seconds per training epoch of SASRec on Amazon Beauty: Lightning's fit against a bare PyTorch loop
over the same batches, for the published recipe and the earlier full-cross-entropy one, side by side.

    python -m benchmarks.sequential_speed --data path/to/amazon-beauty --out runs/sequential_speed

Each configuration trains ``--epochs`` epochs through ``Trainer.fit`` (no validation, logger or
checkpoints) and through a plain loop (``training_loss``, ``backward``, Adam) on the same data module's
loader; the last epoch of each is timed, so both are warm. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.common import markdown_table, quiet_trainer
from benchmarks.sequential import build_datamodule
from lightning_rec.models import SASRec

CONFIGS = {
    # eSASRec's Beauty settings (blondered/transformer_benchmark, configs/paper/loo/s3_vanilla.yaml).
    "published: 1 block, dim 256, sampled softmax (256 negatives)": dict(dim=256, num_layers=1, loss="sampled_softmax"),
    "published recipe at dim 64": dict(dim=64, num_layers=1, loss="sampled_softmax"),
    "earlier benchmark: 2 blocks, dim 64, full cross-entropy": dict(dim=64, num_layers=2, loss="ce"),
}


class EpochClock(Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def build(dm, options: dict) -> SASRec:
    return SASRec(dm.num_users, dm.num_items, max_length=50, num_heads=1, dropout=0.2, learning_rate=1e-3, **options)


def lightning_epoch(dm, options: dict, epochs: int) -> float:
    L.seed_everything(0)
    clock = EpochClock()
    trainer = quiet_trainer(max_epochs=epochs, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(build(dm, options), datamodule=dm)
    return clock.seconds[-1]


def bare_epoch(dm, options: dict, epochs: int) -> float:
    L.seed_everything(0)
    model = build(dm, options)
    model.num_training_items = dm.num_warm_items
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in dm.train_dataloader():
            loss = model.training_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of the Beauty sequence files")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement; the last is timed")
    parser.add_argument("--out", default="runs/sequential_speed", help="folder for sequential_speed.json")
    args = parser.parse_args()
    namespace = argparse.Namespace(dataset="beauty", data=args.data, max_length=50)
    dm = build_datamodule(namespace, sequences=True, seed=0)
    dm.setup("fit")
    rows = []
    for name, options in CONFIGS.items():
        lightning_seconds = lightning_epoch(dm, options, args.epochs)
        bare_seconds = bare_epoch(dm, options, args.epochs)
        rows.append({"config": name, "lightning_s_per_epoch": round(lightning_seconds, 2),
                     "bare_loop_s_per_epoch": round(bare_seconds, 2),
                     "lightning_over_bare": round(lightning_seconds / bare_seconds, 3),
                     "steps_per_epoch": len(dm.train_dataloader()), "threads": torch.get_num_threads()})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sequential_speed.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown_table(rows, list(rows[0])))
    print(f"wrote {out / 'sequential_speed.json'}")


if __name__ == "__main__":
    main()
