"""TextSASRec and the fast sequence path: exactness of the packed encoder, sampled softmax, a pattern only
text reveals, the cached -> dynamic switch, exact resume, and items added after training."""

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from lightning_rec.callbacks import MetadataCacheCallback
from lightning_rec.data_modules import AmazonDataModule
from lightning_rec.models import SASRec, TextSASRec
from lightning_rec.models.text_sasrec import principal_components
from lightning_rec.nn.losses import sampled_softmax
from lightning_rec.nn.sequence import ItemSequenceEncoder, trim_left_padding

COLORS = ("red", "blue")


@pytest.mark.parametrize("feedforward_dim", [None, 16])
def test_packed_encoder_equals_torchs_transformer_layer(feedforward_dim):
    torch.manual_seed(0)
    encoder = ItemSequenceEncoder(num_items=20, dim=16, max_length=6, num_layers=2, num_heads=2, dropout=0.1,
                                  feedforward_dim=feedforward_dim).eval()  # fmt: skip
    width = feedforward_dim or 64
    reference = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 2, width, dropout=0.1, activation="gelu", batch_first=True, norm_first=True),
        num_layers=2, enable_nested_tensor=False,
    ).eval()  # fmt: skip
    # The same parameter names: torch's layer loads our blocks' weights as they are.
    reference.load_state_dict({f"layers.{k}": v for k, v in encoder.layers.state_dict().items()})
    items = torch.tensor([[-1, -1, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7], [-1, -1, -1, -1, -1, 9]])
    padding = items < 0
    inputs = encoder.embed(items) + encoder.position_embedding(torch.arange(6))
    causal = torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)
    blocked = (padding.unsqueeze(1) | causal) & ~torch.eye(6, dtype=torch.bool)
    mask = torch.zeros(blocked.shape).masked_fill(blocked, float("-inf")).repeat_interleave(2, dim=0)
    expected = encoder.final_norm(reference(inputs, mask=mask))
    with torch.no_grad():
        actual = encoder(items)
    assert torch.allclose(actual[~padding], expected[~padding], atol=1e-5)


def test_the_sasrec_layout_is_the_sasrec_authors_block():
    """RecTools' ``SASRecTransformerLayer``, written out with torch's attention: the normalised query attends
    over the raw inputs, residuals add the normalised inputs, the feed-forward is ReLU."""
    torch.manual_seed(0)
    encoder = ItemSequenceEncoder(num_items=20, dim=16, max_length=5, num_layers=2, num_heads=2, dropout=0.1,
                                  feedforward_dim=16, block="sasrec").eval()  # fmt: skip
    items = torch.tensor([[-1, -1, 3, 4, 5], [1, 2, 3, 4, 7]])
    padding = items < 0
    blocked = (padding.unsqueeze(1) | torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)) & ~torch.eye(5, dtype=bool)
    mask = torch.zeros(blocked.shape).masked_fill(blocked, float("-inf")).repeat_interleave(2, dim=0)
    hidden = encoder.embed(items) + encoder.position_embedding(torch.arange(5))
    with torch.no_grad():
        for block in encoder.layers:
            query = block.norm1(hidden)
            hidden = query + block.self_attn(query, hidden, hidden, attn_mask=mask, need_weights=False)[0]
            normed = block.norm2(hidden)
            hidden = normed + block.linear2(torch.relu(block.linear1(normed)))
        expected = encoder.final_norm(hidden)
        actual = encoder(items)
    assert torch.allclose(actual[~padding], expected[~padding], atol=1e-5)
    pre_norm = ItemSequenceEncoder(num_items=20, dim=16, max_length=5, num_layers=2, num_heads=2, feedforward_dim=16)
    pre_norm.load_state_dict(encoder.state_dict())  # the same parameters, wired differently
    with torch.no_grad():
        assert not torch.allclose(pre_norm.eval()(items)[~padding], actual[~padding], atol=1e-3)


def test_rectools_recipe_reaches_sasrec_through_its_arguments():
    torch.manual_seed(0)
    model = SASRec(2, 5000, dim=32, max_length=4, init="xavier", adam_betas=(0.9, 0.98), block="sasrec")
    # Xavier-normal: std sqrt(2 / (fan_in + fan_out)), against 0.02 by default.
    table = model.encoder.item_embedding.weight
    assert float(table.std()) == pytest.approx((2 / (5002 + 32)) ** 0.5, rel=0.05)
    assert float(model.encoder.position_embedding.weight.std()) > 0.1
    assert model.configure_optimizers().param_groups[0]["betas"] == (0.9, 0.98)
    sparse = SASRec(2, 50, dim=8, max_length=4, loss="sampled_softmax", adam_betas=(0.8, 0.9), sparse_gradients=True)
    assert {group["betas"] for group in sparse.configure_optimizers().param_groups} == {(0.8, 0.9)}
    with pytest.raises(ValueError, match="layout must be 'pre_norm' or 'sasrec'"):
        SASRec(2, 5, block="post_norm")
    with pytest.raises(ValueError, match="init must be 'normal' or 'xavier'"):
        SASRec(2, 5, init="uniform")


