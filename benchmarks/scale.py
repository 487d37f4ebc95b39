"""Cost as data grows: setup, prepared-data reuse, negatives, training steps and evaluation from 1M to 100M rows.

    python -m benchmarks.scale --sizes 1M,5M,20M --out runs/scale
    python -m benchmarks.scale --sizes 100M --steps 1000 --dense-steps 40 --sasrec-steps 20 --out runs/scale
    python -m benchmarks.scale ddp --sizes 20M --out runs/scale  # summed PSS of a 1- and a 2-process fit
    python -m benchmarks.scale plot --out runs/scale

Data: :func:`lightning_rec.data.synthetic.synthetic_log` (seeded, MovieLens-shaped: log-normal user activity, Zipf
item popularity, integer timestamps; 1M: 6k users x 3.7k items, 5M: 35k x 15k, 20M: 140k x 27k, 100M: 700k x 50k)
written once as Parquet under ``--data-dir`` and read by ``LogDataModule``, split by time. Each size runs in two
fresh processes, so peak memory is the size's own: the first prepares the data (parse, split, encode, write the
prepared arrays) and reports setup seconds and peak RSS above the process's RSS before setup, per interaction and
beside the bytes of the final arrays; the second reads the prepared arrays (the second setup) and measures one
epoch's training negatives (4 per interaction), the median training step (batch 256 x (1 + 4) for NeuMF factor 16
with dense Adam and with sparse gradients; batch 128 x length 50 for SASRec, 1 block, dim 64, full softmax) over
Lightning fits of ``--steps`` steps, and evaluation seconds per 1,000 users (sampled: 99 negatives, ``--eval-users``
users; full ranking of the catalog by NeuMF, a pair scorer, over 1,000 users). One thread per process
(``--threads``); run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import add_output_arguments, markdown_table, pyplot, quiet_trainer, results_dir, use_output_dir

SIZES = {"100K": 100_000, "1M": 1_000_000, "5M": 5_000_000, "20M": 20_000_000, "100M": 100_000_000}
COLUMNS = ["size", "users", "items", "setup_s", "setup_peak_rss_gb", "bytes_per_interaction",
           "arrays_bytes_per_interaction", "cached_setup_s", "negatives_s", "neumf_step_ms", "neumf_sparse_step_ms",
           "sasrec_step_ms", "sampled_eval_s_per_1k_users", "full_eval_s_per_1k_users", "ddp1_peak_pss_gb",
           "ddp2_peak_pss_gb", "ddp_pss_ratio"]  # fmt: skip


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


class StepTimer(L.Callback):
    """Seconds of each training step (forward, backward and optimizer), loading excluded."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def data_module(data: Path, prepared: Path, **kwargs):
    from lightning_rec.data_modules import LogDataModule

    return LogDataModule(str(data / "interactions.parquet"), str(data / "items.parquet"), time_column="timestamp",
                         prepared_dir=str(prepared), name="synthetic", **kwargs)  # fmt: skip


def median_step_ms(model, dm, steps: int) -> float:
    timer = StepTimer()
    quiet_trainer(max_steps=steps, limit_val_batches=0, callbacks=[timer]).fit(model, datamodule=dm)
    return round(1000 * statistics.median(timer.seconds[5:] or timer.seconds), 2)


