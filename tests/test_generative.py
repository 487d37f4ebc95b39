"""M6Rec (text scoring + catalog-constrained generation, PEFT) and GENRE (LM features, multi-task)."""

import lightning as L
import pytest
import torch

from lightning_rec.data_modules import AmazonDataModule, MovieLens1MDataModule
from lightning_rec.models import GENRE, M6Rec
from lightning_rec.nn.causal_lm import generate_sharing_prompt, load_causal_lm, pad_left

TITLES = ["Lip Balm", "Lip Gloss", "Hair Oil", "Eye Cream", "Lip Balm"]  # one title twice


def tiny_m6rec(titles=TITLES, **kwargs) -> M6Rec:
    return M6Rec(4, len(titles), titles, backbone="tiny-gpt2", pretrained=False, **kwargs)


def fit(model, datamodule, epochs: int) -> dict:
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    return {**trainer.logged_metrics, **trainer.test(model, datamodule=datamodule, verbose=False)[0]}


@pytest.mark.parametrize("peft", ["none", "lora", "prompt"])
def test_m6rec_generation_always_lands_in_the_catalog(peft):
    torch.manual_seed(0)
    model = tiny_m6rec(peft=peft, num_virtual_tokens=4).eval()
    recommendations = model.generate_items(torch.tensor([[-1, 2], [0, 3]]), k=3, request="something for lips")
    for items, known in zip(recommendations, [{2}, {0, 3}]):
        assert items and len(items) == len(set(items))  # no duplicates
        assert all(0 <= item < len(TITLES) and item not in known for item in items)
    # A random generator still emits whole titles: both items titled "Lip Balm" come out together.
    both = {0, 4}
    assert all(both <= set(items) or not (both & set(items)) for items in model.generate_items(
        torch.tensor([[-1, 2]]), k=5))  # fmt: skip


def test_m6rec_peft_trains_only_the_adapters():
    for peft, marker in [("lora", "lora_"), ("prompt", "prompt_encoder")]:
        model = tiny_m6rec(peft=peft, num_virtual_tokens=4)
        trainable = [name for name, p in model.lm.named_parameters() if p.requires_grad]
        assert trainable and all(marker in name for name in trainable)


def test_m6rec_learns_the_users_color(color_shops):
    L.seed_everything(0)
    sequences, titles = color_shops
    dm = AmazonDataModule(sequence_file=sequences, titles_file=titles, history_length=5, batch_size=32,
                          num_negatives=8, eval_protocols=["full"])  # fmt: skip
    model = M6Rec(dm.num_users, dm.num_items, dm.item_titles, backbone="tiny-gpt2", pretrained=False, pooling="mean",
                  learning_rate=3e-3, generation_weight=1.0, top_k=(10,))  # fmt: skip
    metrics = fit(model, dm, epochs=12)  # 8 is on the edge: HR@10 0.5 on one thread
    assert metrics["train/generation_loss"] < 2.5 and metrics["train/scoring_loss"] < 2.0  # chance: ln 9 = 2.2
    assert metrics["test/full/HR@10"] > 0.5  # 10 of 35 unseen items at random: 0.29
    # Generation: the first generated title has the color of the held-out item.
    color = [title.split()[0] for title in dm.item_titles]
    batch = next(iter(dm.test_dataloader()))
    first = [items[0] for items in model.eval().generate_items(batch["history"], k=1)]
    same = sum(color[item] == color[target] for item, target in zip(first, batch["target_item"].tolist()))
    assert same / len(first) > 0.4  # chance: 0.25, i.e. 40 of 160 users (0.4 is 4 standard deviations above)


def test_m6rec_needs_titles_and_history(ml1m):
    with pytest.raises(ValueError, match="got 2 item titles for 3 items"):
        M6Rec(4, 3, ["a", "b"], backbone="tiny-gpt2", pretrained=False)
    with pytest.raises(ValueError, match="history_length"):
        tiny_m6rec().score_all(torch.tensor([0]))


