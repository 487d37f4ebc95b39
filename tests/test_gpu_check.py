import argparse

import pytest
import torch

from benchmarks.gpu_check import fit

ARGS = argparse.Namespace(data=None, steps=6, backbone="tiny-gpt2", cache_dir=None)


@pytest.mark.parametrize("name", ["NeuMF", "SASRec", "Enhanced-hybrid"])
def test_each_gpu_check_fit_runs_on_the_cpu_too(name, tmp_path):
    """The script's fits, on the CPU: the code a GPU run depends on is checked where no GPU is lent."""
    row = fit(name, argparse.Namespace(**{**vars(ARGS), "cache_dir": str(tmp_path)}), "cpu", "bf16-mixed")
    assert row["finite_loss"] and row["s_per_step"] > 0
    assert ("full_ranking_test_s_per_1k_users" in row) == (name == "SASRec")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_check_on_a_cuda_device(tmp_path):
    row = fit("SASRec", argparse.Namespace(**{**vars(ARGS), "cache_dir": str(tmp_path)}), "cuda", "16-mixed")
    assert row["finite_loss"]
