"""What the generative recommenders (GPT4Rec, M6Rec) share: a causal LM loaded by name, item-title
prompts built from pre-tokenized pieces, left padding and the loss on target tokens only."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM

from lightning_rec.nn.backbones import load_pretrained
from lightning_rec.nn.text_encoder import add_lora, apply_peft

log = logging.getLogger(__name__)

try:  # transformers 5.2x names the key/value cache ``cache`` (``past_key_values`` before)
    from transformers.generation.utils import ALL_CACHE_NAMES

    CACHE_KEY = ALL_CACHE_NAMES[0]
except ImportError:
    CACHE_KEY = "past_key_values"

PeftMethod = Literal["none", "lora", "prompt"]


def load_causal_lm(
    name_or_path: str,
    pretrained: bool,
    peft: PeftMethod = "none",
    lora_rank: int = 8,
    lora_target_modules: Sequence[str] | None = None,
    num_virtual_tokens: int = 20,
) -> nn.Module:
    """A Hugging Face causal LM (pretrained, or a random init of its config), optionally wrapped by
    ``peft``: LoRA adapters or prompt tuning (``num_virtual_tokens`` learned input vectors)."""
    model = (
        load_pretrained(AutoModelForCausalLM.from_pretrained, name_or_path).train()  # eval otherwise: see load_backbone
        if pretrained
        else AutoModelForCausalLM.from_config(load_pretrained(AutoConfig.from_pretrained, name_or_path))
    )
    if peft == "lora":
        return add_lora(model, lora_rank, 2 * lora_rank, 0.0, lora_target_modules)
    if peft == "prompt":
        from peft import PromptTuningConfig, TaskType

        return apply_peft(
            model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens)
        )
    if peft != "none":
        raise ValueError(f"peft must be 'none', 'lora' or 'prompt', got {peft!r}")
    return model


def is_prompt_tuned(model: nn.Module) -> bool:
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and config.is_prompt_learning)


def context_length(model: nn.Module) -> int:
    config = model.config
    return getattr(config, "n_positions", None) or config.max_position_embeddings


class TitlePrompts:
    """Prompts ``<start> <title 1>. <title 2>. ... <end>`` (+ a target title and end-of-text) as token ids.

    Titles are tokenized once; a prompt is a concatenation of these pieces, which for GPT-2's
    byte-level BPE equals tokenizing the whole text (every piece starts at a word boundary). The
    latest ``max_history`` items are kept, and the oldest dropped if the prompt would not fit.

    Example:
        >>> from lightning_rec.nn.text_encoder import load_tokenizer
        >>> tokenizer = load_tokenizer("tiny-gpt2")
        >>> prompts = TitlePrompts(tokenizer, ["Lip Balm", "Hair Oil"], "Bought:", " Next:", 15, 8, 1024)
        >>> tokenizer.decode(prompts.ids([0, -1, 1], target=0))
        'Bought: Lip Balm. Hair Oil. Next: Lip Balm<|endoftext|>'
    """

    def __init__(
        self,
        tokenizer,
        titles: Sequence[str],
        start: str,
        end: str,
        max_history: int,
        max_title_tokens: int,
        context_length: int,
    ) -> None:
        self.tokenizer, self.max_history, self.context_length = tokenizer, max_history, context_length
        spaced = [" " + t.strip() if t.strip() else "" for t in titles]
        empty = sum(1 for t in spaced if not t)
        if empty:
            log.warning("%d items have an empty title: left out of prompts", empty)
        # Pieces without special tokens: a tokenizer that adds a BOS must not add one per title.
        self.full_title_ids: list[list[int]] = tokenizer(spaced, add_special_tokens=False)["input_ids"]
        self.title_ids = [ids[:max_title_tokens] for ids in self.full_title_ids]
        self.start_ids = tokenizer.encode(start, add_special_tokens=False)
        self.end_ids = tokenizer.encode(end, add_special_tokens=False)
        self.period_ids = tokenizer.encode(".", add_special_tokens=False)

    def ids(self, history: Sequence[int], target: int | None = None, reserve: int = 0, middle: str = "") -> list[int]:
        """Prompt for ``history`` (item indices, oldest first, ``-1`` padding ignored), ``middle`` text
        before the end phrase, then the target's title and end-of-text if ``target`` is given;
        ``reserve`` tokens are kept free (for generation)."""
        items = [i for i in history if i >= 0 and self.title_ids[i]][-self.max_history :]
        middle_ids = self.tokenizer.encode(middle) if middle else []
        tail = self.title_ids[target] + [self.tokenizer.eos_token_id] if target is not None else []
        budget = self.context_length - len(self.start_ids) - len(middle_ids) - len(self.end_ids) - len(tail) - reserve
        pieces = [self.title_ids[i] + self.period_ids for i in items]
        while pieces and sum(map(len, pieces)) > budget:
            pieces.pop(0)
        return self.start_ids + [t for piece in pieces for t in piece] + middle_ids + self.end_ids + tail


def pad_left(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """``(input_ids, attention_mask)`` with every sequence ending at the last position."""
    length = max(map(len, sequences))
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            ids[row, -len(sequence) :], mask[row, -len(sequence) :] = torch.tensor(sequence), 1
    return ids.to(device), mask.to(device)


def positions(attention_mask: Tensor) -> Tensor:
    """Position ids that start at 0 on each row's first real token (rows are left-padded)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def target_labels(input_ids: Tensor, target_lengths: Sequence[int]) -> Tensor:
    """Labels of left-padded rows: ``-100`` except on each row's last ``target_lengths`` tokens."""
    labels = torch.full_like(input_ids, -100)
    for row, span in enumerate(target_lengths):
        labels[row, -span:] = input_ids[row, -span:]
    return labels