def genre(dm, **kwargs) -> GENRE:
    return GENRE(dm.num_users, dm.num_items, dm.item_texts, dm.item_categories, dm.item_popularity.tolist(),
                 backbone="tiny-gpt2", pretrained=False, factor=16, **kwargs)  # fmt: skip


def test_genre_pair_features_are_the_documented_ones():
    model = GENRE(2, 3, ["red lipstick", "blue pen", "skin cream"], [["lips"], ["office", "lips"], []], [0, 3, 7],
                  backbone="tiny-gpt2", pretrained=False, factor=4)  # fmt: skip
    history = torch.tensor([[-1, 0]])  # the user has item 0 (category "lips")
    with torch.no_grad():
        features = model.pair_features(torch.tensor([0]), torch.tensor([[0, 1, 2]]), history)[0]
    cosine, category_match, log_popularity = features[:, -3], features[:, -2], features[:, -1]
    assert cosine[0] == pytest.approx(1.0, abs=1e-5)
    assert category_match.tolist() == [1.0, 0.5, 0.0]  # share of the item's categories the user likes
    assert log_popularity.tolist() == pytest.approx(torch.log1p(torch.tensor([0.0, 3.0, 7.0])).tolist())
    probability = model.click_probability(torch.tensor([0]), torch.tensor([[0, 1, 2]]), history)
    assert torch.allclose(probability, torch.sigmoid(model.click_head(features).squeeze(-1)))
    with torch.no_grad():  # the all-items shortcut gives the same logits as the feature rows
        assert torch.allclose(model.score_all(torch.tensor([0]), history), model.score(torch.tensor([0]),
                              torch.tensor([[0, 1, 2]]), history), atol=1e-5)  # fmt: skip


def test_genre_multi_task_learns_planted_genres_and_ratings():
    L.seed_everything(0)
    dm = MovieLens1MDataModule(history_length=10, batch_size=128, num_negatives=4, eval_protocols=["sampled"])
    model = genre(dm, rating_weight=0.5, category_weight=0.5, learning_rate=1e-2)
    metrics = fit(model, dm, epochs=4)
    assert {"train/loss_click", "train/loss_rating", "train/loss_category"} <= set(metrics)
    assert metrics["train/loss_rating"] < 1.0  # predicting the mean rating (3.6) leaves about 1.4
    assert metrics["test/sampled/HR@10"] > 0.55  # chance: 0.10


def test_genre_rating_task_needs_ratings(color_shops):
    sequences, titles = color_shops  # a sequence file has no ratings
    dm = AmazonDataModule(sequence_file=sequences, titles_file=titles, history_length=5, batch_size=32)
    dm.setup("fit")
    model = genre(dm, rating_weight=1.0)
    with pytest.raises(ValueError, match="no ratings"):
        model.training_step(next(iter(dm.train_dataloader())), 0)
    with pytest.raises(ValueError, match="task weights"):
        genre(dm, click_weight=0.0)


@pytest.mark.parametrize("backbone", ["tiny-gpt2", "lora"])
@pytest.mark.parametrize("decoding", ["beam", "sample"])
def test_generation_sharing_the_prompt_equals_plain_generate(backbone, decoding):
    torch.manual_seed(0)
    model = load_causal_lm("tiny-gpt2", pretrained=False, peft="lora" if backbone == "lora" else "none").eval()
    for parameter in model.parameters():  # LoRA's B starts at zero: make the adapters matter
        parameter.data.normal_(0, 0.5) if parameter.requires_grad else None
    input_ids, attention_mask = pad_left([[40, 588, 257, 2266, 30, 11], [1001, 2002, 3003]], pad_id=50256)
    options = dict(num_return_sequences=4, max_new_tokens=5, pad_token_id=50256, eos_token_id=50256)
    options.update(num_beams=4, do_sample=False) if decoding == "beam" else options.update(do_sample=True, top_p=0.9)
    torch.manual_seed(1)
    shared = generate_sharing_prompt(model, input_ids, attention_mask, **options)
    torch.manual_seed(1)
    plain = model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
    assert torch.equal(shared, plain)
