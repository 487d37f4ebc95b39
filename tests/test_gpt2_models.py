import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from transformers import AutoConfig, AutoModel

from lightning_rec.callbacks import TopKPredictionWriter
from lightning_rec.data_modules import MovieLens1MDataModule
from lightning_rec.models import GPT2Recommender, GPT2RecommenderEnhanced, NeuMF
from lightning_rec.nn.backbones import resolve_backbone


def trainer(**kwargs) -> L.Trainer:
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(**{**defaults, **kwargs})


def build(cls, dm, **kwargs):
    torch.manual_seed(0)
    defaults = dict(backbone="tiny-gpt2", pretrained=False, max_length=16, factor=8)
    return cls(dm.num_users, dm.num_items, dm.item_texts, **{**defaults, **kwargs})


@pytest.mark.parametrize("cls", [GPT2Recommender, GPT2RecommenderEnhanced])
@pytest.mark.parametrize("dataset", ["ml-1m", "amazon-sequences"])
def test_fast_dev_run(cls, dataset, small_datamodules):
    dm = small_datamodules[dataset]
    dm.history_length = 4
    model = build(cls, dm)
    trainer(fast_dev_run=True).fit(model, datamodule=dm)
    results = trainer(fast_dev_run=True).test(model, datamodule=dm, verbose=False)[0]
    assert 0 <= results["test/full/NDCG@10"] <= 1


def test_attention_needs_history():
    dm = MovieLens1MDataModule()
    model = build(GPT2RecommenderEnhanced, dm)
    with pytest.raises(ValueError, match="history_length > 0"):
        model.score(torch.tensor([0]), torch.tensor([[1, 2]]))


def test_item_texts_must_match_the_catalog():
    with pytest.raises(ValueError, match="got 2 item texts for 3 items"):
        GPT2RecommenderEnhanced(2, 3, ["a", "b"], backbone="tiny-gpt2", pretrained=False)


def test_enhanced_model_learns_the_planted_preferences(ml1m):
    dm = MovieLens1MDataModule(history_length=10, batch_size=256)
    L.seed_everything(0)
    model = build(GPT2RecommenderEnhanced, dm, factor=16, learning_rate=5e-3)
    trainer(max_epochs=6, limit_val_batches=0).fit(model, datamodule=dm)
    results = trainer().test(model, datamodule=dm, verbose=False)[0]
    assert results["test/sampled/HR@10"] > 0.4  # random: 0.10


def test_the_no_text_ablation_ignores_item_texts_and_needs_no_contrastive_term():
    dm = MovieLens1MDataModule(history_length=4)
    batch = dynamic_batch(dm)
    scrambled = [text[::-1] + " noise" for text in dm.item_texts]
    losses = {}
    for use_text in (True, False):
        for name, texts in (("real", dm.item_texts), ("scrambled", scrambled)):
            torch.manual_seed(0)
            model = GPT2RecommenderEnhanced(dm.num_users, dm.num_items, texts, backbone="tiny-gpt2",
                                            pretrained=False, max_length=16, factor=8, use_text=use_text,
                                            contrastive_weight=0.1 if use_text else 0.0)  # fmt: skip
            model.on_fit_start()
            losses[use_text, name] = model.training_loss(batch).item()
    assert losses[False, "real"] == losses[False, "scrambled"]  # the texts never reach the scores
    assert losses[True, "real"] != losses[True, "scrambled"]
    with pytest.raises(ValueError, match="contrastive_weight=0"):
        build(GPT2RecommenderEnhanced, dm, use_text=False)


def test_checkpoint_keeps_adapters_not_the_frozen_pretrained_backbone(tmp_path):
    dm = MovieLens1MDataModule(history_length=4)
    # A "pretrained" backbone on disk: the tiny config with weights saved next to the tokenizer files.
    backbone_dir = tmp_path / "backbone"
    torch.manual_seed(1)
    AutoModel.from_config(AutoConfig.from_pretrained(resolve_backbone("tiny-gpt2"))).save_pretrained(backbone_dir)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        (backbone_dir / name).write_bytes((Path(resolve_backbone("tiny-gpt2")) / name).read_bytes())
    model = build(GPT2RecommenderEnhanced, dm, backbone=str(backbone_dir), pretrained=True, use_cache=False)
    t = trainer(max_steps=3, limit_val_batches=0)
    t.fit(model, datamodule=dm)
    t.save_checkpoint(tmp_path / "model.ckpt")
    state = torch.load(tmp_path / "model.ckpt", weights_only=False)["state_dict"]
    assert any("lora_A" in key for key in state)
    assert not any(key.endswith("wte.weight") for key in state)  # frozen pretrained weights are reloaded by name
    restored = GPT2RecommenderEnhanced.load_from_checkpoint(tmp_path / "model.ckpt")
    assert restored.text_mode == "dynamic"
    model.eval(), restored.eval()
    users, items, history = torch.arange(3), torch.arange(6).expand(3, -1), torch.tensor([[-1, 0, 1, 2]] * 3)
    assert torch.allclose(restored.score(users, items, history), model.score(users, items, history), atol=1e-5)


