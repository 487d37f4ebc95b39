import copy

import lightning as L
import pytest
import torch

from lightning_rec.data_modules import MovieLens1MDataModule
from lightning_rec.models import FMBPR, GMF, MFBPR, MLP, NeuMF, SASRec
from lightning_rec.nn.optim import CatchUpSparseAdam, SparseDenseAdam


def fit(model, dm, tmp_path, epochs: int = 4, ckpt_path=None, **trainer_kwargs) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0, **trainer_kwargs)  # fmt: skip
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return trainer


def test_sparse_neumf_learns_the_embedded_pattern_like_dense_adam(tmp_path):
    dm = MovieLens1MDataModule(batch_size=256, eval_protocols=["sampled"], prepared_dir=None)
    results = {}
    for sparse in (False, True):
        L.seed_everything(0)
        model = NeuMF(dm.num_users, dm.num_items, factor=8, num_layers=2, learning_rate=0.005, sparse_gradients=sparse)
        trainer = fit(model, dm, tmp_path / str(sparse), limit_val_batches=0)
        assert isinstance(trainer.optimizers[0], SparseDenseAdam) == sparse
        if sparse:  # every row caught up when training ended, as dense Adam would have left it
            catch_up = trainer.optimizers[0].optimizers[-1]
            for state in catch_up.state.values():
                assert bool((state["row_step"] == state["step"]).all())
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


@pytest.mark.parametrize("name", ["MF-BPR", "FM-BPR", "SASRec"])
def test_a_sparse_step_moves_only_the_rows_the_batch_looked_up(name):
    torch.manual_seed(0)
    if name == "SASRec":
        model = SASRec(3, 50, dim=8, max_length=4, num_layers=1, loss="sampled_softmax", num_negatives=4,
                       sparse_gradients=True)  # fmt: skip
        table = model.encoder.item_embedding.weight
        batch = {"user": torch.tensor([0, 1]), "sequence_items": torch.tensor([[-1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])}
        loss = model.training_loss(batch)
    else:
        if name == "MF-BPR":
            model = MFBPR(3, 50, factor=8, sparse_gradients=True)
        else:
            model = FMBPR(3, 50, [["a"] if i % 2 else ["b", "c"] for i in range(50)], factor=8, sparse_gradients=True)
        table = model.item_factors.weight if name == "FM-BPR" else model.item_embedding.weight
        scores = model.score(torch.tensor([0, 1]), torch.tensor([[2, 3], [4, 5]]))
        loss = -torch.nn.functional.logsigmoid(scores[:, 0] - scores[:, 1]).mean()
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, SparseDenseAdam)
    before = table.detach().clone()
    loss.backward()
    assert table.grad.is_sparse
    optimizer.step()
    moved = set(torch.nonzero((table != before).any(1)).squeeze(1).tolist())
    if name == "SASRec":  # the sequences' items plus at most the step's 4 shared negatives
        assert set(range(2, 11)) <= moved and len(moved - set(range(2, 11))) <= 4
    else:
        assert moved == {2, 3, 4, 5}


def test_sparse_sasrec_refuses_full_cross_entropy():
    with pytest.raises(ValueError, match="sparse_gradients=True pays only with loss='sampled_softmax'"):
        SASRec(3, 10, loss="ce", sparse_gradients=True)


def test_bias_checkpoints_from_before_the_bias_tables_still_load():
    model = FMBPR(2, 3, [["a"], [], ["a", "b"]], factor=4)
    old = {k.removesuffix(".weight") if "bias" in k else k: v.squeeze(1) if "bias" in k else v
           for k, v in model.state_dict().items()}  # fmt: skip
    old["item_bias"] = torch.tensor([1.0, 2.0, 3.0])
    model.load_state_dict(old)
    assert model.item_bias.weight.squeeze(1).tolist() == [1.0, 2.0, 3.0]
    mf = MFBPR(2, 3, factor=4)
    mf.load_state_dict({**{k: v for k, v in mf.state_dict().items() if "bias" not in k}, "item_bias": torch.ones(3)})
    assert mf.item_bias.weight.sum() == 3


