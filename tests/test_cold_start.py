"""The cold-start protocol: held-out items, their test, and what models give items they never trained on."""

import lightning as L
import pytest
import torch

from lightning_rec.data.parsers import parse_movielens_1m
from lightning_rec.data.synthetic import EMBEDDED_DIR
from lightning_rec.data_modules import MovieLens1MDataModule
from lightning_rec.models import BERT4Rec, ContentRec, NeuMF, SASRec


def cold_datamodule(**kwargs) -> MovieLens1MDataModule:
    kwargs = {"batch_size": 256, "eval_batch_size": 128, "cold_item_fraction": 0.2, "seed": 3, **kwargs}
    return MovieLens1MDataModule(**kwargs)


@pytest.fixture(scope="module")
def raw():
    return parse_movielens_1m(EMBEDDED_DIR).interactions


def test_cold_items_leave_training_its_negatives_and_the_warm_rankings(raw):
    dm = cold_datamodule()
    data, warm = dm.data, dm.num_warm_items
    assert data.num_cold_items == round(0.2 * raw["item_id"].nunique())
    assert dm.num_items == warm + data.num_cold_items
    cold_ids = set(data.items["item_id"][warm:])
    # Every raw interaction with a cold item is a cold pair (embedded users all stay), none trains.
    assert len(data.cold_items) == int(raw["item_id"].isin(cold_ids).sum())
    assert int(data.train_items.max()) < warm and int(data.cold_items.min()) >= warm
    assert int(dm._train_columns(epoch=0)["negative_items"].max()) < warm
    for loader in (dm.val_dataloader(), dm.test_dataloader()):  # warm: candidates and ranking over warm items
        batch = next(iter(loader))
        assert int(batch["candidate_items"].max()) < warm
        assert bool(batch["seen_mask"][:, warm:].all())
    assert cold_datamodule().data.items["item_id"][warm:].tolist() == data.items["item_id"][warm:].tolist()
    assert set(cold_datamodule(seed=4).data.items["item_id"][warm:]) != cold_ids


@pytest.mark.parametrize("ranking", ["all", "cold"])
def test_the_cold_test_is_each_users_latest_cold_item(raw, ranking):
    dm = cold_datamodule(test_on="cold", cold_ranking=ranking, num_eval_negatives=20)
    data, warm = dm.data, dm.num_warm_items
    cold_raw = raw[raw["item_id"].isin(set(data.items["item_id"][warm:]))]
    latest = cold_raw.sort_values(["user_id", "order"], kind="stable").groupby("user_id").tail(1)
    expected = dict(zip(latest["user_id"].astype(str), latest["item_id"]))
    item_ids, user_ids = data.items["item_id"], data.user_ids
    tested = 0
    for batch in dm.test_dataloader():
        for row, (user, target) in enumerate(zip(batch["user"].tolist(), batch["target_item"].tolist())):
            assert item_ids[target] == expected[str(user_ids[user])]
            mine = data.cold_items[data.cold_users == user].tolist()
            seen = batch["seen_mask"][row]
            assert not seen[target] and all(seen[item] for item in mine if item != target)
            candidates = batch["candidate_items"][row]
            assert candidates[0] == target and not set(candidates[1:].tolist()) & set(mine)
            if ranking == "cold":
                assert bool(seen[:warm].all()) and int(candidates.min()) >= warm
            else:
                assert not bool(seen[:warm].all())
        tested += len(batch["user"])
    assert tested == len(expected)


def test_cold_options_are_checked():
    with pytest.raises(ValueError, match="cold_item_fraction > 0"):
        MovieLens1MDataModule(test_on="cold")
    with pytest.raises(ValueError, match=r"cold_item_fraction must be in \[0, 1\)"):
        MovieLens1MDataModule(cold_item_fraction=1.5)
    with pytest.raises(ValueError, match="cold_ranking"):
        MovieLens1MDataModule(cold_item_fraction=0.2, cold_ranking="warm")
    # 48 cold items in the embedded data: 99 distinct cold negatives per user cannot exist.
    with pytest.raises(ValueError, match="fewer than num_eval_negatives=99 cold items"):
        next(iter(cold_datamodule(test_on="cold", cold_ranking="cold").test_dataloader()))


