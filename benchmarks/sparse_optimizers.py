"""What a NeuMF training step costs with dense Adam, lazy Adam and catch-up Adam, as the tables grow.

    python -m benchmarks.sparse_optimizers --out runs/sparse_optimizers

One NeuMF (factor 16, 3 MLP layers) per table shape of ``benchmarks.scale`` (1M: 6k users x 3.7k items, 20M: 140k x
27k, 100M: 700k x 50k) and optimizer: ``torch.optim.Adam`` on dense gradients, and sparse gradients stepped by
``torch.optim.SparseAdam`` (lazy: a step moves only the rows looked up) or by ``CatchUpSparseAdam`` (a row first
catches up on the steps it sat out, as dense Adam would have moved it). A step is forward, backward and optimizer
on a seeded random batch of 256 users x (1 + 4) items (a bare loop: the optimizer's cost, not the loader's); the
median over ``--steps`` after 5 warm-up steps, the optimizers alternated step by step so they share the machine's
state. One thread; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks.common import add_output_arguments, markdown_table, use_output_dir
from lightning_rec.models import NeuMF
from lightning_rec.nn.optim import adam

SHAPES = {"1M": (6_040, 3_706), "20M": (140_000, 27_000), "100M": (700_000, 50_000)}
OPTIMIZERS = ("dense Adam", "lazy Adam", "catch-up Adam")


def build(users: int, items: int, optimizer: str) -> tuple[NeuMF, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = NeuMF(users, items, factor=16, num_layers=3, sparse_gradients=optimizer != "dense Adam")
    return model, adam(model, lr=1e-3, catch_up=optimizer == "catch-up Adam")


def step_ms(model: NeuMF, optimizer: torch.optim.Optimizer, batch: dict) -> float:
    start = time.perf_counter()
    optimizer.zero_grad()
    model.training_loss(batch).backward()
    optimizer.step()
    return 1000 * (time.perf_counter() - start)


def measure(users: int, items: int, steps: int) -> dict[str, float]:
    runs = {name: build(users, items, name) for name in OPTIMIZERS}
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in OPTIMIZERS}
    for _ in range(steps + 5):
        batch = {"user": torch.randint(users, (256,), generator=generator),
                 "item": torch.randint(items, (256,), generator=generator),
                 "negative_items": torch.randint(items, (256, 4), generator=generator)}  # fmt: skip
        for name, (model, optimizer) in runs.items():
            times[name].append(step_ms(model, optimizer, batch))
    flush_start = time.perf_counter()
    runs["catch-up Adam"][1].flush()
    flush_ms = 1000 * (time.perf_counter() - flush_start)
    return {**{name: round(statistics.median(values[5:]), 3) for name, values in times.items()},
            "catch-up flush ms": round(flush_ms, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="1M,20M,100M", help=f"comma-separated, of {list(SHAPES)}")
    parser.add_argument("--steps", type=int, default=200)
    add_output_arguments(parser, "sparse_optimizers")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for shape in args.shapes.split(","):
        users, items = SHAPES[shape]
        row = {"shape": shape, "users": users, "items": items, **measure(users, items, args.steps)}
        row["catch-up / lazy"] = round(row["catch-up Adam"] / row["lazy Adam"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for row in rows:
        for name in OPTIMIZERS[1:]:
            row[f"{name} vs 1M"] = round(row[name] / rows[0][name], 2)
    path = use_output_dir(args) / "sparse_optimizers.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown_table(rows, list(rows[0])))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
