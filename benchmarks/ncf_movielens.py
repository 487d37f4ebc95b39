"""NCF family on MovieLens: GMF, MLP, NeuMF (with and without pretrain), MF-BPR and ItemPop.

    python -m benchmarks.ncf_movielens --data ../shared/data/ml-1m --epochs 8
    python -m benchmarks.ncf_movielens --data ../shared/data/ml-1m --timing-only 2
    python -m benchmarks.ncf_movielens --dataset ml-100k --data ../shared/data/ml-100k --epochs 20

Protocol: leave-one-out; HR@10 / NDCG@10 with 99 sampled negatives per user (He et al. 2017) and
with full ranking (training items masked). Our ML-1M copy has no timestamps, so its split is a
seeded random leave-one-out (the NCF paper's is by time); ML-100K is split by time. ``--timing-only``
times NeuMF epochs through Lightning against a bare PyTorch loop (same model, batch, optimizer,
pre-shuffled tensors), alternating the two on an otherwise idle machine, and adds the ratio to the
result file.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer

from benchmarks.common import (
    add_output_arguments,
    fit_and_test,
    quiet_trainer,
    result_rows,
    results_dir,
    use_output_dir,
    write_results,
)
from lightning_rec.data_modules import MovieLens1MDataModule, MovieLens100KDataModule
from lightning_rec.models import GMF, MFBPR, MLP, ItemPop, NeuMF
from lightning_rec.nn.losses import recommendation_loss


def build_datamodule(
    args: argparse.Namespace, seed: int | None = None, history_length: int = 0
) -> L.LightningDataModule:
    """The benchmark's data module; ``seed`` fixes the split and the negatives (default ``args.seed``)."""
    seed = args.seed if seed is None else seed
    kwargs = {"batch_size": args.batch_size, "eval_batch_size": 256, "seed": seed, "history_length": history_length}
    if args.dataset == "ml-100k":
        return MovieLens100KDataModule(args.data, **kwargs)
    data_dir = Path(args.data)
    ratings = None
    if not (data_dir / "ratings.dat").is_file() and (data_dir / "partial" / "ratings_no_timestamp.csv").is_file():
        ratings = str(data_dir / "partial" / "ratings_no_timestamp.csv")
    return MovieLens1MDataModule(str(data_dir), ratings_file=ratings, **kwargs)