def test_trimming_left_padding_leaves_the_scores_unchanged():
    torch.manual_seed(0)
    model = SASRec(2, 12, dim=16, max_length=8).eval()
    history = torch.tensor([[-1, -1, -1, -1, -1, 3, 4, 5], [-1, -1, -1, -1, 1, 2, 3, 4]])
    assert trim_left_padding(history).shape == (2, 4)
    with torch.no_grad():
        assert torch.allclose(model.score_all(torch.tensor([0, 1]), history),
                              model.score_all(torch.tensor([0, 1]), history[:, -5:]), atol=1e-6)  # fmt: skip


def test_old_checkpoints_of_the_sequence_encoder_still_load():
    encoder = ItemSequenceEncoder(num_items=5, dim=8, max_length=3, num_layers=1)
    old = {k.replace("layers.0.", "layers.layers.0."): v for k, v in encoder.state_dict().items()}
    ItemSequenceEncoder(num_items=5, dim=8, max_length=3, num_layers=1).load_state_dict(old)


def test_sampled_softmax_equals_the_softmax_over_the_candidates():
    torch.manual_seed(0)
    hidden, positives, negatives = torch.randn(4, 8), torch.randn(4, 8), torch.randn(5, 8)
    hits = torch.zeros(4, 5, dtype=torch.bool)
    hits[1, 2] = True
    expected = []
    for row in range(4):
        candidates = torch.cat([positives[row : row + 1], negatives[~hits[row]]])
        expected.append(-torch.log_softmax(candidates @ hidden[row], 0)[0])
    loss = sampled_softmax(hidden, positives, negatives, hits)
    assert loss == pytest.approx(float(torch.stack(expected).mean()), abs=1e-6)


def test_sampled_softmax_with_negatives_of_each_row_equals_the_softmax_over_its_candidates():
    torch.manual_seed(0)
    hidden, positives, negatives = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 5, 8)
    hits = torch.zeros(4, 5, dtype=torch.bool)
    hits[2, 0] = True
    expected = []
    for row in range(4):
        candidates = torch.cat([positives[row : row + 1], negatives[row][~hits[row]]])
        expected.append(-torch.log_softmax(candidates @ hidden[row], 0)[0])
    loss = sampled_softmax(hidden, positives, negatives, hits)
    assert loss == pytest.approx(float(torch.stack(expected).mean()), abs=1e-6)


def write_color_sequences(directory: Path, num_users: int = 160, items_per_color: int = 12, length: int = 7):
    """Items are red or blue (their titles say so, nothing else does); each user buys one color only."""
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    lines = []
    for user in range(num_users):
        color = user % 2
        picks = torch.randint(items_per_color, (length,), generator=generator) * 2 + color
        lines.append(f"U{user} " + " ".join(f"I{int(i)}" for i in picks))
    (directory / "seq.txt").write_text("\n".join(lines) + "\n")
    titles = "".join(f"I{i}\t{' '.join([COLORS[i % 2]] * 4)} item\n" for i in range(2 * items_per_color))
    (directory / "titles.tsv").write_text("asin\ttitle\n" + titles)
    return str(directory / "seq.txt"), str(directory / "titles.tsv")


def color_datamodule(tmp_path: Path, **kwargs) -> AmazonDataModule:
    sequences, titles = write_color_sequences(tmp_path / "colors")
    options = dict(history_length=6, train_mode="sequences", batch_size=32, eval_protocols=["full"], max_title_length=0)
    return AmazonDataModule(sequence_file=sequences, titles_file=titles, name="colors", **{**options, **kwargs})


def text_sasrec(dm, **kwargs) -> TextSASRec:
    options = dict(backbone="tiny-gpt2", pretrained=False, text_max_length=8, dim=16, max_length=6, dropout=0.0,
                   num_negatives=8, learning_rate=1e-2)  # fmt: skip
    return TextSASRec(dm.num_users, dm.num_items, dm.item_texts, **{**options, **kwargs})


def quiet_trainer(**kwargs) -> L.Trainer:
    defaults = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                    num_sanity_val_steps=0, enable_checkpointing=False)  # fmt: skip
    return L.Trainer(**{**defaults, **kwargs})


