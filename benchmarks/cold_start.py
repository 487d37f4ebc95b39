"""Cold start: where item text should pay. ID and text models on warm and on held-out (cold) items.

    python -m benchmarks.cold_start --dataset ml-1m --data ../shared/data/ml-1m --seeds 0,1,2 --epochs 3
    python -m benchmarks.cold_start --dataset ml-1m --data ../shared/data/ml-1m --seeds 0 --epochs 3 \
        --backbone smollm2-135m-mean --models ContentRec,GENRE,GPT2Recommender,Enhanced-fast
    python -m benchmarks.cold_start --dataset beauty --data ../shared/data/amazon-beauty --seeds 0 --epochs 3
    python -m benchmarks.cold_start plot

Protocol (the data module's ``cold_item_fraction``): a seeded 20 % of the items leave training with all
their interactions; they stay in the vocabulary with their text. Warm items are split leave-one-out as
usual (ML-1M: random per user, seeded; Beauty: by position); training, its negatives and validation see
warm items only. Three tests per fit, HR/NDCG@10 with full ranking and with 99 sampled negatives:
``warm`` (the leave-one-out test item, ranked among warm items), ``cold-all`` (each user's latest cold
item, seeded random for ML-1M, ranked among all items) and ``cold-only`` (the same target among the cold
items only). At a cold test every warm interaction of the user is known (history and mask) and the user's
other cold items are masked. ID embeddings and item biases of cold items are the mean of the trained rows
(an average item); ties are broken against the target, so an ID-only model, whose cold items all score
alike, gets 0 in the cold-only ranking (chance would be about 10 / number of cold items). Each model trains
for ``--epochs`` epochs at batch 256, Adam, without early stopping. Text: ``minilm`` (all-MiniLM-L6-v2,
pretrained, mean pooling) or ``smollm2-135m-mean`` / ``-last`` (SmolLM2-135M-Instruct, ``make
pretrained``), frozen. Writes ``benchmarks/results/cold_start.json`` (rows merged by dataset, model,
backbone and seed) and ``cold_start.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import lightning as L

from benchmarks.common import (
    add_output_arguments,
    catalog_cache_seconds,
    markdown_table,
    pyplot,
    quiet_trainer,
    result_rows,
    results_dir,
    use_output_dir,
)
from benchmarks.gpt2_movielens import BACKBONES, backbone_kwargs, build, peak_memory_mb
from lightning_rec.callbacks import MetadataCacheCallback
from lightning_rec.data_modules import AmazonDataModule, MovieLens1MDataModule
from lightning_rec.models import GENRE, ContentRec, ItemPop, SASRec, TextSASRec

MODELS = ["ItemPop", "NeuMF", "ContentRec", "GENRE", "GPT2Recommender", "Enhanced-fast", "SASRec", "TextSASRec-init",
          "TextSASRec-fuse", "TextSASRec-text"]  # fmt: skip
TEXT_SEQUENCE_MODELS = {"TextSASRec-init", "TextSASRec-fuse", "TextSASRec-text"}
SEQUENCE_MODELS = {"SASRec"} | TEXT_SEQUENCE_MODELS
TEXT_MODELS = {"ContentRec", "GENRE", "GPT2Recommender", "Enhanced-fast"} | TEXT_SEQUENCE_MODELS
TESTS = {"warm": ("warm", "all"), "cold-all": ("cold", "all"), "cold-only": ("cold", "cold")}


def build_datamodule(args, seed: int, sequences: bool = False) -> L.LightningDataModule:
    # Sequence models train on each user's latest 50 warm items (batch 128 users, the sequential recipe).
    shape = dict(batch_size=128, history_length=50, train_mode="sequences") if sequences else \
        dict(batch_size=256, history_length=10)  # fmt: skip
    kwargs = dict(eval_batch_size=256, seed=seed, cold_item_fraction=args.cold_fraction,
                  num_eval_negatives=args.eval_negatives, **shape)  # fmt: skip
    data = Path(args.data)
    if args.dataset == "beauty":
        return AmazonDataModule(sequence_file=str(data / "user_sequence.txt"),
                                titles_file=str(data / "item_titles.tsv"), name="beauty", max_title_length=0,
                                **kwargs)  # fmt: skip
    ratings = data / "partial" / "ratings_no_timestamp.csv"  # our ML-1M copy has no timestamps
    return MovieLens1MDataModule(str(data), ratings_file=str(ratings) if ratings.is_file() else None, **kwargs)


def build_model(name: str, backbone: str, dm, id_dropout: float = 0.0) -> L.LightningModule:
    text = {**backbone_kwargs(backbone), "factor": 32, "learning_rate": 1e-3}
    if name == "ItemPop":
        return ItemPop(dm.num_users, dm.num_items)
    if name in SEQUENCE_MODELS:  # the sequential benchmark's recipe: 1 block, dim 64, full cross-entropy
        sequence = dict(dim=64, max_length=50, num_layers=1, num_heads=1, dropout=0.2, loss="ce", learning_rate=1e-3)
        if name == "SASRec":
            return SASRec(dm.num_users, dm.num_items, **sequence)
        spec = backbone_kwargs(backbone)
        return TextSASRec(dm.num_users, dm.num_items, dm.item_texts, item_representation=name.split("-")[1],
                          backbone=spec["backbone"], pretrained=spec["pretrained"], pooling=spec["pooling"],
                          text_max_length=spec["max_length"],
                          id_dropout=id_dropout if name == "TextSASRec-fuse" else 0.0,
                          **sequence)  # fmt: skip
    if name == "ContentRec":
        return ContentRec(dm.num_users, dm.num_items, dm.item_texts, **text)
    if name == "GENRE":  # click + category (neither dataset here has ratings in this form)
        return GENRE(dm.num_users, dm.num_items, dm.item_texts, dm.item_categories, dm.item_popularity.tolist(),
                     category_weight=0.5 * any(dm.item_categories), **text)  # fmt: skip
    return build(name, backbone, dm, factor=32, lr=1e-3)


def fit_and_test_all(model, dm, epochs: int, callbacks: list) -> tuple[dict[str, dict], float]:
    """Fits once, then runs the three tests; returns their metrics by test name and the fit's seconds."""
    trainer = quiet_trainer(max_epochs=epochs, limit_val_batches=0, callbacks=callbacks)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_seconds = time.perf_counter() - start
    results = {}
    for test, (test_on, ranking) in TESTS.items():
        dm.test_on, dm.cold_ranking = test_on, ranking
        results[test] = trainer.test(model, datamodule=dm, verbose=False)[0]
    dm.test_on, dm.cold_ranking = "warm", "all"
    return results, fit_seconds


