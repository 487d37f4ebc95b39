import logging
import os
import stat
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import Tensor, nn

from lightning_rec.callbacks import MetadataCacheCallback
from lightning_rec.data_modules import MovieLens1MDataModule
from lightning_rec.models import GMF, GPT2RecommenderEnhanced


@pytest.fixture(scope="module")
def dm() -> MovieLens1MDataModule:
    return MovieLens1MDataModule(history_length=5, batch_size=128, eval_protocols=["sampled"])


def enhanced(dm, **kwargs) -> GPT2RecommenderEnhanced:
    torch.manual_seed(0)
    return GPT2RecommenderEnhanced(
        dm.num_users, dm.num_items, dm.item_texts, backbone="tiny-gpt2", pretrained=False, max_length=16,
        factor=8, **{"learning_rate": 1e-2, **kwargs},
    )  # fmt: skip


def lora_weights(model) -> Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.text_encoder.trainable_backbone_parameters()])


class Recorder(Callback):
    """Text mode seen by each training batch, and the adapter weights after each epoch."""

    def __init__(self):
        self.modes, self.weights = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.modes.append((trainer.current_epoch, pl_module.text_mode))

    def on_train_epoch_end(self, trainer, pl_module):
        self.weights.append(lora_weights(pl_module))


def trainer(**kwargs) -> L.Trainer:
    defaults = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_train_batches=3,
                    limit_val_batches=1, num_sanity_val_steps=0, enable_checkpointing=False)  # fmt: skip
    return L.Trainer(**{**defaults, **kwargs})


def test_callback_swaps_to_dynamic_mid_fit_and_adapters_train_only_after(dm, tmp_path):
    model, recorder = enhanced(dm), Recorder()
    initial = lora_weights(model)
    callback = MetadataCacheCallback(cache_dir=str(tmp_path), switch_at_epoch=2)
    trainer(max_epochs=4, callbacks=[callback, recorder]).fit(model, datamodule=dm)
    assert [mode for epoch, mode in recorder.modes if epoch < 2] == ["cached"] * 6
    assert [mode for epoch, mode in recorder.modes if epoch >= 2] == ["dynamic"] * 6
    # In the optimizer from the start, but untouched while cached; learning after the switch.
    assert torch.equal(recorder.weights[0], initial) and torch.equal(recorder.weights[1], initial)
    assert not torch.equal(recorder.weights[2], initial)
    assert not torch.equal(recorder.weights[3], recorder.weights[2])
    assert len(list(tmp_path.glob("*.pt"))) == 2  # the initial cache and the tuned one


def test_switch_at_step(dm, tmp_path):
    model, recorder = enhanced(dm), Recorder()
    trainer(max_epochs=2, callbacks=[MetadataCacheCallback(str(tmp_path), switch_at_epoch=None, switch_at_step=4),
                                     recorder]).fit(model, datamodule=dm)  # fmt: skip
    assert [mode for _, mode in recorder.modes] == ["cached"] * 4 + ["dynamic"] * 2


def test_cache_file_is_reused_and_a_corrupt_one_rebuilt(dm, tmp_path, caplog):
    callback = MetadataCacheCallback(str(tmp_path), switch_at_epoch=5)
    trainer(max_epochs=1, callbacks=[callback]).fit(enhanced(dm), datamodule=dm)
    path = callback.cache_path
    first = torch.load(path, weights_only=True)["embeddings"]
    stamp = path.stat().st_mtime_ns
    assert callback.cache_build_seconds > 0
    callback = MetadataCacheCallback(str(tmp_path), switch_at_epoch=5)
    trainer(max_epochs=1, callbacks=[callback]).fit(enhanced(dm), datamodule=dm)
    assert path.stat().st_mtime_ns == stamp  # same key: loaded, not recomputed
    assert callback.cache_build_seconds == 0.0
    path.write_bytes(b"not a tensor file")
    with caplog.at_level(logging.WARNING):
        trainer(max_epochs=1, callbacks=[MetadataCacheCallback(str(tmp_path), switch_at_epoch=5)]).fit(
            enhanced(dm), datamodule=dm
        )
    assert "corrupt or mismatched" in caplog.text
    assert torch.allclose(torch.load(path, weights_only=True)["embeddings"], first)
    # A file whose key does not match its name is rebuilt as well.
    torch.save({"key": "other", "embeddings": torch.zeros_like(first)}, path)
    model = enhanced(dm)
    trainer(max_epochs=1, callbacks=[MetadataCacheCallback(str(tmp_path), switch_at_epoch=5)]).fit(model, datamodule=dm)
    assert torch.allclose(torch.load(path, weights_only=True)["embeddings"], first)


def fit_with_checkpoints(dm, tmp_path, max_epochs, ckpt_path=None, switch_at_epoch=2):
    model, recorder = enhanced(dm), Recorder()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    callbacks = [MetadataCacheCallback(str(tmp_path / "cache"), switch_at_epoch=switch_at_epoch), recorder, checkpoints]
    trainer(max_epochs=max_epochs, callbacks=callbacks, enable_checkpointing=True).fit(model, datamodule=dm,
                                                                                       ckpt_path=ckpt_path)  # fmt: skip
    return model, recorder


