import csv
import logging

import lightning as L
import pytest
import torch

from lightning_rec.callbacks import TopKPredictionWriter
from lightning_rec.data_modules import MovieLens1MDataModule, MovieLens100KDataModule
from lightning_rec.models import GMF, MFBPR, MLP, GPT2RecommenderEnhanced, ItemPop, NeuMF, SASRec
from lightning_rec.models.base import Recommender
from tests.conftest import write_ml100k

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
def test_score_unseen_masks_seen_items_and_pairwise_scorers_skip_items_every_user_has_seen(name):
    model = MODELS[name](5, 7)
    users = torch.tensor([0, 3, 4])
    seen = torch.zeros(3, 7, dtype=torch.bool)
    seen[:, 4:] = True  # items 4-6 seen by everyone, as the warm items of a cold-only ranking
    seen[1, 0] = True
    scored_items = []
    score = model.score
    model.score = lambda u, items, history=None: scored_items.append(items.shape[1]) or score(u, items, history)
    unseen = model.score_unseen(users, seen)
    assert torch.allclose(unseen, model.score_all(users).float().masked_fill(seen, float("-inf")), atol=1e-6)
    if type(model).score_all is Recommender.score_all:  # pairwise: items 4-6 never scored for the ranking
        assert scored_items[0] == 4
    assert torch.isinf(model.score_unseen(users, torch.ones(3, 7, dtype=torch.bool))).all()  # all seen: no error


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


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: NeuMF(5, 7, factor=0), "NeuMF: factor must be an integer >= 1, got 0"),
        (lambda: MLP(5, 7, num_layers=0), "MLP: num_layers must be an integer >= 1"),
        (lambda: SASRec(5, 7, dropout=1.5), r"SASRec: dropout must be in \[0, 1\)"),
        (lambda: GMF(5, 7, learning_rate=-1e-3), "GMF: learning_rate must be > 0"),
        (lambda: NeuMF(5, 7, top_k=[0, 10]), "top_k must be"),
        (lambda: MovieLens1MDataModule(history_length=-3), "history_length must be an integer >= 0, got -3"),
        (lambda: MovieLens1MDataModule(batch_size=0), "batch_size must be an integer >= 1"),
    ],
)
def test_unusable_arguments_are_rejected_by_name(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_model_built_for_other_data_fails_at_setup_naming_the_size(ml1m):
    with pytest.raises(ValueError, match=r"NeuMF was built with num_users=5 but the data module has num_users=400"):
        trainer(fast_dev_run=True).fit(NeuMF(5, ml1m.num_items, factor=4), datamodule=ml1m)


def test_predict_never_returns_an_item_the_user_has(ml1m, tmp_path, caplog):
    # K is the whole catalog: each user can get only the items they do not have.
    model = MFBPR(ml1m.num_users, ml1m.num_items, factor=4, predict_top_k=ml1m.num_items)
    out = tmp_path / "top.csv"
    with caplog.at_level(logging.INFO):
        trainer(callbacks=[TopKPredictionWriter(str(out))]).predict(model, datamodule=ml1m, return_predictions=False)
    rows = list(csv.DictReader(open(out)))
    users, items = ml1m.data.history("predict")
    item_ids = ml1m.item_table["item_id"].tolist()
    known = {(ml1m.user_ids[u], item_ids[i]) for u, i in zip(users.tolist(), items.tolist())}
    assert not any((row["user_id"], row["item_id"]) in known for row in rows)
    assert all(float(row["score"]) > float("-inf") for row in rows)
    assert len(rows) == ml1m.num_users * ml1m.num_items - len(known)
    assert f"{len(known)} top-K slots left empty" in caplog.text


def test_users_whose_held_out_item_never_occurs_in_training_count_as_misses(tmp_path):
    directory = write_ml100k(tmp_path / "ml-100k")  # users 1-12 on items 1-15
    with open(directory / "u.data", "a") as f:  # user 13's last item, 16, is nobody else's
        f.writelines(f"13\t{item}\t3\t{890000000 + step}\n" for step, item in enumerate([1, 2, 3, 16]))
    with open(directory / "u.item", "a", encoding="ISO-8859-1") as f:
        f.write("16|Movie 16 (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 18 + ["1"]) + "\n")
    dm = MovieLens100KDataModule(str(directory), num_eval_negatives=5, eval_protocols=["full"])
    model = ItemPop(dm.num_users, dm.num_items, top_k=[3])
    model.item_counts.copy_(torch.randperm(dm.num_items, generator=torch.Generator().manual_seed(0)).float())
    results = trainer().test(model, datamodule=dm, verbose=False)[0]
    batch = next(iter(dm.test_dataloader()))
    assert len(batch["user"]) == 13 and int((batch["target_item"] == -1).sum()) == 1
    # Known answer: hits of the 12 rankable users by hand, divided by all 13 users.
    rankable = batch["target_item"] >= 0
    scores = model.score_all(batch["user"][rankable]).float().masked_fill(batch["seen_mask"][rankable], float("-inf"))
    top = scores.topk(3, dim=1).indices
    hits = (top == batch["target_item"][rankable].unsqueeze(1)).any(1).sum().item()
    assert results["test/full/HR@3"] == pytest.approx(hits / 13)


def test_optional_limits_are_checked_by_name_too():
    with pytest.raises(ValueError, match="dynamic_items_per_step must be an integer >= 1 or None, got 0"):
        GPT2RecommenderEnhanced(2, 3, ["a", "b", "c"], backbone="tiny-gpt2", pretrained=False, dynamic_items_per_step=0)