def test_the_text_tower_learns_a_color_only_titles_reveal_and_scores_items_added_after_training(tmp_path):
    L.seed_everything(0)
    dm = color_datamodule(tmp_path)
    model = text_sasrec(dm, item_representation="text")
    quiet_trainer(max_epochs=15).fit(model, datamodule=dm)
    model.eval()
    red_user, blue_user = torch.tensor([[0, 2, 4, 6, 8, 10]]), torch.tensor([[1, 3, 5, 7, 9, 11]])
    # Two items that did not exist in training, known by their titles alone.
    new_titles = ["red red red red item", "blue blue blue blue item"]
    red_scores = model.score_new_items(red_user, new_titles)[0]
    blue_scores = model.score_new_items(blue_user, new_titles)[0]
    assert red_scores[0] > red_scores[1] and blue_scores[1] > blue_scores[0]
    with pytest.raises(ValueError, match="item_representation='text'"):
        text_sasrec(dm, item_representation="fuse").score_new_items(red_user, new_titles)


@pytest.mark.parametrize("representation", ["init", "fuse", "text"])
def test_every_representation_learns_the_users_color(tmp_path, representation):
    L.seed_everything(0)
    dm = color_datamodule(tmp_path)
    model = text_sasrec(dm, item_representation=representation)
    trainer = quiet_trainer(max_epochs=8)
    trainer.fit(model, datamodule=dm)
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    # Knowing the color leaves about 7 unseen candidates (HR@10 = 1); not knowing it, about 19 (HR@10 ~ 0.5).
    assert metrics["test/full/HR@10"] > 0.9


def test_init_starts_the_id_table_from_the_text_components_once(tmp_path):
    L.seed_everything(0)
    dm = color_datamodule(tmp_path)
    model = text_sasrec(dm, item_representation="init")
    quiet_trainer(max_epochs=1, limit_train_batches=0).fit(model, datamodule=dm)
    expected = principal_components(model.text_encoder.cache, 16, std=0.02)
    assert torch.allclose(model.encoder.output_embeddings(), expected, atol=1e-6)
    assert bool(model.text_initialised)
    model.encoder.item_embedding.weight.data.add_(1.0)  # "trained"; a second fit must not reset it
    quiet_trainer(max_epochs=1, limit_train_batches=0).fit(model, datamodule=dm)
    assert torch.allclose(model.encoder.output_embeddings(), expected + 1.0, atol=1e-6)


class ModeRecorder(Callback):
    def __init__(self):
        self.modes, self.adapters = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.modes.append((trainer.current_epoch, pl_module.text_mode))

    def on_train_epoch_end(self, trainer, pl_module):
        params = pl_module.text_encoder.trainable_backbone_parameters()
        self.adapters.append(torch.cat([p.detach().flatten().clone() for p in params]))


def test_the_metadata_cache_callback_switches_text_sasrec_to_dynamic_lora_mid_fit(tmp_path):
    L.seed_everything(0)
    dm = color_datamodule(tmp_path)
    model = text_sasrec(dm, item_representation="fuse", use_peft=True, dynamic_layers=1, dynamic_items_per_step=8,
                        refresh_every_n_steps=2)  # fmt: skip
    recorder = ModeRecorder()
    callback = MetadataCacheCallback(cache_dir=str(tmp_path / "cache"), switch_at_epoch=2)
    quiet_trainer(max_epochs=4, limit_train_batches=3, callbacks=[callback, recorder]).fit(model, datamodule=dm)
    assert [mode for _, mode in recorder.modes] == ["cached"] * 6 + ["dynamic"] * 6
    assert torch.equal(recorder.adapters[0], recorder.adapters[1])  # no gradient while cached
    assert not torch.equal(recorder.adapters[1], recorder.adapters[2])  # learning after the switch
    assert not torch.equal(recorder.adapters[2], recorder.adapters[3])