def test_a_checkpoint_whose_adam_group_held_frozen_parameters_still_resumes(tmp_path):
    # Before Adam skipped frozen parameters, its one group listed every parameter (a text model's frozen backbone
    # too). Such a checkpoint must resume exactly as one saved by the current version.
    dm = MovieLens1MDataModule(batch_size=512, eval_protocols=["sampled"], prepared_dir=None)

    def model():
        L.seed_everything(0)
        gmf = GMF(dm.num_users, dm.num_items, factor=4)
        gmf.branch.user_embedding.weight.requires_grad_(False)  # frozen, as a text model's backbone is
        return gmf

    first = fit(model(), dm, tmp_path / "first", epochs=1, limit_val_batches=0)
    first.save_checkpoint(tmp_path / "new.ckpt")
    checkpoint = torch.load(tmp_path / "new.ckpt", weights_only=False)
    parameters = list(model().parameters())
    trainable = [i for i, p in enumerate(parameters) if p.requires_grad]
    optimizer = checkpoint["optimizer_states"][0]
    optimizer["state"] = {trainable[key]: value for key, value in optimizer["state"].items()}
    optimizer["param_groups"][0]["params"] = list(range(len(parameters)))
    torch.save(checkpoint, tmp_path / "old.ckpt")
    resumed = {}
    for name in ("new", "old"):
        resumed[name] = model()
        fit(resumed[name], dm, tmp_path / name, epochs=2, limit_val_batches=0, ckpt_path=tmp_path / f"{name}.ckpt")
    for key, value in resumed["new"].state_dict().items():
        assert torch.equal(value, resumed["old"].state_dict()[key]), key


def test_catch_up_sparse_adam_follows_dense_adam_where_lazy_adam_does_not():
    torch.manual_seed(0)
    start = torch.randn(6, 3)
    tables = {kind: torch.nn.Embedding(6, 3, sparse=kind != "dense") for kind in ("dense", "catch-up", "lazy")}
    betas = (0.9, 0.99)
    optimizers = {
        "dense": torch.optim.Adam(tables["dense"].parameters(), lr=0.01, betas=betas),
        "catch-up": CatchUpSparseAdam(tables["catch-up"].parameters(), lr=0.01, betas=betas),
        "lazy": torch.optim.SparseAdam(tables["lazy"].parameters(), lr=0.01, betas=betas),
    }
    for table in tables.values():
        table.weight.data.copy_(start)
    generator = torch.Generator().manual_seed(1)
    for step in range(1200):
        # 600 steps that look up every row (the bias corrections settle), then rows looked up now and then.
        rows = torch.arange(6) if step < 600 else torch.nonzero(torch.rand(6, generator=generator) < 0.2).squeeze(1)
        target = torch.randn(len(rows), 3, generator=generator) + torch.arange(3.0)
        for kind, table in tables.items():
            optimizers[kind].zero_grad()
            ((table(rows) - target) ** 2).sum().backward()
            optimizers[kind].step()
    optimizers["catch-up"].flush()
    dense = tables["dense"].weight.detach()
    catch_up_gap = (tables["catch-up"].weight.detach() - dense).abs().max()
    lazy_gap = (tables["lazy"].weight.detach() - dense).abs().max()
    # Not zero: a row's gradient is taken before it catches up (see the class).
    assert catch_up_gap < 5e-3 and catch_up_gap < lazy_gap / 20


def test_a_lazy_adam_state_resumes_under_catch_up_adam():
    # A checkpoint from before catch-up Adam was the default holds lazy Adam's state (no per-row steps): resuming
    # it treats every row as up to date, so the next step equals the one lazy Adam would have taken.
    torch.manual_seed(0)
    tables = [torch.nn.Embedding(6, 3, sparse=True) for _ in range(2)]
    tables[1].load_state_dict(tables[0].state_dict())
    lazy = SparseDenseAdam([], tables[0].parameters(), lr=0.1, catch_up=False)
    for rows in ([0, 1, 2], [1, 3], [4]):
        lazy.zero_grad()
        tables[0](torch.tensor(rows)).pow(2).sum().backward()
        lazy.step()
    tables[1].load_state_dict(tables[0].state_dict())
    resumed = SparseDenseAdam([], tables[1].parameters(), lr=0.1)
    resumed.load_state_dict(copy.deepcopy(lazy.state_dict()))  # as from a file: no moment tensor shared
    for table, optimizer in zip(tables, (lazy, resumed)):
        optimizer.zero_grad()
        table(torch.tensor([1, 5])).pow(2).sum().backward()
        optimizer.step()
    # Equal up to where the two place eps (lazy Adam adds it before the bias correction).
    assert torch.allclose(tables[1].weight, tables[0].weight, atol=1e-6)
    resumed.flush()  # every row was up to date at the resumed step; only the steps since then drift
    assert torch.allclose(tables[1].weight[[1, 5]], tables[0].weight[[1, 5]], atol=1e-6)