def test_id_models_give_cold_items_the_mean_trained_vector_and_text_ranks_them():
    L.seed_everything(0)
    dm = cold_datamodule(test_on="cold", cold_ranking="cold", history_length=5, num_eval_negatives=20)
    warm = dm.num_warm_items
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    neumf = NeuMF(dm.num_users, dm.num_items, factor=8, learning_rate=5e-3)
    untrained = neumf.gmf.item_embedding.weight[warm:].clone()
    trainer.fit(neumf, datamodule=dm)
    assert torch.equal(neumf.gmf.item_embedding.weight[warm:], untrained)  # no gradient ever reached them
    id_only = trainer.test(neumf, datamodule=dm, verbose=False)[0]
    for table in neumf.item_id_parameters():
        assert torch.allclose(table[warm:], table[:warm].mean(0).expand_as(table[warm:]))
    # One vector for every cold item: all tie, and ties go against the target.
    assert id_only["test/full/HR@10"] == 0.0

    text = ContentRec(dm.num_users, dm.num_items, dm.item_texts, backbone="tiny-gpt2", pretrained=False, factor=32,
                      learning_rate=1e-2)  # fmt: skip
    trainer = L.Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(text, datamodule=dm)
    metrics = trainer.test(text, datamodule=dm, verbose=False)[0]
    chance = 10 / dm.data.num_cold_items  # HR@10 of a random order of the cold items (fewer after masking)
    assert metrics["test/full/HR@10"] > 2 * chance


def test_the_command_line_fits_on_warm_items_and_tests_on_cold_ones(tmp_path, monkeypatch):
    from lightning_rec.cli import main

    monkeypatch.chdir(tmp_path)
    cold = ["--data.init_args.cold_item_fraction", "0.2", "--data.init_args.num_eval_negatives", "20"]
    quiet = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    cli = main(["fit", "--config", "neumf.yaml", *cold, *quiet])
    checkpoint = cli.trainer.checkpoint_callback.best_model_path
    test = main(["test", "--config", "neumf.yaml", *cold, *quiet, "--ckpt_path", checkpoint,
                 "--data.init_args.test_on", "cold", "--data.init_args.cold_ranking", "cold"])  # fmt: skip
    warm = test.datamodule.num_warm_items
    assert warm < test.model.num_items
    # The checkpoint's cold rows were never trained; the test gave them the trained rows' mean.
    table = test.model.gmf.item_embedding.weight
    assert torch.allclose(table[warm:], table[:warm].mean(0).expand_as(table[warm:]))
    assert test.trainer.callback_metrics["test/full/HR@10"] == 0.0  # all cold items tie for an ID model


def test_predict_never_returns_a_cold_item_the_user_has():
    dm = cold_datamodule()
    data = dm.data
    batch = next(iter(dm.predict_dataloader()))
    for row, user in enumerate(batch["user"].tolist()):
        mine = data.cold_items[data.cold_users == user]
        assert bool(batch["seen_mask"][row, mine].all())


@pytest.mark.parametrize(
    ("model_class", "options"),
    [(SASRec, {"loss": "ce"}), (SASRec, {"loss": "sampled_softmax", "shared_negatives": False}), (BERT4Rec, {})],
)
def test_full_and_sampled_softmax_never_train_a_held_out_item(model_class, options):
    # A held-out item in the training softmax would be pushed down as a negative: a text model then learns
    # to bury exactly the new items it is meant to surface.
    L.seed_everything(0)
    dm = cold_datamodule(train_mode="sequences", history_length=10, batch_size=64)
    model = model_class(dm.num_users, dm.num_items, dim=8, max_length=10, num_layers=1, **options)
    table = model.encoder.item_embedding.weight
    before = table.detach().clone()
    trainer = L.Trainer(max_steps=3, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    warm = dm.num_warm_items
    assert not torch.equal(table[:warm], before[:warm])
    assert torch.equal(table[warm : dm.num_items], before[warm : dm.num_items])