def target_token_loss(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, return_hidden: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Cross-entropy on the labelled (final) tokens of left-padded rows. Logits are computed only
    there: the vocabulary projection of every prompt position would cost far more than the model.

    ``return_hidden`` also returns the last layer's states ``[B, T, H]`` at the input positions.
    """
    keep = int((labels != -100).sum(1).max()) + 1
    output = run_lm(model, input_ids, attention_mask, keep, return_hidden)
    loss = F.cross_entropy(output.logits[:, :-1].flatten(0, 1).float(), labels[:, -keep + 1 :].flatten())
    return loss, last_hidden(output, input_ids) if return_hidden else None


def run_lm(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, logits_to_keep: int, hidden: bool):
    """One forward of left-padded rows with matching position ids (prompt tuning takes none: it
    prepends virtual tokens itself)."""
    kwargs = {} if is_prompt_tuned(model) else {"position_ids": positions(attention_mask)}
    return model(
        input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep,
        output_hidden_states=hidden, **kwargs,
    )  # fmt: skip


def last_hidden(output, input_ids: Tensor) -> Tensor:
    """The last layer's states at the input positions (without prompt tuning's virtual tokens)."""
    return output.hidden_states[-1][:, -input_ids.shape[1] :]


def pool_states(hidden: Tensor, mask: Tensor, pooling: Literal["last", "mean"]) -> Tensor:
    """``[B, H]`` from states ``[B, T, H]``: the state at each row's last ``mask`` position, or the
    mean over its ``mask`` positions.

    Example:
        >>> hidden = torch.arange(6.0).view(1, 3, 2)
        >>> mask = torch.tensor([[0, 1, 1]])
        >>> pool_states(hidden, mask, "last").tolist(), pool_states(hidden, mask, "mean").tolist()
        ([[4.0, 5.0]], [[3.0, 4.0]])
    """
    mask = mask.to(hidden.dtype)
    if pooling == "last":
        last = mask.shape[1] - 1 - mask.flip(1).argmax(1)
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


@torch.no_grad()
def generate_sharing_prompt(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, **generate_kwargs) -> Tensor:
    """``model.generate`` with each prompt encoded once instead of once per beam (or per sample).

    ``generate`` repeats each prompt ``num_beams`` times (``num_return_sequences`` times when
    sampling) before its first forward pass, so the prompt, by far the longest part, would be encoded
    that many times. Here the key/value cache of all prompt tokens but the last is computed for the
    batch, repeated and handed to ``generate``, which then runs only the last prompt token and the new
    ones. The output is the same (``tests/test_generative.py`` compares). Prompt-tuned models (virtual
    tokens) take the plain path.
    """
    num_beams = generate_kwargs.get("num_beams") or 1
    copies = num_beams if num_beams > 1 else generate_kwargs.get("num_return_sequences") or 1
    if copies == 1 or input_ids.shape[1] < 2 or is_prompt_tuned(model):
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
    prefix_mask = attention_mask[:, :-1]
    prefix = model(input_ids=input_ids[:, :-1], attention_mask=prefix_mask, position_ids=positions(prefix_mask),
                   use_cache=True)  # fmt: skip
    cache = prefix[CACHE_KEY]
    cache.batch_repeat_interleave(copies)
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, **{CACHE_KEY: cache}, **generate_kwargs)
