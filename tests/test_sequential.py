"""Sequence models: the shared sequence batches, planted next-item patterns, mid-epoch resume."""

from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_rec.data_modules import AmazonDataModule
from lightning_rec.models import FMBPR, BERT4Rec, ContentRec, SASRec, YouTubeDNN


def write_successor_sequences(directory: Path, num_users: int = 240, num_items: int = 40, length: int = 9):
    """Every user walks the catalog in steps of +1 from a random start: the next item is planted."""
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(num_items, (num_users,), generator=generator).tolist()
    lines = [f"U{u} " + " ".join(f"I{(s + k) % num_items}" for k in range(length)) for u, s in enumerate(starts)]
    (directory / "seq.txt").write_text("\n".join(lines) + "\n")
    titles = "asin\ttitle\n" + "".join(f"I{i}\tItem number {i}\n" for i in range(num_items))
    (directory / "titles.tsv").write_text(titles)
    return str(directory / "seq.txt"), str(directory / "titles.tsv")


def sequence_datamodule(tmp_path: Path, **kwargs) -> AmazonDataModule:
    sequences, titles = write_successor_sequences(tmp_path / "walks")
    options = {"history_length": 6, "train_mode": "sequences", "batch_size": 32, "num_eval_negatives": 10}
    return AmazonDataModule(sequence_file=sequences, titles_file=titles, name="walks", **{**options, **kwargs})


def fit_test(model, datamodule, epochs: int, **trainer_kwargs) -> dict:
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, **trainer_kwargs)  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    return trainer.test(model, datamodule=datamodule, verbose=False)[0]


def test_sequence_batches_are_latest_items_with_one_negative_per_position(tmp_path):
    dm = sequence_datamodule(tmp_path, history_length=3)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"user", "sequence_items", "negative_items"}
    assert batch["sequence_items"].shape == (32, 4) and batch["negative_items"].shape == (32, 3)
    items = dm.item_table["item_id"].tolist()
    for user, row in zip(batch["user"][:5], batch["sequence_items"][:5]):
        # 9 items per user: 7 in train, so the latest 4 training items are steps 3..6 of the walk.
        walk = [int(items[i][1:]) for i in row.tolist()]
        assert [(b - a) % 40 for a, b in zip(walk, walk[1:])] == [1, 1, 1]
        train_items = set(dm.data.train_items[dm.data.train_indptr[user] : dm.data.train_indptr[user + 1]].tolist())
        assert not train_items & set(batch["negative_items"][batch["user"] == user].flatten().tolist())


def test_sequences_mode_needs_a_length():
    with pytest.raises(ValueError, match="history_length > 0"):
        AmazonDataModule(sequence_file="a", titles_file="b", train_mode="sequences")


@pytest.mark.parametrize(
    ("loss", "shared_negatives"), [("ce", True), ("bce", True), ("sampled_softmax", True), ("sampled_softmax", False)]
)
def test_sasrec_learns_the_planted_successor(tmp_path, loss, shared_negatives):
    L.seed_everything(0)
    dm = sequence_datamodule(tmp_path)
    model = SASRec(dm.num_users, dm.num_items, dim=32, max_length=6, dropout=0.0, loss=loss, num_negatives=8,
                   shared_negatives=shared_negatives, learning_rate=5e-3)  # fmt: skip
    metrics = fit_test(model, dm, epochs=25 if loss == "ce" else 40)
    assert metrics["test/full/HR@10"] > 0.9  # chance: 10 of ~33 unseen items


def test_bert4rec_learns_the_planted_successor(tmp_path):
    L.seed_everything(0)
    dm = sequence_datamodule(tmp_path)
    model = BERT4Rec(dm.num_users, dm.num_items, dim=32, max_length=6, dropout=0.0, learning_rate=5e-3)
    metrics = fit_test(model, dm, epochs=40)
    assert metrics["test/full/HR@10"] > 0.8


def test_sequence_models_explain_missing_inputs(tmp_path):
    model = SASRec(3, 5, dim=8, max_length=3)
    with pytest.raises(ValueError, match="history_length > 0"):
        model.score_all(torch.tensor([0]))
    with pytest.raises(ValueError, match="train_mode='sequences'"):
        model.training_loss({"user": torch.tensor([0]), "item": torch.tensor([1])})


