"""Sequential, text-enhanced sequential and content models with full-ranking metrics on Amazon Beauty
and MovieLens-100K, each at convergence.

    python -m benchmarks.sequential --dataset beauty --data path/to/amazon-beauty --models SASRec \\
        --seeds 0,1,2 --patience 20 --max-epochs 200
    python -m benchmarks.sequential --dataset beauty --data path/to/amazon-beauty --backbone minilm \\
        --models TextSASRec-init,TextSASRec-fuse,TextSASRec-text
    python -m benchmarks.sequential plot --out runs/sequential   # validation NDCG@10 against minutes

Protocol: leave-one-out (Beauty by position in the time-ordered sequence file, ML-100K by time), full
ranking over the whole catalog with the user's earlier items masked, test metrics of the epoch with the
best validation NDCG@10 (early stopping with ``--patience``). Users whose test item never occurs in
training count as misses; each row also gives the metrics without them (``*_rankable``). Rows carry
the seed, backbone, item representation, strategy, epochs, best epoch, seconds per epoch, the whole
fit's seconds, the minutes until validation NDCG@10 first reached ``--quality-bar`` and until the best
epoch, the validation curve, and the process's peak memory so far.

Results go to ``--out`` (a run folder, rows added as each fit ends; a fit interrupted mid-way resumes
from its last checkpoint there, and finished rows are skipped); ``--publish`` also merges them into
``benchmarks/results/sequential.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from benchmarks.common import RESULTS_DIR, markdown_table, pyplot, quiet_trainer
from benchmarks.gpt2_movielens import BACKBONES, backbone_kwargs, peak_memory_mb
from lightning_rec.callbacks import MetadataCacheCallback
from lightning_rec.data_modules import AmazonDataModule, MovieLens100KDataModule
from lightning_rec.models import FMBPR, BERT4Rec, ContentRec, ItemPop, SASRec, TextSASRec, YouTubeDNN

TOP_K = (5, 10, 20, 40)
SEQUENCE_MODELS = {"SASRec", "SASRec-CE", "SASRec-BCE", "BERT4Rec"}
TEXT_SEQUENCE_MODELS = {"TextSASRec-init", "TextSASRec-fuse", "TextSASRec-text"}
MONITOR = "val/full/NDCG@10"


class ValidationCurve(Callback):
    """Records ``(epoch, minutes since the fit started, monitored value)`` after every validation;
    checkpointed, so a resumed fit continues the curve and the clock."""

    def __init__(self, monitor: str = MONITOR) -> None:
        self.monitor, self.points, self.offset, self.started = monitor, [], 0.0, 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def minutes(self) -> float:
        return self.offset + (time.perf_counter() - self.started) / 60

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self.monitor in trainer.callback_metrics:
            value = float(trainer.callback_metrics[self.monitor])
            self.points.append([trainer.current_epoch, round(self.minutes(), 3), round(value, 5)])

    def state_dict(self) -> dict[str, Any]:
        return {"points": self.points, "minutes": self.minutes()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.points, self.offset = state_dict["points"], state_dict["minutes"]

    def first_minutes_at(self, bar: float) -> float | None:
        return next((minutes for _, minutes, value in self.points if value >= bar), None)


#: SASRec and TextSASRec options beyond ``--loss`` and ``--dim``, with their defaults. A row (and its checkpoint
#: folder) names only those it changes, so the rows of earlier fits keep their names.
RECIPE_DEFAULTS: dict[str, Any] = {
    "negatives": "shared", "feedforward_dim": None, "block": "pre_norm", "init": "normal", "adam_beta2": 0.999,
    "monitor": "NDCG@10",
}  # fmt: skip


def recipe_of(source: Any) -> dict[str, Any]:
    """The recipe options of a row (a dict) or of parsed arguments, defaults filled in."""
    get = source.get if isinstance(source, dict) else lambda key, default: getattr(source, key, default)
    return {key: get(key, default) for key, default in RECIPE_DEFAULTS.items()}


def build_datamodule(args, sequences: bool, seed: int):
    kwargs = dict(
        batch_size=128 if sequences else 512, eval_batch_size=512, history_length=args.max_length,
        train_mode="sequences" if sequences else "pairs", num_negatives=1 if sequences else 8,
        eval_protocols=["full"], seed=seed,
    )  # fmt: skip
    if args.dataset == "ml-100k":
        return MovieLens100KDataModule(args.data, **kwargs)
    data = Path(args.data)
    return AmazonDataModule(
        sequence_file=str(data / "user_sequence.txt"), titles_file=str(data / "item_titles.tsv"), name="beauty",
        max_title_length=0, **kwargs,  # keep every item, as the published Beauty numbers do
    )  # fmt: skip


def text_kwargs(backbone: str) -> dict[str, Any]:
    spec = backbone_kwargs(backbone)
    return dict(backbone=spec["backbone"], pretrained=spec["pretrained"], pooling=spec["pooling"],
                text_max_length=spec["max_length"])  # fmt: skip


def build_model(name: str, dm, args) -> L.LightningModule:
    n, m, common = dm.num_users, dm.num_items, {"top_k": TOP_K}
    sequence = dict(dim=args.dim, max_length=args.max_length, **common)
    # eSASRec's Beauty settings (blondered/transformer_benchmark), --dim and --loss aside.
    published = dict(num_layers=1, num_heads=1, dropout=0.2, loss=args.loss, num_negatives=256,
                     shared_negatives=args.negatives == "shared", feedforward_dim=args.feedforward_dim,
                     block=args.block, init=args.init, adam_betas=(0.9, args.adam_beta2))  # fmt: skip
    if name == "SASRec":
        return SASRec(n, m, **sequence, **published, learning_rate=1e-3)
    if name in TEXT_SEQUENCE_MODELS:
        dynamic = {}
        if args.strategy == "hybrid":  # LoRA on the top block, a bounded number of live items per step
            dynamic = dict(
                use_peft=True,
                dynamic_layers=args.dynamic_layers,
                dynamic_items_per_step=args.dynamic_items_per_step,
                refresh_every_n_steps=args.refresh_every,
            )
        return TextSASRec(n, m, dm.item_texts, item_representation=name.split("-")[1], **text_kwargs(args.backbone),
                          **sequence, **published, **dynamic, learning_rate=1e-3)  # fmt: skip
    if name == "SASRec-CE":
        return SASRec(n, m, **sequence, num_layers=2, num_heads=1, dropout=0.2, loss="ce", learning_rate=1e-3)
    if name == "SASRec-BCE":
        return SASRec(n, m, **sequence, num_layers=2, num_heads=1, dropout=0.2, loss="bce", learning_rate=1e-3)
    if name == "BERT4Rec":
        return BERT4Rec(n, m, **sequence, num_layers=2, num_heads=2, dropout=0.2, mask_probability=0.2,
                        learning_rate=1e-3)  # fmt: skip
    if name == "YouTubeDNN":
        return YouTubeDNN(n, m, factor=64, hidden_dims=(128,), learning_rate=1e-3, **common)
    if name == "ContentRec":
        return ContentRec(n, m, dm.item_texts, **backbone_kwargs("minilm"), factor=64, learning_rate=1e-3,
                          **common)  # fmt: skip
    if name == "FM-BPR":
        return FMBPR(n, m, dm.item_categories, factor=64, learning_rate=1e-3, weight_decay=1e-6, **common)
    if name == "ItemPop":
        return ItemPop(n, m, **common)
    raise SystemExit(f"unknown model {name!r}")


def row_key(row: dict[str, Any]) -> tuple:
    keys = ("dataset", "model", "backbone", "seed", "dim", "strategy", "loss", *RECIPE_DEFAULTS)
    return tuple(row.get(k) for k in keys)


def run_identity(name: str, seed: int, args) -> dict[str, Any]:
    """The fields that name a run (its :func:`row_key`), so a finished run is found and skipped."""
    is_text = name in TEXT_SEQUENCE_MODELS
    identity = {"dataset": args.dataset, "model": name, "backbone": args.backbone if is_text else "none",
                "seed": seed, "dim": None if name == "ItemPop" else args.dim,
                "strategy": args.strategy if is_text else None,
                "loss": args.loss if name == "SASRec" or is_text else None}  # fmt: skip
    if identity["loss"]:
        for key, value in recipe_of(args).items():
            if value != RECIPE_DEFAULTS[key] and (key != "negatives" or identity["loss"] == "sampled_softmax"):
                identity[key] = value
    return identity


def checkpoint_dir(args, identity: dict[str, Any]) -> Path:
    """Where the fit named by ``identity`` keeps its best and last checkpoints under ``--out``."""
    return Path(args.out) / "checkpoints" / "-".join(str(v) for v in identity.values())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results file; none when it does not exist yet."""
    return json.loads(path.read_text()) if path.exists() else []