def eval_seconds_per_1k(model, dm, users: int) -> float:
    batches = max(1, users // dm.eval_batch_size)
    start = time.perf_counter()
    quiet_trainer(limit_val_batches=batches).validate(model, datamodule=dm, verbose=False)
    return round((time.perf_counter() - start) / (batches * dm.eval_batch_size / 1000), 3)


def prepare(data: Path, prepared: Path) -> dict:
    """The first setup: parse, split, encode and write the prepared arrays."""
    before = rss_bytes()
    start = time.perf_counter()
    dm = data_module(data, prepared)
    dm.prepare_data()
    dm.setup("fit")
    seconds = time.perf_counter() - start
    encoded = dm.data
    arrays = sum(v.nbytes for v in vars(encoded).values() if isinstance(v, torch.Tensor))
    interactions = len(encoded.train_items) + 2 * encoded.num_users
    return {"users": encoded.num_users, "items": encoded.num_items, "interactions": interactions,
            "setup_s": round(seconds, 2), "setup_peak_rss_gb": round(peak_rss_bytes() / 2**30, 2),
            "bytes_per_interaction": round((peak_rss_bytes() - before - arrays) / interactions, 1),
            "arrays_bytes_per_interaction": round(arrays / interactions, 1)}  # fmt: skip


def reuse(data: Path, prepared: Path, steps: int, eval_users: int, dense_steps: int, sasrec_steps: int) -> dict:
    """The second setup from the prepared arrays, then negatives, training steps and evaluation."""
    from lightning_rec.models import NeuMF, SASRec

    start = time.perf_counter()
    dm = data_module(data, prepared, batch_size=256, eval_batch_size=1000, eval_protocols=["sampled"])
    dm.setup("fit")
    row = {"cached_setup_s": round(time.perf_counter() - start, 2)}
    start = time.perf_counter()
    dm._train_columns(0)
    row["negatives_s"] = round(time.perf_counter() - start, 2)
    for key, sparse, count in (("neumf_step_ms", False, dense_steps), ("neumf_sparse_step_ms", True, steps)):
        L.seed_everything(0)
        model = NeuMF(dm.num_users, dm.num_items, factor=16, num_layers=3, sparse_gradients=sparse)
        row[key] = median_step_ms(model, dm, count)
    row.update(neumf_dense_steps=dense_steps, neumf_sparse_steps=steps, sasrec_steps=sasrec_steps)
    row["sampled_eval_s_per_1k_users"] = eval_seconds_per_1k(model, dm, eval_users)
    full = data_module(data, prepared, eval_batch_size=1000, eval_protocols=["full"])
    row["full_eval_s_per_1k_users"] = eval_seconds_per_1k(model, full, 1000)
    sequences = data_module(data, prepared, batch_size=128, train_mode="sequences", history_length=50)
    sasrec = SASRec(sequences.num_users, sequences.num_items, dim=64, max_length=50, num_layers=1, num_heads=1,
                    dropout=0.2, loss="ce")  # fmt: skip
    row["sasrec_step_ms"] = median_step_ms(sasrec, sequences, sasrec_steps)
    row["peak_rss_gb"] = round(peak_rss_bytes() / 2**30, 2)
    return row


def ddp_fit(data: Path, prepared: Path, devices: int, steps: int) -> dict:
    """NeuMF (sparse gradients) for ``steps`` steps on ``devices`` CPU processes, reading the prepared arrays."""
    from lightning_rec.models import NeuMF

    L.seed_everything(0)
    dm = data_module(data, prepared, batch_size=256, eval_protocols=["sampled"])
    model = NeuMF(dm.num_users, dm.num_items, factor=16, num_layers=3, sparse_gradients=True)
    trainer = quiet_trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                            max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return {"rank": trainer.global_rank, "steps": trainer.global_step, "peak_rss_gb": peak_rss_bytes() / 2**30}


def process_tree_memory(root: int) -> tuple[float, float]:
    """Summed RSS and PSS (GB) of ``root`` and its descendants: RSS counts a shared, memory-mapped page in every
    process that reads it; PSS divides it among them, so the sum of PSS is what the processes cost together."""
    import psutil

    rss = pss = 0
    try:
        parent = psutil.Process(root)
        for process in [parent, *parent.children(recursive=True)]:
            try:
                info = process.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss, pss = rss + info.rss, pss + info.pss
    except psutil.NoSuchProcess:
        pass
    return rss / 2**30, pss / 2**30


def ddp_memory(size: str, args) -> dict:
    """Peak summed PSS and RSS of a ``--steps``-step fit on 1 process, then on 2 DDP processes."""
    from lightning_rec.data.synthetic import write_synthetic_log

    data = Path(args.data_dir) / size
    if not (data / "interactions.parquet").is_file():
        write_synthetic_log(data, SIZES[size], seed=0)
    run_child("prepare", size, args)  # prepares the arrays unless the current code's are there: no fit parses
    row = {}
    for devices in (1, 2):
        command = [sys.executable, "-m", "benchmarks.scale", "ddp-fit", "--size", size, "--data-dir", args.data_dir,
                   "--devices", str(devices), "--steps", str(args.steps), "--threads", str(args.threads)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        peak_rss = peak_pss = 0.0
        while process.poll() is None:
            rss, pss = process_tree_memory(process.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.25)
        output = process.stdout.read()
        results = [
            json.loads(line.removeprefix("RESULT ")) for line in output.splitlines() if line.startswith("RESULT ")
        ]
        if process.returncode or len(results) != devices:
            raise RuntimeError(f"the {devices}-process fit failed: {' | '.join(output.strip().splitlines()[-3:])}")
        row[f"ddp{devices}_peak_pss_gb"] = round(peak_pss, 2)
        row[f"ddp{devices}_peak_rss_sum_gb"] = round(peak_rss, 2)
        row[f"ddp{devices}_ru_maxrss_sum_gb"] = round(sum(r["peak_rss_gb"] for r in results), 2)
    row["ddp_pss_ratio"] = round(row["ddp2_peak_pss_gb"] / row["ddp1_peak_pss_gb"], 2)
    return row


def child(args) -> None:
    import lightning_rec.data_modules  # noqa: F401 - imported before the clocks start
    import lightning_rec.models  # noqa: F401

    torch.set_num_threads(args.threads)
    data, prepared = Path(args.data_dir) / args.size, Path(args.data_dir) / f"{args.size}-prepared"
    if args.part == "prepare":
        result = prepare(data, prepared)
    elif args.part == "reuse":
        result = reuse(data, prepared, args.steps, args.eval_users, args.dense_steps or args.steps,
                       args.sasrec_steps or args.steps)  # fmt: skip
    else:
        result = ddp_fit(data, prepared, args.devices, args.steps)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(part: str, size: str, args) -> dict:
    command = [sys.executable, "-m", "benchmarks.scale", part, "--size", size, "--data-dir", args.data_dir,
               "--threads", str(args.threads), "--steps", str(args.steps), "--eval-users", str(args.eval_users),
               "--dense-steps", str(args.dense_steps or args.steps),
               "--sasrec-steps", str(args.sasrec_steps or args.steps),
               "--out", args.out]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"{part} exited with {done.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def run(args) -> list[dict]:
    from lightning_rec.data.synthetic import write_synthetic_log

    rows = []
    for size in args.sizes.split(","):
        data = Path(args.data_dir) / size
        if not (data / "interactions.parquet").is_file():
            print(f"writing the {size} synthetic log to {data}", flush=True)
            write_synthetic_log(data, SIZES[size], seed=0)
        prepared = Path(args.data_dir) / f"{size}-prepared"
        subprocess.run(["rm", "-rf", str(prepared)], check=True)
        row = {"size": size, "target_interactions": SIZES[size], "threads": args.threads,
               "machine": f"{os.cpu_count()} cores", **run_child("prepare", size, args)}  # fmt: skip
        if "error" not in row:
            row.update(run_child("reuse", size, args))
        print(json.dumps(row), flush=True)
        rows.append(row)
        merge(rows)
    return rows


def update_row(size: str, values: dict) -> None:
    """Adds ``values`` to the row of ``size`` in the results file (a new row if it has none)."""
    rows = json.loads(results_file().read_text()) if results_file().exists() else []
    row = next((r for r in rows if r["size"] == size), None)
    if row is None:
        rows.append(row := {"size": size, "target_interactions": SIZES[size]})
    row.update(values)
    print(json.dumps({"size": size, **values}), flush=True)
    merge([row])


def results_file() -> Path:
    return results_dir() / "scale.json"


def merge(rows: list[dict]) -> list[dict]:
    kept = json.loads(results_file().read_text()) if results_file().exists() else []
    sizes = {row["size"] for row in rows}
    merged = sorted([r for r in kept if r["size"] not in sizes] + rows, key=lambda r: r["target_interactions"])
    results_file().write_text(json.dumps(merged, indent=1) + "\n")
    return merged


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    rows = [r for r in rows if "error" not in r and "interactions" in r]
    if not rows:  # e.g. only ddp rows so far
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    sizes = [r["interactions"] for r in rows]
    for key, label in (("setup_s", "first setup (s)"), ("cached_setup_s", "second setup (s)"),
                       ("negatives_s", "negatives per epoch (s)"), ("neumf_step_ms", "NeuMF step, dense Adam (ms)"),
                       ("neumf_sparse_step_ms", "NeuMF step, sparse (ms)"), ("sasrec_step_ms", "SASRec step (ms)"),
                       ("sampled_eval_s_per_1k_users", "sampled eval (s / 1k users)"),
                       ("full_eval_s_per_1k_users", "full eval, NeuMF (s / 1k users)")):  # fmt: skip
        ax.plot(sizes, [r[key] for r in rows], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("interactions (synthetic MovieLens-shaped log)")
    ax.set_ylabel("cost")
    ax.set_title("Cost against data size, one thread per process, 2-core machine", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=["run", "plot", "ddp", "prepare", "reuse", "ddp-fit"],
                        default="run", help="run the sizes; plot --out's rows; ddp: memory of a 1- and a 2-process "
                        "fit of each size (prepare, reuse, ddp-fit: child processes)")  # fmt: skip
    parser.add_argument("--sizes", default="1M,5M,20M", help=f"comma-separated, of {list(SIZES)}")
    parser.add_argument("--size", help="child processes: the size to measure")
    parser.add_argument("--data-dir", default=".cache/lightning_rec/scale", help="the synthetic logs' folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40, help="training steps per fit (median after 5)")
    parser.add_argument("--dense-steps", type=int, help="steps of the dense-Adam NeuMF fit (default: --steps)")
    parser.add_argument("--sasrec-steps", type=int, help="steps of the SASRec fit (default: --steps)")
    parser.add_argument("--eval-users", type=int, default=10_000, help="users of the sampled evaluation")
    parser.add_argument("--devices", type=int, default=1, help="ddp-fit: processes")
    add_output_arguments(parser, "scale")
    args = parser.parse_args()
    if args.part in ("prepare", "reuse", "ddp-fit"):
        child(args)
        return
    use_output_dir(args)
    if args.part == "ddp":
        for size in args.sizes.split(","):
            update_row(size, ddp_memory(size, args))
    if args.part == "run":
        unknown = set(args.sizes.split(",")) - set(SIZES)
        if unknown:
            parser.error(f"unknown sizes {sorted(unknown)}; choose from {list(SIZES)}")
        run(args)
    rows = json.loads(results_file().read_text())
    print(markdown_table(rows, [c for c in COLUMNS if any(c in r for r in rows)]))
    plot(rows, results_dir() / "scale.png")
    print(f"wrote {results_file()} and {results_dir() / 'scale.png'}")


if __name__ == "__main__":
    main()