def test_sasrec_resumed_mid_epoch_matches_the_uninterrupted_run(tmp_path):
    def run(**fit_kwargs) -> tuple[dict, L.Trainer]:
        L.seed_everything(1)
        dm = sequence_datamodule(tmp_path)  # 240 users / 32 = 8 batches per epoch
        model = SASRec(dm.num_users, dm.num_items, dim=16, max_length=6, dropout=0.3, learning_rate=5e-3)
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=11, save_top_k=-1)
        trainer = L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, deterministic=True, callbacks=[checkpoint])  # fmt: skip
        trainer.fit(model, datamodule=dm, **fit_kwargs)
        return trainer.test(model, datamodule=dm, verbose=False)[0], trainer

    uninterrupted, trainer = run()
    assert trainer.global_step == 24
    # Step 11 is the 4th batch of epoch 1: a resume from it must not replay that epoch's first batches.
    resumed, trainer = run(ckpt_path=str(tmp_path / "ckpt" / "epoch=1-step=11.ckpt"))
    assert trainer.global_step == 24
    for name in ("test/full/HR@10", "test/full/NDCG@10", "test/sampled/NDCG@10"):
        assert resumed[name] == pytest.approx(uninterrupted[name], abs=1e-6)


def test_youtube_dnn_learns_the_planted_successor(tmp_path):
    L.seed_everything(0)
    dm = sequence_datamodule(tmp_path, train_mode="pairs", history_length=3)
    model = YouTubeDNN(dm.num_users, dm.num_items, factor=32, hidden_dims=(64,), learning_rate=5e-3)
    metrics = fit_test(model, dm, epochs=30)
    assert metrics["test/full/HR@10"] > 0.8


def test_content_rec_learns_from_text_vectors_alone(tmp_path):
    L.seed_everything(0)
    dm = sequence_datamodule(tmp_path, train_mode="pairs", history_length=3)
    model = ContentRec(dm.num_users, dm.num_items, dm.item_texts, backbone="tiny-gpt2", pretrained=False,
                       factor=32, learning_rate=1e-2)  # fmt: skip
    assert not any(p.requires_grad for p in model.buffers())
    metrics = fit_test(model, dm, epochs=30)
    assert metrics["test/full/HR@10"] > 0.6  # chance: about 0.3


def test_fm_scores_equal_the_brute_force_factorization_machine():
    torch.manual_seed(0)
    categories = [["Comedy"], ["Drama", "War"], [], ["Comedy", "Drama", "War"]]
    model = FMBPR(num_users=2, num_items=4, item_categories=categories, factor=3)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter)
    names = model.category_names
    with torch.no_grad():  # the brute force is plain arithmetic on the parameters
        for user in range(2):
            for item in range(4):
                # Features as (bias, vector, value): user, item, then each category at 1/count.
                features = [(model.user_bias.weight[user, 0], model.user_factors.weight[user], 1.0),
                            (model.item_bias.weight[item, 0], model.item_factors.weight[item], 1.0)]  # fmt: skip
                for name in categories[item]:
                    k = names.index(name)
                    features.append(
                        (model.category_bias.weight[k, 0], model.category_factors.weight[k], 1 / len(categories[item]))
                    )
                expected = sum(b * x for b, _, x in features)
                for a in range(len(features)):
                    for b in range(a + 1, len(features)):
                        expected = expected + features[a][2] * features[b][2] * features[a][1] @ features[b][1]
                assert model.score_all(torch.tensor([user]))[0, item] == pytest.approx(float(expected), abs=1e-5)
                assert model.score(torch.tensor([user]), torch.tensor([[item]]))[0, 0] == pytest.approx(
                    float(expected), abs=1e-5
                )


def test_fm_bpr_learns_planted_genre_preferences(ml1m):
    L.seed_everything(0)
    model = FMBPR(ml1m.num_users, ml1m.num_items, ml1m.item_categories, factor=16, learning_rate=1e-2)
    metrics = fit_test(model, ml1m, epochs=3)
    assert metrics["test/sampled/HR@10"] > 0.55  # chance: 0.10; ItemPop: 0.05 on the embedded data
