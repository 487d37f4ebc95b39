from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, LlamaConfig

from lightning_rec.nn.backbones import resolve_backbone
from lightning_rec.nn.causal_lm import load_causal_lm
from lightning_rec.nn.fusion import CrossAttentionFusion
from lightning_rec.nn.losses import info_nce
from lightning_rec.nn.text_encoder import ItemTextEncoder, load_tokenizer

TEXTS = ["Toy Story (1995) | Animation|Comedy", "Heat (1995) | Crime", "A much longer title of a dramatic film", ""]


def encoder(**kwargs) -> ItemTextEncoder:
    torch.manual_seed(0)
    return ItemTextEncoder(TEXTS, backbone="tiny-gpt2", pretrained=False, max_length=12, **kwargs)


def test_tokenized_once_with_the_real_gpt2_tokenizer():
    model = encoder()
    tokenizer = load_tokenizer("tiny-gpt2")
    expected = tokenizer("Heat (1995) | Crime")["input_ids"]
    assert model.input_ids[1, : len(expected)].tolist() == expected
    assert model.attention_mask[1].sum() == len(expected)
    assert model.attention_mask[3].sum() == 1  # the empty text became <|endoftext|>
    assert model.input_ids[3, 0] == tokenizer.eos_token_id


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pooling_reads_the_right_tokens(pooling):
    model = encoder(pooling=pooling).eval()
    length = int(model.attention_mask[1].sum())
    states = model.backbone(input_ids=model.input_ids[1:2, :length]).last_hidden_state[0]
    expected = states[-1] if pooling == "last" else states.mean(0)
    assert torch.allclose(model.encode(torch.tensor([1]))[0], expected, atol=1e-5)
    # Padding others in the same batch does not change an item's vector.
    assert torch.allclose(model.encode(torch.tensor([2, 1]))[1], expected, atol=1e-5)


def test_each_distinct_item_is_encoded_once():
    model = encoder()
    rows = []
    model.backbone.register_forward_hook(lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]),
                                         with_kwargs=True)  # fmt: skip
    vectors = model.encode(torch.tensor([2, 0, 2, 2, 0]))
    assert rows == [2]
    assert torch.equal(vectors[0], vectors[2])


def test_lora_through_peft_trains_only_adapters_on_c_attn():
    model = encoder(use_peft=True, lora_rank=4)
    trainable = {name for name, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name and "c_attn" in name for name in trainable)
    lora_layer = next(
        m for name, m in model.backbone.named_modules() if name.endswith("c_attn") and hasattr(m, "lora_A")
    )
    assert lora_layer.fan_in_fan_out  # GPT-2's Conv1D is transposed
    # LoRA B starts at zero: the adapted model equals the base model until it trains.
    base = encoder().eval()
    assert torch.allclose(model.eval().encode(torch.arange(4)), base.encode(torch.arange(4)), atol=1e-5)


def test_cache_matches_encode_and_key_tracks_adapters_and_texts():
    model = encoder(use_peft=True)
    cache = model.compute_cache()
    assert torch.allclose(cache, model.eval().encode(torch.arange(4)), atol=1e-5)
    key = model.cache_key()
    assert key == model.cache_key()
    with torch.no_grad():
        model.trainable_backbone_parameters()[-1].add_(0.1)
    assert model.cache_key() != key
    other = ItemTextEncoder(TEXTS[:3] + ["different"], backbone="tiny-gpt2", pretrained=False, max_length=12)
    assert other.cache_key() != encoder().cache_key()
    with pytest.raises(ValueError, match="cache of shape"):
        model.set_cache(torch.zeros(3, 64))


def test_missing_texts_are_a_clear_error():
    with pytest.raises(ValueError, match="link data.item_texts"):
        ItemTextEncoder([], backbone="tiny-gpt2", pretrained=False)


def test_cross_attention_uses_several_keys_and_ignores_padding():
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(dim=8, num_heads=2)
    queries, keys = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[False, False, True, True], [False, False, False, False]])
    fused, weights = fusion(queries, keys, mask)
    assert weights[0, :, :2].eq(0).all() and weights[1].eq(0).all()  # padding and an empty history
    assert (weights[0].sum(-1) < 1).all() and (weights[0, :, 2:] > 0).all()  # the null key takes the rest
    assert not torch.allclose(weights[0, :, 2], weights[0, :, 3])  # the weights discriminate between keys
    assert torch.isfinite(fused).all()
    # Changing a padded key changes nothing.
    keys[0, 0] += 5
    assert torch.allclose(fusion(queries, keys, mask)[0], fused)