def run(name: str, seed: int, args) -> dict[str, Any]:
    L.seed_everything(seed)
    is_text = name in TEXT_SEQUENCE_MODELS
    dm = build_datamodule(args, sequences=name in SEQUENCE_MODELS or is_text, seed=seed)
    model = build_model(name, dm, args)
    run_dir = checkpoint_dir(args, run_identity(name, seed, args))
    curve = ValidationCurve()
    # Early stopping and the tested checkpoint follow --monitor; the curve (time to quality, the figure) NDCG@10.
    monitor = f"val/full/{args.monitor}" if name == "SASRec" or is_text else MONITOR
    checkpoint = ModelCheckpoint(dirpath=run_dir, monitor=monitor, mode="max", filename="best")
    # Saved every epoch (a monitored checkpoint's save_last only follows its improvements), to resume from.
    latest = ModelCheckpoint(dirpath=run_dir, filename="last", enable_version_counter=False)
    stopper = EarlyStopping(monitor=monitor, mode="max", patience=args.patience)
    callbacks: list[Callback] = [curve, checkpoint, latest, stopper]
    hybrid = is_text and args.strategy == "hybrid"
    # The catalog's text vectors are computed once per backbone and read from disk after; the hybrid
    # continues the same seed's converged fast fit with dynamic LoRA extraction from its first step.
    text_cache = MetadataCacheCallback(cache_dir=args.cache_dir, switch_at_epoch=0 if hybrid else None)
    if is_text:
        callbacks.append(text_cache)
    fast = continue_from_fast(model, name, seed, args) if hybrid else {}
    max_epochs = 1 if name == "ItemPop" else args.dynamic_epochs if hybrid else args.max_epochs
    trainer = quiet_trainer(max_epochs=max_epochs, enable_checkpointing=True, callbacks=callbacks,
                            num_sanity_val_steps=0)  # fmt: skip
    last = run_dir / "last.ckpt"
    trainer.fit(model, datamodule=dm, ckpt_path=str(last) if last.exists() else None)
    # A resumed fit's clock continues from the checkpoint's, so this is the whole fit's time.
    fit_seconds = curve.minutes() * 60
    # Testing the best checkpoint restores the callbacks' states as they were then: keep the whole curve.
    points = list(curve.points)
    # Memory-mapped: only the epoch is read here (the test below loads the weights).
    best_epoch = (
        torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False, mmap=True)["epoch"]
        if points
        else 0
    )
    metrics = trainer.test(model, datamodule=dm, ckpt_path=checkpoint.best_model_path or None, verbose=False)[0]
    data = dm.data
    evaluated = int(((data.test_items >= 0) | data.test_unrankable).sum())
    unrankable = int(data.test_unrankable.sum())
    row = {**run_identity(name, seed, args), "protocol": "full"}
    row.update({k.removeprefix("test/full/"): round(float(v), 4) for k, v in metrics.items()})
    # Misses add 0 to every sum: without those users a mean scales by evaluated / rankable.
    row.update({f"{k}_rankable": round(row[k] * evaluated / (evaluated - unrankable), 4)
                for k in ("HR@10", "NDCG@10", "Recall@10") if k in row})  # fmt: skip
    curve.points = points
    epochs = len(points)
    bar_minutes = curve.first_minutes_at(args.quality_bar)
    best_minutes = next((minutes for epoch, minutes, _ in points if epoch == best_epoch), None)
    row.update(
        item_representation=name.split("-")[1] if is_text else None, epochs=epochs, best_epoch=best_epoch,
        seconds_per_epoch=round(fit_seconds / max(1, epochs), 2),
        fit_seconds=round(fit_seconds), catalog_cache_seconds=round(text_cache.cache_build_seconds),
        **{f"minutes_to_val_ndcg_{args.quality_bar}": bar_minutes},
        minutes_to_best_epoch=best_minutes, peak_memory_mb=round(peak_memory_mb()), threads=torch.get_num_threads(),
        test_users=evaluated, test_users_unrankable=unrankable, max_length=args.max_length,
        split="leave-one-out by position" if args.dataset == "beauty" else "leave-one-out by time",
        max_epochs=max_epochs, stopped_early=bool(stopper.stopped_epoch), val_curve=points,
    )  # fmt: skip
    if hybrid:  # the row covers both phases: the fast fit it continues and the dynamic epochs
        row.update(dynamic_epochs=epochs, dynamic_seconds=row["fit_seconds"], epochs=fast["epochs"] + epochs,
                   fit_seconds=fast["fit_seconds"] + row["fit_seconds"], dynamic_layers=args.dynamic_layers,
                   dynamic_items_per_step=args.dynamic_items_per_step, text_mode_at_end=model.text_mode)  # fmt: skip
    return row