def test_resume_after_the_switch_stays_dynamic_and_adapters_keep_learning(dm, tmp_path):
    fit_with_checkpoints(dm, tmp_path, max_epochs=3)  # switched at epoch 2
    resumed_from = next((tmp_path / "ckpt").glob("epoch=2*.ckpt"))
    model, recorder = fit_with_checkpoints(dm, tmp_path, max_epochs=5, ckpt_path=str(resumed_from))
    assert {mode for _, mode in recorder.modes} == {"dynamic"}
    assert [epoch for epoch, _ in recorder.modes][0] == 3
    # Lightning issue #21901: after a resume the adapters must still change.
    assert not torch.equal(recorder.weights[0], recorder.weights[1])
    assert all(p.requires_grad for p in model.text_encoder.trainable_backbone_parameters())


def test_resume_before_the_switch_switches_on_time(dm, tmp_path):
    fit_with_checkpoints(dm, tmp_path, max_epochs=1, switch_at_epoch=2)
    resumed_from = next((tmp_path / "ckpt").glob("epoch=0*.ckpt"))
    _, recorder = fit_with_checkpoints(dm, tmp_path, max_epochs=3, ckpt_path=str(resumed_from))
    assert [(e, m) for e, m in recorder.modes][::3] == [(1, "cached"), (2, "dynamic")]


class BagOfWordsRecommender(L.LightningModule):
    """A user's own module: implements SupportsTextCache and nothing else of lightning-rec."""

    def __init__(self, num_items: int = 6, dim: int = 4):
        super().__init__()
        self.words = nn.EmbeddingBag(num_items, dim)  # stands in for a text encoder
        self.adapter = nn.Linear(dim, dim)
        self.text_mode, self.cache = "cached", None
        self.cache_computations = 0

    def set_text_mode(self, mode):
        self.text_mode = mode

    def text_cache_key(self):
        return "bow-" + str(round(float(self.words.weight.sum()), 6))

    @torch.no_grad()
    def compute_text_cache(self):
        self.cache_computations += 1
        return self.words(torch.arange(self.words.num_embeddings).unsqueeze(1))

    def set_text_cache(self, embeddings):
        self.cache = embeddings

    def training_step(self, batch, batch_idx):
        items = batch[0]
        text = self.words(items.unsqueeze(1)) if self.text_mode == "dynamic" else self.cache[items]
        return (self.adapter(text) - 1).pow(2).mean()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(6)), batch_size=3)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_users_own_module_gets_the_same_behaviour(tmp_path):
    model, recorder = BagOfWordsRecommender(), Recorder()
    initial = model.words.weight.clone()
    recorder.on_train_epoch_end = lambda trainer, module: recorder.weights.append(module.words.weight.clone())
    trainer(max_epochs=3, callbacks=[MetadataCacheCallback(str(tmp_path), switch_at_epoch=1), recorder],
            limit_val_batches=0).fit(model)  # fmt: skip
    assert [mode for _, mode in recorder.modes] == ["cached"] * 2 + ["dynamic"] * 4
    assert model.cache_computations == 2  # the initial cache and the tuned one
    assert torch.equal(recorder.weights[0], initial)  # the encoder does not run while cached
    assert not torch.equal(recorder.weights[1], initial)


def test_a_module_without_the_protocol_is_rejected(dm, tmp_path):
    with pytest.raises(TypeError, match="does not implement SupportsTextCache"):
        trainer(max_epochs=1, callbacks=[MetadataCacheCallback(str(tmp_path))]).fit(
            GMF(dm.num_users, dm.num_items, factor=4), datamodule=dm
        )


def test_testing_an_older_checkpoint_uses_the_cache_of_its_weights(dm, tmp_path):
    # Epoch 0 (before the switch) is tested after later epochs tuned the adapters: the cache in use
    # must be the one of the epoch-0 weights, exactly as in a fresh process.
    model = enhanced(dm)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    fit_trainer = trainer(max_epochs=3, callbacks=[MetadataCacheCallback(str(tmp_path / "cache"), switch_at_epoch=1),
                                                   checkpoints], enable_checkpointing=True)  # fmt: skip
    fit_trainer.fit(model, datamodule=dm)
    tuned_cache = model.text_encoder.compute_cache()
    epoch_0 = str(next((tmp_path / "ckpt").glob("epoch=0*.ckpt")))
    in_fit = fit_trainer.test(model, datamodule=dm, ckpt_path=epoch_0, verbose=False)[0]
    fresh = GPT2RecommenderEnhanced.load_from_checkpoint(epoch_0)
    alone = trainer().test(fresh, datamodule=dm, verbose=False)[0]
    assert model.text_mode == "cached" and not torch.allclose(model.text_encoder.cache, tuned_cache)
    assert torch.allclose(model.text_encoder.cache, fresh.text_encoder.cache)
    assert in_fit == pytest.approx(alone)