def test_info_nce_known_value_and_alignment():
    views = torch.eye(2)
    # Cosine logits [[1, 0], [0, 1]] / T: loss = log(1 + exp(-1 / T)).
    assert info_nce(views, views, temperature=0.5).item() == pytest.approx(
        torch.log1p(torch.exp(torch.tensor(-2.0))).item()
    )
    torch.manual_seed(0)
    first = torch.randn(16, 8)
    aligned = info_nce(first, first + 0.01 * torch.randn(16, 8))
    shuffled = info_nce(first, first[torch.randperm(16)])
    assert aligned < shuffled


def save_random_backbone(directory, config) -> str:
    """A random model of ``config`` saved with the real GPT-2 tokenizer files, as a "pretrained" folder."""
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(directory)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        (directory / name).write_bytes((Path(resolve_backbone("tiny-gpt2")) / name).read_bytes())
    return str(directory)


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_running_only_the_top_blocks_on_cached_lower_states_equals_the_full_pass(architecture, tmp_path):
    if architecture == "gpt2":
        config = AutoConfig.from_pretrained(resolve_backbone("tiny-gpt2"), n_layer=4)
    else:
        config = LlamaConfig(vocab_size=50257, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    backbone = save_random_backbone(tmp_path / architecture, config)
    texts = ["Toy Story (1995) | Comedy", "Heat (1995) | Crime|Thriller", "a", "Lip balm with a long name " * 3]
    full = ItemTextEncoder(texts, backbone, pretrained=True, pooling="mean", max_length=12).eval()
    split = ItemTextEncoder(texts, backbone, pretrained=True, pooling="mean", max_length=12, use_peft=True,
                            dynamic_layers=1).eval()  # fmt: skip
    adapted = {name.split(".lora_")[0] for name, p in split.backbone.named_parameters() if p.requires_grad}
    assert adapted and all(".3." in name for name in adapted)  # LoRA only in the top block
    items = torch.tensor([3, 0, 2])
    expected, got = full.encode(items), split.encode(items)  # LoRA's B starts at zero: same function
    assert split.lower_states.dtype == torch.bfloat16 and split.lower_states.shape == (4, 12, config.hidden_size)
    assert torch.allclose(got, expected, atol=0.01 * expected.abs().max().item())  # bf16 lower states
    assert split.cache_key() != full.cache_key()
    # Gradients reach the top block's adapters through the skipped-layer pass.
    split.train()
    split.encode(items).sum().backward()
    assert all(p.grad is not None for p in split.trainable_backbone_parameters())


def test_pretrained_backbones_train_in_train_mode(tmp_path):
    # from_pretrained returns eval mode and Lightning keeps each module's mode: dropout would stay off.
    backbone = save_random_backbone(tmp_path / "gpt2", AutoConfig.from_pretrained(resolve_backbone("tiny-gpt2")))
    encoder = ItemTextEncoder(TEXTS, backbone, pretrained=True)
    assert all(module.training for module in encoder.modules())
    assert all(module.training for module in load_causal_lm(backbone, pretrained=True).modules())


def test_frozen_pretrained_vectors_are_encoded_once_per_catalog_and_every_caller_gets_a_copy(tmp_path, monkeypatch):
    from lightning_rec.nn import text_encoder

    backbone = save_random_backbone(tmp_path / "gpt2", AutoConfig.from_pretrained(resolve_backbone("tiny-gpt2")))
    built = []
    real = text_encoder.ItemTextEncoder
    monkeypatch.setattr(text_encoder, "ItemTextEncoder", lambda *a, **k: built.append(a) or real(*a, **k))
    first = text_encoder.frozen_text_vectors(TEXTS, backbone, True, "mean", 12)
    first.zero_()  # a model that changes its copy in place changes no one else's
    second = text_encoder.frozen_text_vectors(TEXTS, backbone, True, "mean", 12)
    assert len(built) == 1 and second.abs().sum() > 0
    text_encoder.frozen_text_vectors(TEXTS[:3], backbone, True, "mean", 12)  # another catalog: encoded
    text_encoder.frozen_text_vectors(TEXTS, backbone, True, "last", 12)  # another pooling: encoded
    assert len(built) == 3
    torch.manual_seed(0)
    random_a = text_encoder.frozen_text_vectors(TEXTS, "tiny-gpt2", False, "mean", 12)
    random_b = text_encoder.frozen_text_vectors(TEXTS, "tiny-gpt2", False, "mean", 12)
    assert len(built) == 5 and not torch.equal(random_a, random_b)  # random weights are never shared