def test_basic_model_round_trip_and_predict_explanations(tmp_path):
    dm = MovieLens1MDataModule(history_length=4)
    model = build(GPT2Recommender, dm)
    t = trainer(max_steps=2, limit_val_batches=0)
    t.fit(model, datamodule=dm)
    t.save_checkpoint(tmp_path / "basic.ckpt")
    restored = GPT2Recommender.load_from_checkpoint(tmp_path / "basic.ckpt")
    assert isinstance(restored, GPT2Recommender) and restored.fusion is None and restored.text_mode == "cached"
    users, items = torch.arange(3), torch.arange(6).expand(3, -1)
    restored.eval(), model.eval()
    assert torch.allclose(restored.score(users, items), model.score(users, items), atol=1e-5)

    enhanced = build(GPT2RecommenderEnhanced, dm)
    out = tmp_path / "top.csv"
    trainer(callbacks=[TopKPredictionWriter(str(out))]).predict(enhanced, datamodule=dm, return_predictions=False)
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == dm.num_users * 10
    titles = set(dm.item_titles)
    explained = [r["explanation"] for r in rows if r["explanation"]]
    assert explained and all(part.rsplit(" (", 1)[0] in titles for part in explained[0].split("; "))


def test_a_checkpoint_of_another_model_is_an_error_naming_the_keys(tmp_path):
    dm = MovieLens1MDataModule(history_length=4)
    neumf = NeuMF(dm.num_users, dm.num_items, factor=8)
    t = trainer(max_steps=1, limit_val_batches=0)
    t.fit(neumf, datamodule=dm)
    t.save_checkpoint(tmp_path / "neumf.ckpt")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict") as error:
        trainer().test(build(GPT2RecommenderEnhanced, dm), datamodule=dm, ckpt_path=str(tmp_path / "neumf.ckpt"))
    assert "text_projection.weight" in str(error.value) and "Unexpected key(s)" in str(error.value)


def dynamic_batch(dm) -> dict:
    batch = next(iter(dm.train_dataloader()))
    return {name: values[:32] for name, values in batch.items()}


def test_a_text_budget_at_least_the_batch_equals_the_plain_dynamic_step():
    dm = MovieLens1MDataModule(history_length=4)
    batch = dynamic_batch(dm)
    gradients = []
    for budget in (None, 10_000):
        model = build(GPT2RecommenderEnhanced, dm, use_cache=False, dynamic_items_per_step=budget).train()
        loss = model.training_loss(batch)
        loss.backward()
        gradients.append((loss.detach(), [p.grad.clone() for p in model.text_encoder.trainable_backbone_parameters()]))
    (loss_plain, grads_plain), (loss_budget, grads_budget) = gradients
    assert torch.equal(loss_plain, loss_budget) and all(map(torch.equal, grads_plain, grads_budget))


def test_a_small_text_budget_encodes_only_that_many_items_live_and_adapters_still_learn(monkeypatch):
    dm = MovieLens1MDataModule(history_length=4)
    model = build(GPT2RecommenderEnhanced, dm, use_cache=False, dynamic_items_per_step=16).train()
    encoded, encode = [], model.text_encoder.encode
    monkeypatch.setattr(model.text_encoder, "encode", lambda items: encoded.append(len(items)) or encode(items))
    model.training_loss(dynamic_batch(dm)).backward()
    assert encoded == [16] and model.text_encoder.cache is not None  # the other items read the cache
    assert any(p.grad.abs().sum() > 0 for p in model.text_encoder.trainable_backbone_parameters())


def test_the_budgeted_cache_is_refreshed_every_n_steps():
    dm = MovieLens1MDataModule(history_length=4)
    model = build(GPT2RecommenderEnhanced, dm, use_cache=False, dynamic_items_per_step=16, refresh_every_n_steps=2,
                  learning_rate=1e-2)  # fmt: skip
    caches = []

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            caches.append(pl_module.text_encoder.cache.clone())

    trainer(max_steps=5, limit_val_batches=0, callbacks=[Watch()]).fit(model, datamodule=dm)
    changed = [not torch.equal(before, after) for before, after in zip(caches, caches[1:])]
    # Built in the first step, recomputed when global_step is 2 and 4 (the third and fifth batches).
    assert changed == [False, True, False, True]


def test_a_dynamic_fit_on_the_top_block_only_trains_its_adapters():
    dm = MovieLens1MDataModule(history_length=4)
    model = build(GPT2RecommenderEnhanced, dm, use_cache=False, dynamic_layers=1, dynamic_items_per_step=32,
                  learning_rate=1e-2)  # fmt: skip
    before = {n: p.detach().clone() for n, p in model.text_encoder.backbone.named_parameters() if p.requires_grad}
    assert before and all(".h.1." in name for name in before)  # tiny-gpt2 has blocks 0 and 1
    trainer(max_steps=3, limit_val_batches=0).fit(model, datamodule=dm)
    after = dict(model.text_encoder.backbone.named_parameters())
    assert any(not torch.equal(after[name], value) for name, value in before.items())
    assert model.text_encoder.lower_states.shape[:2] == (dm.num_items, 16)