def continue_from_fast(model: TextSASRec, name: str, seed: int, args) -> dict[str, Any]:
    """Loads the best weights of the same seed's fast fit (everything but the backbone, which the hybrid wraps
    with LoRA) into ``model``; returns that fit's row."""
    fast_args = argparse.Namespace(**{**vars(args), "strategy": "fast"})
    identity = run_identity(name, seed, fast_args)
    rows = read_rows(Path(args.out) / "sequential.json")
    fast_row = next((r for r in rows if row_key(r) == row_key(identity)), None)
    best = checkpoint_dir(args, identity) / "best.ckpt"
    if fast_row is None or not best.exists():
        raise SystemExit(f"the hybrid continues a converged fast fit: run {name} with --strategy fast first ({best})")
    state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("text_encoder.") for k in missing):
        raise SystemExit(f"the fast fit's weights do not fit the hybrid: missing {missing}, unexpected {unexpected}")
    return fast_row


def merge_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    kept = read_rows(path)
    done = {row_key(r) for r in rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r for r in kept if row_key(r) not in done] + rows, indent=1) + "\n")


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` over seeds (4 decimals), or the single value for one seed."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def headline(
    rows: list[dict[str, Any]],
    dataset: str = "beauty",
    loss: str = "ce",
    dim: int = 64,
    **recipe: Any,
) -> str:
    """The README's headline table: SASRec against TextSASRec, one line per model and backbone, over seeds,
    from the rows of one recipe (``loss``, ``dim`` and the :data:`RECIPE_DEFAULTS` options given in ``recipe``,
    1 block, early stopping on the recipe's monitored validation metric)."""
    wanted = (loss, dim, recipe_of(recipe))
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["dataset"] == dataset and (row.get("loss"), row.get("dim"), recipe_of(row)) == wanted:
            groups.setdefault((row["model"], row["backbone"], row.get("strategy")), []).append(row)
    baseline = statistics.mean(r["NDCG@10"] for r in groups.get(("SASRec", "none", None), [{"NDCG@10": float("nan")}]))
    lines = ["| model | item text | seeds | NDCG@10 | HR@10 (= Recall@10) | NDCG@10 without unrankable users | "
             "vs SASRec | best epoch | minutes to best |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    order = {None: 0, "fast": 1, "hybrid": 2}
    for (model, backbone, strategy), group in sorted(
        groups.items(), key=lambda item: (item[0][0] != "SASRec", item[0][:2], order[item[0][2]])
    ):
        group.sort(key=lambda r: r["seed"])
        ndcg = [r["NDCG@10"] for r in group]
        change = "" if model == "SASRec" else f"{100 * (statistics.mean(ndcg) / baseline - 1):+.1f} %"
        if strategy == "hybrid":
            model = f"{model}, hybrid (+{group[0]['dynamic_epochs']} dynamic LoRA epochs)"
        lines.append(
            f"| {model} | {'none (IDs)' if backbone == 'none' else backbone} "
            f"| {','.join(str(r['seed']) for r in group)} "
            f"| {mean_sd(ndcg)} | {mean_sd([r['HR@10'] for r in group])} "
            f"| {mean_sd([r['NDCG@10_rankable'] for r in group])} | {change} "
            f"| {', '.join(str(r['best_epoch']) for r in group)} "
            f"| {', '.join(str(round(r['minutes_to_best_epoch'])) for r in group)} |"
        )
    return "\n".join(lines)


def plot(out: Path, dataset: str = "beauty") -> Path:
    """Validation NDCG@10 against training minutes on ``dataset``, one line per (model, backbone, seed)."""
    plt = pyplot()

    # The hybrid's curve starts at its dynamic phase's own clock: it is left out rather than drawn from minute 0.
    rows = [r for r in json.loads((out / "sequential.json").read_text())
            if r.get("val_curve") and r.get("strategy") != "hybrid" and r["dataset"] == dataset]  # fmt: skip
    figure, axes = plt.subplots(figsize=(8, 5))
    for row in rows:
        minutes, values = zip(*[(p[1], p[2]) for p in row["val_curve"]])
        text = "" if row["backbone"] == "none" else f" [{row['backbone']}]"
        label = f"{row['model']}{text}, {row.get('loss') or 'earlier recipe'}, seed {row['seed']}"
        axes.plot(minutes, values, label=label, linewidth=1)
    datasets = sorted({r["dataset"] for r in rows})
    axes.set(xlabel="training minutes (validation included)", ylabel="validation NDCG@10 (full ranking)",
             title=f"{', '.join(datasets)}: leave-one-out, full ranking, validation NDCG@10 per epoch\n"
                   "1 block, dim 64, one thread per fit (2-4 fits sharing 2 cores); curves of the sampled-softmax "
                   "fits end at their best epoch")  # fmt: skip
    axes.legend(fontsize=7)
    path = out / ("sequential_val_curves.png" if dataset == "beauty" else f"sequential_val_curves_{dataset}.png")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


RECALL_KS = (5, 10, 20, 40)


def gpt4rec_users(data: str, count: int = 500) -> list[str]:
    """Raw ids of the GPT4Rec benchmark's Beauty test users: the first ``count`` of its data module."""
    from benchmarks.gpt4rec import build_datamodule as gpt4rec_datamodule
    from benchmarks.gpt4rec import user_batches

    settings = argparse.Namespace(dataset="beauty", data=data, batch_size=64, eval_batch_size=100, seed=42)
    dm = gpt4rec_datamodule(settings)
    users = torch.cat([batch["user"] for batch in user_batches(dm.test_dataloader(), count)])
    return [dm.user_ids[user] for user in users.tolist()]


def recall_table(args, run_folders: list[Path]) -> list[dict[str, Any]]:
    """Recall@5/10/20/40 of every fast fit with a best checkpoint in ``run_folders``, on the GPT4Rec benchmark's
    500 Beauty test users (re-tested from the checkpoint) beside all users (the row's own test), then the
    GPT4Rec rows (best GPT4Rec and BM25 on history, 500 users) from ``benchmarks/results/gpt4rec.json``."""
    users = gpt4rec_users(args.data)
    table = []
    for folder in run_folders:
        for row in read_rows(folder / "sequential.json"):
            if row["dataset"] != "beauty" or row.get("strategy") == "hybrid":
                continue  # the hybrid's checkpoint needs its dynamic set-up; its cached fit is in the table
            backbone = row["backbone"] if row["backbone"] != "none" else args.backbone
            settings = argparse.Namespace(**{**vars(args), "out": str(folder), "dim": row.get("dim") or args.dim,
                                             "strategy": row.get("strategy") or "fast",
                                             "loss": row.get("loss") or args.loss, **recipe_of(row),
                                             "backbone": backbone})  # fmt: skip
            best = checkpoint_dir(settings, run_identity(row["model"], row["seed"], settings)) / "best.ckpt"
            is_text = row["model"] in TEXT_SEQUENCE_MODELS
            entry = {"model": row["model"], "backbone": row["backbone"], "seed": row["seed"], "loss": row.get("loss"),
                     "epochs": row["epochs"], "best_epoch": row["best_epoch"], "all_users": row["test_users"],
                     **{f"Recall@{k} (all)": row.get(f"Recall@{k}") for k in RECALL_KS}}  # fmt: skip
            if best.exists():
                L.seed_everything(row["seed"])
                dm = build_datamodule(settings, sequences=row["model"] in SEQUENCE_MODELS or is_text, seed=row["seed"])
                dm.eval_user_ids = users
                model = build_model(row["model"], dm, settings)
                callbacks = [MetadataCacheCallback(cache_dir=args.cache_dir, switch_at_epoch=None)] if is_text else []
                metrics = quiet_trainer(callbacks=callbacks).test(model, datamodule=dm, ckpt_path=str(best),
                                                                  verbose=False)[0]  # fmt: skip
                entry.update(
                    {f"Recall@{k} (500)": round(float(metrics[f"test/full/Recall@{k}"]), 4) for k in RECALL_KS}
                )
            table.append(entry)
            print(json.dumps(entry), flush=True)
    return table + gpt4rec_rows()


def gpt4rec_rows() -> list[dict[str, Any]]:
    """BM25 on the history and the best GPT4Rec row (by Recall@10) of the committed GPT4Rec results on Beauty."""
    rows = [r for r in read_rows(RESULTS_DIR / "gpt4rec.json") if r["dataset"] == "beauty" and r["test_users"] == 500]
    picked = [max((r for r in rows if r["model"].startswith("GPT4Rec")), key=lambda r: r["Recall@10"]),
              next(r for r in rows if r["model"].startswith("BM25"))]  # fmt: skip
    return [{"model": r["model"], "backbone": r["backbone"], "seed": r.get("seed"), "all_users": None,
             **{f"Recall@{k} (500)": r[f"Recall@{k}"] for k in RECALL_KS}} for r in picked]  # fmt: skip


RECALL_ORDER = ["FM-BPR", "ContentRec", "YouTubeDNN", "BERT4Rec", "SASRec", "TextSASRec-text", "TextSASRec-init",
                "TextSASRec-fuse", "BM25 (history as one query)"]  # fmt: skip


def recall_markdown(table: list[dict[str, Any]], sequential_rows: list[dict[str, Any]]) -> str:
    """The README's Recall@5-40 table: the earlier all-user FM-BPR and YouTubeDNN rows of ``sequential_rows`` (unless
    ``table`` has their refits), then the rows of :func:`recall_table` averaged over seeds, on GPT4Rec's 500 users
    and on all users."""

    def mean(values: list[float | None]) -> str:
        present = [v for v in values if v is not None]
        return f"{statistics.mean(present):.3f}" if present else "-"

    lines = ["| model | item text | seeds | test users | " + " | ".join(f"Recall@{k}" for k in RECALL_KS) + " |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    refitted = {row["model"] for row in table}
    for row in sequential_rows:  # the earlier all-user rows of models not yet refitted with checkpoints
        if row["dataset"] == "beauty" and row["seed"] == 42 and row["model"] in {"FM-BPR", "YouTubeDNN"} - refitted:
            values = " | ".join(f"{row[f'Recall@{k}']:.3f}" if f"Recall@{k}" in row else "-" for k in RECALL_KS)
            lines.append(f"| {row['model']} | none | 42 (earlier run) | all 22,363 | {values} |")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in table:
        groups.setdefault((row["model"], row["backbone"]), []).append(row)
    rank = {model: i for i, model in enumerate(RECALL_ORDER)}
    for (model, backbone), group in sorted(groups.items(), key=lambda item: (rank.get(item[0][0], 99), item[0][1])):
        seeds = ",".join(str(r["seed"]) for r in group)
        text = backbone
        if model == "ContentRec":
            text = "minilm (titles only, no item IDs)"
        elif model.startswith("GPT4Rec"):
            text = "SmolLM2-135M queries (LoRA, 300 steps) + BM25 over titles"
        elif model.startswith("BM25"):
            text = "BM25 over titles"
        sets = [(500, "GPT4Rec's 500")] + ([("all", "all 22,363")] if group[0]["all_users"] else [])
        for users, label in sets:
            values = " | ".join(mean([r.get(f"Recall@{k} ({users})") for r in group]) for k in RECALL_KS)
            lines.append(f"| {model} | {text} | {seeds} | {label} | {values} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=["run", "plot", "headline", "recall-table"], default="run",
                        help="run the fits; plot the validation curves of --out; print the headline table; "
                             "Recall@5-40 of checkpoints on GPT4Rec's 500 Beauty users and on all")  # fmt: skip
    parser.add_argument("--runs", help="recall-table: comma-separated run folders with checkpoints (default: --out)")
    parser.add_argument("--dataset", choices=["beauty", "ml-100k"], default="beauty")
    parser.add_argument("--data", help="folder of the dataset's files")
    parser.add_argument("--models", default="ItemPop,FM-BPR,YouTubeDNN,ContentRec,SASRec,BERT4Rec")
    parser.add_argument("--backbone", choices=BACKBONES, default="minilm", help="item text LM of TextSASRec")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--dim", type=int, default=64, help="hidden size of the sequence models")
    parser.add_argument(
        "--strategy",
        choices=["fast", "hybrid"],
        default="fast",
        help="TextSASRec: cached text throughout, or continue the fast fit with dynamic LoRA epochs",
    )
    parser.add_argument("--dynamic-epochs", type=int, default=3, help="hybrid: dynamic epochs after the fast fit")
    parser.add_argument("--dynamic-layers", type=int, default=1, help="hybrid: backbone blocks run live")
    parser.add_argument("--dynamic-items-per-step", type=int, default=128, help="hybrid: live items per step")
    parser.add_argument("--refresh-every", type=int, default=50, help="hybrid: steps between cache refreshes")
    parser.add_argument(
        "--loss",
        choices=["sampled_softmax", "ce"],
        default="sampled_softmax",
        help="loss of SASRec and TextSASRec (1 block, 1 head)",
    )
    recipe = parser.add_argument_group(
        "SASRec and TextSASRec recipe options (RecTools' SASRec: --feedforward-dim DIM --block sasrec --init xavier "
        "--adam-beta2 0.98 --monitor HR@10); a row names those that differ from the defaults"
    )
    recipe.add_argument("--feedforward-dim", type=int, help="feed-forward width (default 4 x --dim; the paper: --dim)")
    recipe.add_argument("--negatives", choices=["shared", "per-position"], default="shared",
                        help="sampled softmax: 256 negatives drawn once per step, or for each position")  # fmt: skip
    recipe.add_argument("--block", choices=["pre_norm", "sasrec"], default="pre_norm",
                        help="pre-norm GELU blocks, or the SASRec authors' (normalised residuals, ReLU)")  # fmt: skip
    recipe.add_argument("--init", choices=["normal", "xavier"], default="normal",
                        help="tables N(0, 0.02), or Xavier-normal matrices")  # fmt: skip
    recipe.add_argument("--adam-beta2", type=float, default=0.999, help="Adam's beta2")
    recipe.add_argument("--monitor", choices=["NDCG@10", "HR@10"], default="NDCG@10",
                        help="validation metric of early stopping and the tested checkpoint (the published SASRec "
                             "numbers select by Recall@10, which is HR@10 here)")  # fmt: skip
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=20, help="epochs without a better monitored value")
    parser.add_argument("--max-length", type=int, default=50, help="sequence length (history items)")
    parser.add_argument("--quality-bar", type=float, default=0.04, help="val NDCG@10 for time-to-quality")
    parser.add_argument("--cache-dir", default=".cache/lightning_rec/item_text")
    parser.add_argument("--out", default="runs/sequential", help="run folder: rows, checkpoints, figure")
    parser.add_argument("--publish", action="store_true",
                        help="also merge rows into benchmarks/results/ (plot, headline: read there)")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.INFO)  # why each fit stopped
    out = RESULTS_DIR if args.publish else Path(args.out)
    if args.command == "plot":
        print(f"wrote {plot(out, args.dataset)}")
        return
    if args.command == "headline":
        rows = json.loads((out / "sequential.json").read_text())
        print(headline(rows, args.dataset, args.loss, args.dim, **recipe_of(args)))
        return
    if not args.data:
        parser.error("--data is required: the folder of the dataset's files")
    if args.command == "recall-table":
        table = recall_table(args, [Path(folder) for folder in (args.runs or args.out).split(",")])
        out.mkdir(parents=True, exist_ok=True)
        (out / "beauty_recall_table.json").write_text(json.dumps(table, indent=1) + "\n")
        print(recall_markdown(table, read_rows(out / "sequential.json")))
        print(f"wrote {out / 'beauty_recall_table.json'}")
        return

    path = out / "sequential.json"
    finished = {row_key(r) for r in read_rows(path)}
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in args.models.split(","):
            key = row_key(run_identity(name, seed, args))
            if key in finished:
                print(f"skipping {key}: already in {path}", flush=True)
                continue
            rows.append(run(name, seed, args))
            merge_rows(path, rows[-1:])
            if args.publish:
                merge_rows(RESULTS_DIR / "sequential.json", rows[-1:])
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "val_curve"}), flush=True)
    columns = ["dataset", "model", "backbone", "seed", "HR@10", "NDCG@10", "NDCG@10_rankable", "epochs", "best_epoch",
               "seconds_per_epoch", "minutes_to_best_epoch"]  # fmt: skip
    print(markdown_table(rows, columns))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
