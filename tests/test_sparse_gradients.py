import lightning as L
import pytest
import torch

from lightning_rec.data_modules import MovieLens1MDataModule
from lightning_rec.models import GMF, MLP, NeuMF
from lightning_rec.nn.optim import SparseDenseAdam


def fit(model, dm, tmp_path, epochs: int = 4, **trainer_kwargs) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0, **trainer_kwargs)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return trainer


def test_sparse_neumf_learns_the_embedded_pattern_like_dense_adam(tmp_path):
    dm = MovieLens1MDataModule(batch_size=256, eval_protocols=["sampled"], prepared_dir=None)
    results = {}
    for sparse in (False, True):
        L.seed_everything(0)
        model = NeuMF(dm.num_users, dm.num_items, factor=8, num_layers=2, learning_rate=0.005, sparse_gradients=sparse)
        trainer = fit(model, dm, tmp_path / str(sparse), limit_val_batches=0)
        assert isinstance(trainer.optimizers[0], SparseDenseAdam) == sparse
        assert model.gmf.item_embedding.weight.grad is None or model.gmf.item_embedding.weight.grad.is_sparse == sparse
        results[sparse] = trainer.test(model, datamodule=dm, verbose=False)[0]["test/sampled/HR@10"]
    assert results[True] > 0.3 and results[False] > 0.3  # chance: 0.1
    assert abs(results[True] - results[False]) < 0.1


def test_a_sparse_run_resumes_with_its_optimizer_state(tmp_path):
    dm = MovieLens1MDataModule(batch_size=512, eval_protocols=["sampled"], prepared_dir=None)

    def run(epochs, ckpt_path=None):
        L.seed_everything(1)
        model = GMF(dm.num_users, dm.num_items, factor=8, sparse_gradients=True)
        trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                            limit_val_batches=0, enable_model_summary=False)  # fmt: skip
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return model, trainer

    whole, _ = run(3)
    _, first = run(2)
    first.save_checkpoint(tmp_path / "two.ckpt")
    resumed, _ = run(3, ckpt_path=tmp_path / "two.ckpt")
    for name, value in whole.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[name], atol=1e-6), name


def test_sparse_gradients_refuse_weight_decay():
    model = MLP(4, 6, factor=4, num_layers=2, sparse_gradients=True, weight_decay=0.01)
    with pytest.raises(ValueError, match="sparse_gradients=True cannot take weight_decay"):
        model.configure_optimizers()