def run(args) -> list[dict]:
    rows = []
    names = [n for n in MODELS if not args.models or n in args.models.split(",")]
    for seed in [int(s) for s in args.seeds.split(",")]:
        pairs_dm = build_datamodule(args, seed)
        sequences_dm = build_datamodule(args, seed, sequences=True) if SEQUENCE_MODELS & set(names) else None
        for name in names:
            L.seed_everything(seed)
            dm = sequences_dm if name in SEQUENCE_MODELS else pairs_dm
            model = build_model(name, args.backbone, dm, args.id_dropout)
            uses_text = name in TEXT_MODELS
            callbacks = [MetadataCacheCallback(args.cache_dir, switch_at_epoch=None)] if name in (
                "GPT2Recommender", "Enhanced-fast", *TEXT_SEQUENCE_MODELS) else []  # fmt: skip
            epochs = 1 if name == "ItemPop" else args.epochs  # it counts in its first epoch
            results, fit_seconds = fit_and_test_all(model, dm, epochs, callbacks)
            label = f"{name}[{args.backbone}]" if uses_text else name
            if name == "TextSASRec-fuse" and args.id_dropout:
                label = f"{name}[{args.backbone}, ID dropout {args.id_dropout}]"
            for test, metrics in results.items():
                run_result = {"metrics": metrics, "seconds_per_epoch": fit_seconds / epochs}
                for row in result_rows(args.dataset, label, run_result, seed=seed, epochs=epochs,
                                       backbone=args.backbone if uses_text else "none",
                                       fit_seconds=round(fit_seconds), peak_memory_mb=round(peak_memory_mb()),
                                       catalog_cache_seconds=round(catalog_cache_seconds(callbacks), 3),
                                       cold_item_fraction=args.cold_fraction, num_cold_items=dm.data.num_cold_items,
                                       split=SPLITS[args.dataset]):  # fmt: skip
                    row["test"], row["protocol"] = (
                        test,
                        f"{'cold, ' if test != 'warm' else ''}{test}, {row['protocol']}",
                    )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            merge(rows)  # each model's rows land as its fit ends: a stopped run keeps what finished
    return rows


