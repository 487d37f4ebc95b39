"""GPT4Rec vs BM25-on-the-whole-history and ItemPop: Recall@K for K = 5..40 and m = 1, 5, 10, 20 queries.

    python -m benchmarks.gpt4rec --dataset ml-100k --data ../shared/data/ml-100k --epochs 3
    python -m benchmarks.gpt4rec --dataset beauty --data ../shared/data/amazon-beauty --max-steps 3000 --test-users 2000
    python -m benchmarks.gpt4rec --dataset beauty --data ../shared/data/amazon-beauty --generator smollm2-135m \
        --max-steps 0 --queries 1,5 --test-users 500        # zero-shot pretrained SmolLM2-135M

Protocol: leave-one-out (ML-100K by time, Beauty by position), the latest 15 history items in the
prompt, every item the user already has excluded, Recall@K over the whole catalog, Diversity@K and
Coverage@K from categories (ML-100K genres; the Beauty sequence files have none), BM25 k1/b chosen
on validation users. Generator (``--generator``): the bundled tiny GPT-2 (2 layers, 64 wide, real
GPT-2 tokenizer) trained from random initialisation, or the pretrained SmolLM2-135M-Instruct
(``smollm2-135m``, ``make pretrained``), zero-shot with ``--max-steps 0`` or fine-tuned with LoRA
(``--lora``); the paper's anchor (Beauty Recall@40 0.204) used pretrained GPT-2 (117M), fully fine-tuned.
Writes ``benchmarks/results/gpt4rec.json`` (rows merged by dataset and generator run) and
``gpt4rec_<dataset>.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import add_output_arguments, markdown_table, pyplot, quiet_trainer, results_dir, use_output_dir
from lightning_rec.data_modules import AmazonDataModule, MovieLens100KDataModule
from lightning_rec.metrics import BeyondAccuracyMetrics, RankingMetrics
from lightning_rec.models import GPT4Rec
from lightning_rec.retrieval import fill_from, title_index

TOP_K = (5, 10, 20, 40)


def build_datamodule(args):
    kwargs = dict(batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, history_length=15, num_negatives=1,
                  eval_protocols=["full"], seed=args.seed)  # fmt: skip
    if args.dataset == "ml-100k":
        return MovieLens100KDataModule(args.data, **kwargs)
    data = Path(args.data)
    return AmazonDataModule(sequence_file=str(data / "user_sequence.txt"), titles_file=str(data / "item_titles.tsv"),
                            name="beauty", max_history=15, **kwargs)  # fmt: skip


def user_batches(loader, max_users: int):
    seen = 0
    for batch in loader:
        if seen >= max_users:
            return
        take = min(len(batch["user"]), max_users - seen)
        seen += take
        yield {k: v[:take] for k, v in batch.items()}


def evaluate(model: GPT4Rec, lists_fn, batches, categories) -> dict:
    """Recall@K and beyond-accuracy metrics of the ranked lists ``lists_fn(batch)`` returns."""
    ranking, beyond = RankingMetrics(TOP_K), BeyondAccuracyMetrics(categories, TOP_K)
    for batch in batches:
        top = lists_fn(batch)
        ranking.update(model.ranked_scores(top), batch["target_item"].unsqueeze(1))
        beyond.update(top, batch["target_item"].unsqueeze(1))
    values = {**ranking.compute(), **beyond.compute()}
    # Without item categories (Beauty's sequence files) Diversity and Coverage are undefined, not 0.
    undefined = ("Diversity", "Coverage") if not any(categories) else ()
    return {
        k: None if k.startswith(undefined) else round(float(v), 4)
        for k, v in values.items()
        if k.startswith(("Recall", "Diversity", "Coverage", "Catalog"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["beauty", "ml-100k"], default="ml-100k")
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=-1, help="cap on training steps (-1: epochs decide)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--queries", default="1,5,10,20", help="values of m (beams = queries per user)")
    parser.add_argument("--val-users", type=int, default=300, help="validation users for the BM25 grid")
    parser.add_argument("--test-users", type=int, default=1000, help="test users evaluated (a prefix, same for all)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--generator", default="tiny-gpt2", help="tiny-gpt2 (random init), smollm2-135m, or a path")
    parser.add_argument("--lora", action="store_true", help="fine-tune LoRA adapters instead of every weight")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--query-decoding", choices=["beam", "sample"], default="beam")
    parser.add_argument("--eval-batch-size", type=int, default=100, help="users per generation batch")
    add_output_arguments(parser, "gpt4rec")
    args = parser.parse_args()
    use_output_dir(args)
    logging.basicConfig(level=logging.WARNING)

    L.seed_everything(args.seed)
    dm = build_datamodule(args)
    categories, popularity = dm.item_categories, dm.item_popularity
    pretrained = args.generator != "tiny-gpt2"
    model = GPT4Rec(dm.item_titles, categories, popularity.tolist(), generator=args.generator, pretrained=pretrained,
                    use_peft=args.lora, num_queries=5, max_query_tokens=10, max_title_tokens=12, top_k=TOP_K,
                    learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
                    query_decoding=args.query_decoding)  # fmt: skip
    trainer = quiet_trainer(max_epochs=args.epochs, max_steps=args.max_steps, limit_val_batches=0)
    start = time.perf_counter()
    if args.max_steps != 0:  # --max-steps 0: zero-shot, the generator as loaded
        trainer.fit(model, datamodule=dm)
    train_seconds = time.perf_counter() - start
    model.eval()

    # BM25 k1/b: grid on validation users with m = 5 queries.
    validation = [
        (model.generate_queries(batch["history"]), model.known_items(batch), batch["target_item"])
        for batch in user_batches(dm.val_dataloader(), args.val_users)
    ]
    grid = model.bm25_grid_search(validation)
    grid_k = max(TOP_K)
    best = max(grid, key=lambda row: row[f"Recall@{grid_k}"])
    k1, b = best["k1"], best["b"]
    print("BM25 grid:", json.dumps(grid), "chosen", best, flush=True)

    test = list(user_batches(dm.test_dataloader(), args.test_users))
    num_test_users = sum(len(t["user"]) for t in test)
    common = {"dataset": args.dataset, "protocol": "full", "seed": args.seed, "test_users": num_test_users,
              "split": "leave-one-out by time" if args.dataset == "ml-100k" else "leave-one-out by position",
              "bm25_k1": k1, "bm25_b": b}  # fmt: skip
    rows = []
    training = (
        "zero-shot" if args.max_steps == 0
        else f"{'LoRA' if args.lora else 'all weights'}, {trainer.current_epoch} epochs / {trainer.global_step} steps"
    )  # fmt: skip
    backbone = f"{args.generator} ({'pretrained' if pretrained else 'random init'}, {training})"
    # Runs that differ in how much they trained are different runs (each keeps its rows and figure).
    prompts = "" if args.max_steps == 0 else f" {trainer.global_step * args.batch_size} prompts"
    run = f"{args.generator}|{training.split(',')[0]}{prompts}" + ("|sample" if args.query_decoding == "sample" else "")
    if args.query_decoding == "sample":
        backbone += ", queries by nucleus sampling (top-p 0.9)"
    common["run"] = run
    for m in [int(x) for x in args.queries.split(",")]:
        model.hparams.num_queries = m
        generation = [0.0]

        def gpt4rec_lists(batch, m=m):
            start = time.perf_counter()
            queries = model.generate_queries(batch["history"])
            generation[0] += time.perf_counter() - start
            return model.recommend(queries, model.known_items(batch), k1, b)

        metrics = evaluate(model, gpt4rec_lists, test, categories)
        rows.append({**common, "model": f"GPT4Rec m={m}", **metrics, "backbone": backbone,
                     "generation_seconds_per_1000_users": round(1000 * generation[0] / common["test_users"], 1),
                     "train_seconds": round(train_seconds)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)

    example = qualitative_example(model, dm, test[0], k1, b, args.dataset, run)
    print("example:", json.dumps(example, ensure_ascii=False), flush=True)
    examples_path = results_dir() / "gpt4rec_examples.json"
    examples = [e for e in (json.loads(examples_path.read_text()) if examples_path.exists() else [])
                if (e["dataset"], e["run"]) != (args.dataset, run)]  # fmt: skip
    examples_path.write_text(json.dumps(examples + [example], indent=1, ensure_ascii=False) + "\n")

    index = title_index(dm.item_titles, k1, b)
    order = popularity.argsort(descending=True, stable=True)

    def bm25_history_lists(batch):
        lists = []
        for history, known in zip(batch["history"].tolist(), model.known_items(batch)):
            query = " ".join(dm.item_titles[i] for i in history if i >= 0)
            found = [i for i in index.search([query], max(TOP_K) + len(known))[0] if i not in known]
            lists.append(fill_from(found[: max(TOP_K)], order, max(TOP_K), known))
        return torch.tensor(lists)

    def popularity_lists(batch):
        return torch.tensor([fill_from([], order, max(TOP_K), known) for known in model.known_items(batch)])

    bm25_metrics = evaluate(model, bm25_history_lists, test, categories)
    rows.append({**common, "model": "BM25 (history as one query)", **bm25_metrics, "backbone": "none"})
    rows.append(
        {**common, "model": "ItemPop", **evaluate(model, popularity_lists, test, categories), "backbone": "none"}
    )

    path = results_dir() / "gpt4rec.json"
    # Earlier rows without a run label are the tiny random GPT-2, fully trained.
    kept = [r for r in (json.loads(path.read_text()) if path.exists() else [])
            if (r["dataset"], r.get("run", "tiny-gpt2|all weights")) != (args.dataset, run)]  # fmt: skip
    path.write_text(json.dumps(kept + rows, indent=1) + "\n")
    columns = [
        "model",
        *[f"Recall@{k}" for k in TOP_K],
        "Diversity@10",
        "Coverage@10",
        "generation_seconds_per_1000_users",
    ]
    print(markdown_table(rows, columns))
    # One figure per run: generator and training (zero-shot, LoRA, ...) in the name and the title.
    slug = "" if run == "tiny-gpt2|all weights" else "_" + run.replace("|", "_").replace(" ", "-").lower()
    plot(rows, results_dir() / f"gpt4rec_{args.dataset}{slug}.png", f"{args.dataset}, {backbone}")
    print(f"wrote {path}")


def qualitative_example(
    model: GPT4Rec, dm, batch, k1: float, b: float, dataset: str, run: str, queries: int = 5
) -> dict:
    """The first test user: history titles, the generated queries and the top five items."""
    model.hparams.num_queries = queries
    one = {name: values[:1] for name, values in batch.items()}
    generated = model.generate_queries(one["history"])
    top = model.recommend(generated, model.known_items(one), k1, b, count=False)[0, :5].tolist()
    target = int(one["target_item"][0])
    return {
        "dataset": dataset, "run": run,
        "history": [dm.item_titles[i] for i in one["history"][0].tolist() if i >= 0],
        "queries": generated[0], "top_5": [dm.item_titles[i] for i in top if i >= 0],
        "held_out": dm.item_titles[target] if target >= 0 else None,
    }  # fmt: skip


def plot(rows, path: Path, title: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        ax.plot(TOP_K, [row[f"Recall@{k}"] for k in TOP_K], marker="o", label=row["model"],
                linestyle="--" if "GPT4Rec" not in row["model"] else "-")  # fmt: skip
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (full ranking)")
    ax.set_title(f"GPT4Rec, {title}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


if __name__ == "__main__":
    main()