def test_one_callback_serves_a_sweep_of_fits(dm, tmp_path):
    callback = MetadataCacheCallback(str(tmp_path), switch_at_epoch=1)
    trainer(max_epochs=2, callbacks=[callback]).fit(enhanced(dm), datamodule=dm)
    assert callback.switched
    model, recorder = enhanced(dm), Recorder()
    trainer(max_epochs=2, callbacks=[callback, recorder]).fit(model, datamodule=dm)
    assert [mode for _, mode in recorder.modes] == ["cached"] * 3 + ["dynamic"] * 3


def test_a_switch_that_cannot_happen_is_warned_about(dm, tmp_path):
    with pytest.warns(UserWarning, match=r"can never happen \(switch_at_epoch=3 >= max_epochs=2\)"):
        trainer(max_epochs=2, callbacks=[MetadataCacheCallback(str(tmp_path), switch_at_epoch=3)]).fit(
            enhanced(dm), datamodule=dm
        )
    callback = MetadataCacheCallback(str(tmp_path), switch_at_epoch=None, switch_at_step=5)
    with pytest.warns(UserWarning, match=r"switch_at_step=5 >= max_steps=4"):
        trainer(max_steps=4, callbacks=[callback]).fit(enhanced(dm), datamodule=dm)


def test_cache_files_hash_any_key_are_rebuilt_on_a_wrong_shape_and_follow_the_umask(dm, tmp_path, caplog):
    model = enhanced(dm)
    key = "backbone/with/slashes|" + "x" * 400  # too long for a file name, and with folders in it
    model.text_cache_key = lambda: key
    callback = MetadataCacheCallback(str(tmp_path / "cache"), switch_at_epoch=5)
    stale = tmp_path / "cache" / ".left-by-a-killed-write.pt.0.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh_temporary = tmp_path / "cache" / ".being-written.pt.1.tmp"
    fresh_temporary.write_bytes(b"partial")
    trainer(max_epochs=1, callbacks=[callback]).fit(model, datamodule=dm)
    files = sorted((tmp_path / "cache").glob("*.pt"))
    assert files == [callback.cache_path] and len(files[0].name) == len("0" * 32 + ".pt")
    assert torch.load(files[0], weights_only=True)["key"] == key
    assert not stale.exists() and fresh_temporary.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o666 & ~umask
    good = torch.load(files[0], weights_only=True)["embeddings"]
    torch.save({"key": key, "embeddings": torch.zeros(3, good.shape[1])}, files[0])  # right key, wrong shape
    with caplog.at_level(logging.WARNING):
        trainer(max_epochs=1, callbacks=[MetadataCacheCallback(str(tmp_path / "cache"), switch_at_epoch=5)]).fit(
            model, datamodule=dm
        )
    assert "corrupt or mismatched" in caplog.text
    assert torch.allclose(torch.load(files[0], weights_only=True)["embeddings"], good)


def test_without_a_switch_the_callback_is_a_shared_persistent_cache(dm, tmp_path, recwarn):
    first, recorder = MetadataCacheCallback(str(tmp_path), switch_at_epoch=None), Recorder()
    trainer(max_epochs=2, callbacks=[first, recorder]).fit(enhanced(dm), datamodule=dm)
    assert {mode for _, mode in recorder.modes} == {"cached"} and not first.switched
    assert not [w for w in recwarn if "can never happen" in str(w.message)]
    stamp = first.cache_path.stat().st_mtime_ns
    second = MetadataCacheCallback(str(tmp_path), switch_at_epoch=None)
    trainer(max_epochs=1, callbacks=[second]).fit(enhanced(dm, use_attention=False), datamodule=dm)
    assert second.cache_path == first.cache_path and first.cache_path.stat().st_mtime_ns == stamp


def test_a_dynamic_model_under_a_callback_without_a_switch_is_warned_about(dm, tmp_path):
    recorder = Recorder()
    callback = MetadataCacheCallback(str(tmp_path), switch_at_epoch=None)
    with pytest.warns(UserWarning, match="starts in dynamic text mode .* trains on cached text embeddings"):
        trainer(max_epochs=1, callbacks=[callback, recorder]).fit(enhanced(dm, use_cache=False), datamodule=dm)
    assert {mode for _, mode in recorder.modes} == {"cached"}  # what the warning says happened


def test_cache_build_seconds_count_every_catalog_pass_of_a_fit_and_restart_with_the_next(dm, tmp_path, monkeypatch):
    model = enhanced(dm)
    compute = model.compute_text_cache

    def slow_compute():  # a floor on each pass, so the sum over passes can be told from one pass
        time.sleep(0.2)
        return compute()

    monkeypatch.setattr(model, "compute_text_cache", slow_compute)
    callback = MetadataCacheCallback(str(tmp_path), switch_at_epoch=1)
    trainer(max_epochs=2, callbacks=[callback]).fit(model, datamodule=dm)
    assert callback.cache_build_seconds >= 0.4  # the initial cache and, after the switch, the tuned one
    # The same callback on a new fit of the same frozen model reads the initial file and never switches.
    callback.switch_at_epoch = None
    trainer(max_epochs=1, callbacks=[callback]).fit(enhanced(dm), datamodule=dm)
    assert callback.cache_build_seconds == 0.0
