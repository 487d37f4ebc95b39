"""Fits the enhanced model through the cache switch on 1 or 2 CPU processes (run by test_distributed.py).

The global batch is the same in both cases (2 x per-process batch with 2 processes), so with the
same seed the two runs must reach the same metrics.
"""

import argparse
import json

import lightning as L
import torch

from lightning_rec.callbacks import MetadataCacheCallback
from lightning_rec.data_modules import MovieLens1MDataModule
from lightning_rec.models import GPT2RecommenderEnhanced


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache-dir", required=True)
    args = parser.parse_args()

    L.seed_everything(0)
    dm = MovieLens1MDataModule(history_length=5, batch_size=128 // args.devices, eval_batch_size=64)
    model = GPT2RecommenderEnhanced(
        dm.num_users, dm.num_items, dm.item_texts, backbone="tiny-gpt2", pretrained=False, max_length=16, factor=8,
        learning_rate=1e-2, contrastive_weight=0.0,  # in-batch negatives differ per process; see the README
    )  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu", devices=args.devices,
        strategy="ddp_find_unused_parameters_true" if args.devices > 1 else "auto",
        max_epochs=2, limit_train_batches=8, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[MetadataCacheCallback(args.cache_dir, switch_at_epoch=1)],
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    if trainer.is_global_zero:
        adapters = [p.detach().flatten() for p in model.text_encoder.trainable_backbone_parameters()]
        results["adapter_norm"] = float(torch.cat(adapters).norm())
        results["text_mode"] = model.text_mode
        with open(args.out, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