@pytest.mark.parametrize("representation", ["init", "fuse"])
def test_a_resumed_run_matches_the_uninterrupted_one(tmp_path, representation):
    def run(**fit_kwargs):
        L.seed_everything(1)
        dm = color_datamodule(tmp_path, batch_size=48)  # 160 users: 4 batches an epoch
        model = text_sasrec(dm, item_representation=representation, dropout=0.2, use_peft=True,
                            dynamic_layers=1)  # fmt: skip
        checkpoints = ModelCheckpoint(tmp_path / f"ckpt-{representation}", every_n_train_steps=6, save_top_k=-1)
        cache = MetadataCacheCallback(cache_dir=str(tmp_path / "cache"), switch_at_epoch=1)
        trainer = quiet_trainer(max_epochs=3, callbacks=[cache, checkpoints], enable_checkpointing=True,
                                deterministic=True)  # fmt: skip
        trainer.fit(model, datamodule=dm, **fit_kwargs)
        return trainer.test(model, datamodule=dm, verbose=False)[0], model

    uninterrupted, first = run()
    # Step 6 is the 3rd batch of epoch 1, after the switch to dynamic extraction.
    resumed, second = run(ckpt_path=str(tmp_path / f"ckpt-{representation}" / "epoch=1-step=6.ckpt"))
    assert second.text_mode == "dynamic"
    for name in ("test/full/HR@10", "test/full/NDCG@10"):
        assert resumed[name] == pytest.approx(uninterrupted[name], abs=1e-6)
    assert torch.allclose(first.encoder.output_embeddings(), second.encoder.output_embeddings(), atol=1e-6)


def test_bad_text_sasrec_arguments_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="item_representation must be"):
        TextSASRec(2, 3, ["a", "b", "c"], item_representation="both", backbone="tiny-gpt2", pretrained=False)
    with pytest.raises(ValueError, match="link data.item_texts"):
        TextSASRec(2, 3, ["a", "b"], backbone="tiny-gpt2", pretrained=False)


def test_fuse_predicts_cold_id_rows_from_their_text():
    """A planted linear map from text to ID rows on the trained items is recovered for the untrained ones."""
    torch.manual_seed(0)
    model = TextSASRec(3, 40, [f"item {i}" for i in range(40)], item_representation="fuse", dim=8, max_length=4,
                       backbone="tiny-gpt2", pretrained=False)  # fmt: skip
    model.set_text_cache(torch.randn(40, model.text_encoder.hidden_size))
    with torch.no_grad():
        text = model.text_projection(model.text_encoder.cache)
        planted = torch.randn(8, 8)
        model.encoder.item_embedding.weight[:40] = text @ planted + 0.5
    expected = model.encoder.item_embedding.weight[30:40].clone()
    model.fill_untrained_items(30)
    assert torch.allclose(model.encoder.item_embedding.weight[30:40], expected, atol=0.05)
    assert not torch.allclose(expected, expected.mean(0))  # the mean fill would have lost it


def test_id_dropout_trains_the_text_part_alone_and_leaves_cold_items_none():
    torch.manual_seed(0)
    model = TextSASRec(3, 400, [f"item {i}" for i in range(400)], item_representation="fuse", dim=8, max_length=4,
                       backbone="tiny-gpt2", pretrained=False, id_dropout=0.3)  # fmt: skip
    model.set_text_cache(torch.randn(400, model.text_encoder.hidden_size))
    catalog = torch.arange(400)
    with torch.no_grad():
        text = model.text_projection(model.text_encoder.cache)
        fused = model.eval().item_lookup(catalog)(catalog)
        dropped = model.train().item_lookup(catalog)(catalog)
    text_only = torch.isclose(dropped, text, atol=1e-6).all(1)
    assert torch.equal(text_only, ~torch.isclose(dropped, fused, atol=1e-6).all(1))  # each item: all or nothing
    assert 0.2 < float(text_only.float().mean()) < 0.4
    model.fill_untrained_items(300)  # a cold item is ranked by its text, as the training taught
    assert torch.equal(model.encoder.item_embedding.weight[300:400], torch.zeros(100, 8))
    with pytest.raises(ValueError, match="id_dropout must be in"):
        TextSASRec(2, 3, ["a", "b", "c"], item_representation="text", backbone="tiny-gpt2", pretrained=False,
                   id_dropout=0.5)  # fmt: skip


def test_testing_a_checkpoint_reads_the_cached_catalog_instead_of_encoding_it_again(tmp_path, monkeypatch):
    dm = color_datamodule(tmp_path)
    model = text_sasrec(dm, item_representation="fuse")
    callback = MetadataCacheCallback(cache_dir=str(tmp_path / "cache"), switch_at_epoch=None)
    trainer = quiet_trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "fit.ckpt")
    encoded = []
    monkeypatch.setattr(type(model), "compute_text_cache", lambda self: encoded.append(1) or pytest.fail("encoded"))
    trainer.test(model, datamodule=dm, ckpt_path=tmp_path / "fit.ckpt", verbose=False)  # the weights drop the cache
    fresh = text_sasrec(dm, item_representation="fuse")
    quiet_trainer(callbacks=[callback]).test(fresh, datamodule=dm, ckpt_path=tmp_path / "fit.ckpt", verbose=False)
    assert not encoded
