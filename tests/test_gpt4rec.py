"""GPT4Rec: exact prompt, loss on target tokens only, retrieval/merge rules, a planted query pattern."""

import lightning as L
import pytest
import torch

from lightning_rec.data_modules import AmazonDataModule
from lightning_rec.models import GPT4Rec
from lightning_rec.retrieval import TitleIndex, fill_from, rank_merge


def tiny_gpt4rec(titles, **kwargs) -> GPT4Rec:
    options = dict(generator="tiny-gpt2", pretrained=False, num_queries=2, max_query_tokens=6, top_k=(5, 10))
    return GPT4Rec(titles, **{**options, **kwargs})


def test_prompt_is_exactly_the_papers():
    model = tiny_gpt4rec(["Lip Balm", "Hair Oil", "Eye Cream"])
    text = model.tokenizer.decode(model.prompt_ids([0, 1], target=2))
    assert text == (
        "Previously, the customer has bought: Lip Balm. Hair Oil. In the future, the customer wants to buy"
        " Eye Cream<|endoftext|>"
    )
    assert model.tokenizer.decode(model.prompt_ids([-1, 2])).endswith(
        "bought: Eye Cream. In the future, the customer wants to buy"
    )


def test_prompt_keeps_the_latest_max_history_items():
    model = tiny_gpt4rec([f"item {i}" for i in range(20)], max_history=3)
    assert model.tokenizer.decode(model.prompt_ids(list(range(10)))).count("item") == 3
    assert "item 9." in model.tokenizer.decode(model.prompt_ids(list(range(10))))


def test_loss_covers_only_the_target_title_and_end_of_text():
    model = tiny_gpt4rec(["Lip Balm", "Hair Oil", "Eye Cream"])
    input_ids, mask, labels = model.training_inputs(torch.tensor([[0, 1], [-1, 2]]), torch.tensor([2, 0]))
    assert model.tokenizer.decode(labels[0][labels[0] >= 0]) == " Eye Cream<|endoftext|>"
    assert model.tokenizer.decode(labels[1][labels[1] >= 0]) == " Lip Balm<|endoftext|>"
    assert bool((labels[mask == 0] == -100).all()) and bool((mask[:, -1] == 1).all())  # left-padded


def test_rank_merge_takes_k_over_m_per_query_then_fills():
    lists = [[1, 2, 3], [1, 4, 5, 6], [7]]
    # k=6, m=3: two new items from each list in beam order (item 1 once), then fill round-robin.
    assert rank_merge(lists, 6) == [1, 2, 4, 5, 7, 3]
    assert rank_merge(lists, 6, exclude={2, 4}) == [1, 3, 5, 6, 7]  # lists run dry: 5 items
    assert fill_from([1, 3], torch.tensor([3, 9, 2, 8]), 4, exclude={2}) == [1, 3, 9, 8]


def test_bm25_ignores_empty_titles_and_unknown_words(caplog):
    index = TitleIndex(["red vase", "", "blue vase"])
    assert "1 items have an empty title" in caplog.text
    vase, empty, unknown = index.search(["vase", "", "qqq"], k=5)
    assert sorted(vase) == [0, 2] and empty == [] and unknown == []


def test_generator_learns_to_ask_for_the_users_color(color_shops):
    L.seed_everything(0)
    sequences, titles = color_shops
    dm = AmazonDataModule(sequence_file=sequences, titles_file=titles, history_length=15, batch_size=32,
                          num_negatives=1, eval_protocols=["full"])  # fmt: skip
    model = tiny_gpt4rec(dm.item_titles, item_popularity=dm.item_popularity.tolist(), item_categories=[
        [title.split()[0]] for title in dm.item_titles], learning_rate=3e-3, warmup_steps=5,
        bm25_k1_grid=(1.2,), bm25_b_grid=(0.75,))  # fmt: skip
    trainer = L.Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    # 10 items per color, 5 already bought: a query with the right color finds the target in the top 10.
    assert metrics["test/Recall@10"] > 0.8  # a color-blind list: about 0.25
    assert metrics["test/Coverage@10"] > 0.8
    queries = model.generate_queries(torch.tensor([[dm.item_titles.index("amber vase")]]))[0]
    assert "amber" in queries[0]


def test_sampled_queries_follow_the_seed_and_unknown_decodings_are_rejected():
    model = tiny_gpt4rec(["Lip Balm", "Hair Oil", "Eye Cream"], query_decoding="sample", num_queries=3).eval()
    torch.manual_seed(0)
    first = model.generate_queries(torch.tensor([[0, 1], [-1, 2]]))
    torch.manual_seed(0)
    assert model.generate_queries(torch.tensor([[0, 1], [-1, 2]])) == first and [len(q) for q in first] == [3, 3]
    with pytest.raises(ValueError, match="query_decoding must be 'beam' or 'sample'"):
        tiny_gpt4rec(["Lip Balm"], query_decoding="greedy")