def bare_loop_seconds_per_epoch(datamodule, factor: int, num_layers: int, lr: float, max_batches: int) -> float:
    """One epoch of plain PyTorch on pre-shuffled tensors: the floor Lightning is compared with."""
    model = NeuMF(datamodule.num_users, datamodule.num_items, factor=factor, num_layers=num_layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    columns = datamodule._train_columns(epoch=0)  # same shuffled positives and negatives
    order, batch_size, data = columns["order"], datamodule.batch_size, datamodule.data
    num_batches = min(max_batches, -(-len(order) // batch_size))
    start = time.perf_counter()
    for i in range(num_batches):
        rows = order[i * batch_size : (i + 1) * batch_size].long()  # int64 batches, as the loader hands out
        users, items, negatives = data.train_users[rows], data.train_items[rows], columns["negative_items"][rows].long()
        scores = model.score(users, torch.cat([items.unsqueeze(1), negatives], dim=1))  # as Recommender does
        loss = recommendation_loss(scores[:, :1], scores[:, 1:], "bce")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    return elapsed * (-(-len(order) // batch_size)) / num_batches


def alternating_epoch_timing(datamodule, args, rounds: int) -> dict:
    """One-epoch NeuMF fits through Lightning's Trainer and bare-loop epochs, alternated ``rounds``
    times on fresh models, so both see the same machine load; the fastest of each is kept."""
    lightning_times, bare_times = [], []
    for _ in range(rounds):
        L.seed_everything(args.seed)
        model = NeuMF(datamodule.num_users, datamodule.num_items, args.factor, args.num_layers, learning_rate=args.lr)
        trainer = quiet_trainer(max_epochs=1, limit_val_batches=0, callbacks=[Timer()])
        trainer.fit(model, datamodule=datamodule)
        lightning_times.append(trainer.callbacks[0].time_elapsed("train"))
        bare_times.append(bare_loop_seconds_per_epoch(datamodule, args.factor, args.num_layers, args.lr, 10**9))
        print(f"epoch: Lightning {lightning_times[-1]:.1f} s, bare loop {bare_times[-1]:.1f} s", flush=True)
    lightning, bare = min(lightning_times), min(bare_times)
    return {"timed_lightning_seconds_per_epoch": round(lightning, 2), "bare_loop_seconds_per_epoch": round(bare, 2),
            "lightning_over_bare": round(lightning / bare, 3), "timing_rounds": rounds,
            "timing_batch": f"{args.batch_size} positives x 5 = {args.batch_size * 5} scored pairs"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with the MovieLens files")
    parser.add_argument("--dataset", choices=["ml-1m", "ml-100k"], default="ml-1m")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--factor", type=int, default=64, help="predictive factors (the paper's best: 64)")
    parser.add_argument("--num-layers", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="positives per batch (x5 with 4 negatives)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--models", default="ItemPop,MF-BPR,GMF,MLP,NeuMF,NeuMF-pretrain")
    parser.add_argument("--timing-only", type=int, default=0, metavar="ROUNDS",
                        help="only time NeuMF epochs (Lightning vs bare loop, alternated ROUNDS times) and add the "
                        "numbers to the existing result file")  # fmt: skip
    parser.add_argument("--name", default=None, help="result name (default ncf_<dataset short name>)")
    add_output_arguments(parser, "ncf_movielens")
    args = parser.parse_args()
    use_output_dir(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    datamodule = build_datamodule(args)
    if args.timing_only:
        path = results_dir() / f"{args.name or 'ncf_' + args.dataset.replace('-', '')}.json"
        timing = alternating_epoch_timing(datamodule, args, args.timing_only)
        rows = json.loads(path.read_text())
        for row in rows:
            if row["model"] == "NeuMF":
                row.update(timing)
        path.write_text(json.dumps(rows, indent=1) + "\n")
        print(json.dumps(timing))
        return
    split = "leave-one-out by time" if args.dataset == "ml-100k" or datamodule.ordering == "time" else \
        "leave-one-out, random per user (seeded; no timestamps in this ML-1M copy)"  # fmt: skip
    common = {"epochs": args.epochs, "seed": args.seed, "split": split, "backbone": "none"}
    size = {"factor": args.factor}
    wanted = args.models.split(",")
    rows, trained = [], {}
    for name in wanted:
        L.seed_everything(args.seed)
        n, m = datamodule.num_users, datamodule.num_items
        if name == "ItemPop":
            model, epochs = ItemPop(n, m), 1
        elif name == "MF-BPR":
            model, epochs = MFBPR(n, m, factor=args.factor, learning_rate=args.lr), args.epochs
        elif name == "GMF":
            model, epochs = GMF(n, m, factor=args.factor, learning_rate=args.lr), args.epochs
        elif name == "MLP":
            model, epochs = MLP(n, m, args.factor, args.num_layers, learning_rate=args.lr), args.epochs
        elif name == "NeuMF":
            model, epochs = NeuMF(n, m, args.factor, args.num_layers, learning_rate=args.lr), args.epochs
        elif name in ("MF-BPR-sparse", "GMF-sparse", "NeuMF-sparse"):  # sparse gradients, catch-up Adam
            sparse = dict(learning_rate=args.lr, sparse_gradients=True)
            model = {"MF-BPR-sparse": lambda: MFBPR(n, m, factor=args.factor, **sparse),
                     "GMF-sparse": lambda: GMF(n, m, factor=args.factor, **sparse),
                     "NeuMF-sparse": lambda: NeuMF(n, m, args.factor, args.num_layers, **sparse)}[name]()  # fmt: skip
            epochs = args.epochs
        elif name == "NeuMF-pretrain":
            # The paper fine-tunes the pretrained fusion with a smaller step (it uses plain SGD).
            model, epochs = NeuMF(n, m, args.factor, args.num_layers, learning_rate=args.lr / 10), args.epochs
            model.init_from_pretrained(trained["GMF"], trained["MLP"], alpha=0.5)
        else:
            raise SystemExit(f"unknown model {name!r}")
        run = fit_and_test(model, datamodule, epochs)
        trained[name] = model
        extra = {**common, **(size if name != "ItemPop" else {}), "epochs": epochs}
        rows += result_rows(args.dataset, name, run, **extra, test_seconds=round(run["test_seconds"], 1))
        print(rows[-2:], flush=True)

    name = args.name or f"ncf_{args.dataset.replace('-', '')}"
    columns = ["dataset", "model", "protocol", "HR@10", "NDCG@10", "seconds_per_epoch", "epochs", "factor"]
    write_results(name, rows, columns)


if __name__ == "__main__":
    main()
