import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_rec.data_modules import MovieLens1MDataModule
from lightning_rec.models import GPT2RecommenderEnhanced

ROOT = Path(__file__).resolve().parent.parent


def run_fit(devices: int, tmp_path: Path) -> dict:
    out = tmp_path / f"devices{devices}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "tests" / "ddp_fit.py"), "--devices", str(devices), "--out", str(out),
               "--cache-dir", str(tmp_path / f"cache{devices}")]  # fmt: skip
    subprocess.run(command, check=True, cwd=tmp_path, env=env, timeout=600, capture_output=True)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_process_ddp_through_the_switch_matches_one_process(tmp_path):
    single, ddp = run_fit(1, tmp_path), run_fit(2, tmp_path)
    assert single["text_mode"] == ddp["text_mode"] == "dynamic"
    assert ddp["adapter_norm"] == pytest.approx(single["adapter_norm"], rel=1e-4)
    for name in ("test/sampled/HR@10", "test/sampled/NDCG@10", "test/full/HR@10", "test/full/NDCG@10"):
        assert ddp[name] == pytest.approx(single[name], abs=1e-3), name
    # The cache was built once, by rank 0, into one file.
    assert len(list((tmp_path / "cache2").glob("*.pt"))) == 2  # initial + tuned
    assert not list((tmp_path / "cache2").glob("*.tmp"))


def test_bf16_mixed_on_cpu_gives_a_finite_loss():
    dm = MovieLens1MDataModule(history_length=5, batch_size=64)
    model = GPT2RecommenderEnhanced(dm.num_users, dm.num_items, dm.item_texts, backbone="tiny-gpt2", pretrained=False,
                                    max_length=16, factor=8, use_cache=False)  # fmt: skip
    trainer = L.Trainer(precision="bf16-mixed", max_steps=3, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    loss = trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss) and loss > 0