SPLITS = {"ml-1m": "leave-one-out, random per user (seeded)", "beauty": "leave-one-out by position"}


def merge(rows: list[dict]) -> list[dict]:
    """Replaces earlier rows of the same dataset, model, seed and protocol; keeps the rest."""
    kept = json.loads(results_file().read_text()) if results_file().exists() else []

    def key(row):
        return row["dataset"], row["model"], row["seed"], row["protocol"]

    done = {key(r) for r in rows}
    merged = [r for r in kept if key(r) not in done] + rows
    results_file().write_text(json.dumps(merged, indent=1) + "\n")
    return merged


def summarise(rows: list[dict], metric: str = "NDCG@10") -> list[dict]:
    """Mean and sd over seeds of ``metric`` (full ranking), per dataset, model and test."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        if row["protocol"].endswith("full"):
            groups.setdefault((row["dataset"], row["model"], row["test"]), []).append(row[metric])
    return [
        {"dataset": d, "model": m, "test": t, "seeds": len(v), metric: round(statistics.mean(v), 4),
         f"{metric} sd": round(statistics.stdev(v), 4) if len(v) > 1 else 0.0}
        for (d, m, t), v in groups.items()
    ]  # fmt: skip


def results_file() -> Path:
    return results_dir() / "cold_start.json"


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()

    summary = summarise(rows)
    datasets = sorted({s["dataset"] for s in summary})
    fig, axes = plt.subplots(len(datasets), 1, figsize=(11, 3.6 * len(datasets)), squeeze=False)
    for ax, dataset in zip(axes[:, 0], datasets):
        models = sorted({s["model"] for s in summary if s["dataset"] == dataset}, key=model_order)
        for offset, test in zip((-0.27, 0, 0.27), TESTS):
            found = {s["model"]: s for s in summary if s["dataset"] == dataset and s["test"] == test}
            xs = [i + offset for i, m in enumerate(models) if m in found]
            spread = [found[m]["NDCG@10 sd"] if found[m]["seeds"] > 1 else float("nan") for m in models if m in found]
            ax.bar(xs, [found[m]["NDCG@10"] for m in models if m in found], width=0.27, label=test, yerr=spread,
                   capsize=3)  # fmt: skip
        ax.set_xticks(range(len(models)), models, rotation=15, ha="right", fontsize=8)
        ax.set_ylabel("NDCG@10 (full ranking)")
        seeds = sorted({s["seeds"] for s in summary if s["dataset"] == dataset})
        ax.set_title(f"{dataset}: test NDCG@10, full ranking, warm vs cold items (20 % of items held out); "
                     f"{'/'.join(map(str, seeds))} seeds per bar, error bars (sd) where 2 or more; "
                     "backbone in brackets", fontsize=8)  # fmt: skip
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def model_order(model: str) -> tuple[int, str]:
    base = model.split("[")[0]
    return MODELS.index(base) if base in MODELS else len(MODELS), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=["run", "plot"], default="run")
    parser.add_argument("--dataset", choices=["ml-1m", "beauty"], default="ml-1m")
    parser.add_argument("--data", help="dataset folder (run)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cold-fraction", type=float, default=0.2)
    parser.add_argument("--eval-negatives", type=int, default=99, help="sampled protocol's negatives per user")
    parser.add_argument("--backbone", choices=BACKBONES, default="minilm")
    parser.add_argument("--models", default="", help=f"comma-separated subset of {MODELS} (default: all)")
    parser.add_argument(
        "--id-dropout",
        type=float,
        default=0.0,
        help="TextSASRec-fuse: probability of dropping an item's ID part in a step (DropoutNet)",
    )
    parser.add_argument("--cache-dir", default=".cache/lightning_rec")
    add_output_arguments(parser, "cold_start")
    args = parser.parse_args()
    use_output_dir(args)
    logging.basicConfig(level=logging.WARNING)
    if args.part == "run":
        if not args.data:
            parser.error("--data is required to run")
        run(args)
    rows = json.loads(results_file().read_text())
    print(markdown_table(summarise(rows), ["dataset", "model", "test", "seeds", "NDCG@10", "NDCG@10 sd"]))
    plot(rows, results_dir() / "cold_start.png")
    print(f"wrote {results_file()} and {results_dir() / 'cold_start.png'}")


if __name__ == "__main__":
    main()
