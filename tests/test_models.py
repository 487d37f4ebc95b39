import lightning as L
import pytest
import torch

from lightning_rec.models import GMF, MFBPR, MLP, ItemPop, NeuMF

MODELS = {
    "GMF": lambda n, m: GMF(n, m, factor=8),
    "MLP": lambda n, m: MLP(n, m, factor=8, num_layers=2),
    "NeuMF": lambda n, m: NeuMF(n, m, factor=8, num_layers=2),
    "MFBPR": lambda n, m: MFBPR(n, m, factor=8),
    "ItemPop": lambda n, m: ItemPop(n, m),
}


def trainer(**kwargs) -> L.Trainer:
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(**{**defaults, **kwargs})


@pytest.mark.parametrize("name", MODELS)
def test_score_all_matches_pairwise_scores(name):
    model = MODELS[name](5, 7)
    users = torch.tensor([0, 3, 4])
    pairwise = model.score(users, torch.arange(7).expand(3, -1))
    assert torch.allclose(model.score_all(users), pairwise, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dataset", ["ml-1m", "ml-100k", "amazon-sequences", "amazon-reviews"])
def test_fast_dev_run_every_model_and_datamodule(name, dataset, small_datamodules):
    dm = small_datamodules[dataset]
    model = MODELS[name](dm.num_users, dm.num_items)
    trainer(fast_dev_run=True).fit(model, datamodule=dm)
    results = trainer(fast_dev_run=True).test(model, datamodule=dm, verbose=False)[0]
    assert {"test/sampled/HR@10", "test/full/NDCG@10"} <= results.keys()


def test_neumf_learns_the_planted_preferences(ml1m):
    L.seed_everything(0)
    model = NeuMF(ml1m.num_users, ml1m.num_items, factor=16, num_layers=2, learning_rate=5e-3)
    trainer(max_epochs=8, limit_val_batches=0).fit(model, datamodule=ml1m)
    results = trainer().test(model, datamodule=ml1m, verbose=False)[0]
    # Random ranking gives HR@10 = 0.10 of 100 candidates; the planted genres make ~0.7 reachable.
    assert results["test/sampled/HR@10"] > 0.5
    assert results["test/full/HR@10"] > 0.3


def test_item_pop_counts_training_positives_once(ml1m):
    model = ItemPop(ml1m.num_users, ml1m.num_items)
    trainer(max_epochs=2, limit_val_batches=0).fit(model, datamodule=ml1m)
    assert torch.equal(model.item_counts, ml1m.item_popularity.float())


def test_neumf_pretrain_reproduces_the_alpha_mixture():
    gmf, mlp = GMF(4, 6, factor=8), MLP(4, 6, factor=8, num_layers=2)
    neumf = NeuMF(4, 6, factor=8, num_layers=2)
    neumf.init_from_pretrained(gmf, mlp, alpha=0.3)
    users = torch.arange(4)
    # Before fine-tuning NeuMF's logit is alpha * GMF logit + (1 - alpha) * MLP logit.
    expected = 0.3 * gmf.score_all(users) + 0.7 * mlp.score_all(users)
    assert torch.allclose(neumf.score_all(users), expected, atol=1e-6)


def test_neumf_from_pretrained_checkpoints(tmp_path, ml1m):
    paths = []
    for model in (GMF(ml1m.num_users, ml1m.num_items, factor=8), MLP(ml1m.num_users, ml1m.num_items, 8, 2)):
        t = trainer(max_steps=2, limit_val_batches=0)
        t.fit(model, datamodule=ml1m)
        paths.append(tmp_path / f"{type(model).__name__}.ckpt")
        t.save_checkpoint(paths[-1])
    neumf = NeuMF.from_pretrained_checkpoints(*map(str, paths), alpha=0.5)
    assert neumf.hparams.factor == 8 and neumf.num_items == ml1m.num_items


@pytest.mark.parametrize("name", ["NeuMF", "ItemPop"])
def test_checkpoint_round_trip_outside_the_cli(name, tmp_path, ml1m):
    model = MODELS[name](ml1m.num_users, ml1m.num_items)
    t = trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0)
    t.fit(model, datamodule=ml1m)
    t.save_checkpoint(tmp_path / "model.ckpt")
    restored = type(model).load_from_checkpoint(tmp_path / "model.ckpt")
    users = torch.arange(5)
    assert torch.equal(restored.score_all(users), model.score_all(users))


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="num_users and num_items must be positive"):
        GMF(0, 5)
