"""M6-Rec-style open-ended recommender (Cui et al. 2022): user behaviour and items as plain text, one
causal LM that both scores candidates and writes the next item's title, constrained to the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_rec.models.base import (
    Batch,
    Recommender,
    check_per_item,
    drop_frozen_weights,
    frozen_pretrained_weights,
    refill_frozen_weights,
    require_history,
)
from lightning_rec.nn.causal_lm import (
    PeftMethod,
    TitlePrompts,
    context_length,
    generate_sharing_prompt,
    last_hidden,
    load_causal_lm,
    pad_left,
    pool_states,
    run_lm,
    target_labels,
    target_token_loss,
)
from lightning_rec.nn.text_encoder import load_tokenizer

PROMPT_START = "The user bought:"
PROMPT_END = " Next the user buys:"


class TitleTrie:
    """Prefix trie of token sequences (each item's title + end-of-text): the tokens allowed next.

    Example:
        >>> trie = TitleTrie([[5, 6, 0], [5, 7, 0]])
        >>> trie.allowed([]), trie.allowed([5]), trie.allowed([5, 9])
        ([5], [6, 7], [])
    """

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        self.root: dict = {}
        for sequence in sequences:
            node = self.root
            for token in sequence:
                node = node.setdefault(token, {})

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        node = self.root
        for token in prefix:
            node = node.get(token)
            if node is None:
                return []
        return list(node)


class M6Rec(Recommender):
    """One causal LM over text for two tasks (M6-Rec's "everything is text" recipe).

    The user is the prompt ``The user bought: <title 1>. ... <title n>. Next the user buys:``; an item
    is its text (title and categories). **Scoring**: ``score(u, i) = <W_u h_u, W_i h_i>`` where ``h`` is
    the LM's last-layer state at the last token of each text (or their mean) and ``W`` linear heads; trained
    with cross-entropy over the positive and the sampled negatives. Item states are computed once
    per evaluation, so full ranking costs one LM pass per item and user. **Generation**: the next
    item's title follows the prompt (loss on the title tokens, weighted by ``generation_weight``);
    :meth:`generate_items` runs beam search constrained by a trie of the catalog's titles
    (``prefix_allowed_tokens_fn``), so every answer is an existing item. **Tuning**: full, LoRA, or
    prompt tuning (M6-Rec's option tuning) through ``peft``. Data: ``history_length`` > 0.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        item_titles: title of each item (linked; prompts and generation).
        item_texts: text of each item (linked; scored candidates). Defaults to the titles.
        backbone: Hugging Face causal LM name or path (``gpt2``), or the bundled ``tiny-gpt2``.
        pretrained: load the backbone's weights (``False``: random init of its config).
        peft: ``none`` (train all weights), ``lora`` or ``prompt`` (prompt tuning).
        lora_rank: LoRA rank.
        num_virtual_tokens: learned prompt vectors for prompt tuning.
        max_history: history items in the prompt.
        max_title_tokens: tokens per title in the prompt.
        max_item_tokens: tokens per candidate item text.
        pooling: ``last`` token's state (M6-Rec) or ``mean`` over the text's tokens (learns faster
            from a randomly initialised LM).
        score_dim: width of the user and item vectors the linear heads make from the LM states.
        generation_weight: weight of the title-generation loss (0: scoring only).
        num_beams: beams of :meth:`generate_items` (at least the number of items asked for).
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.

    Example:
        >>> import torch
        >>> model = M6Rec(2, 3, ["Lip Balm", "Hair Oil", "Eye Cream"], backbone="tiny-gpt2", pretrained=False)
        >>> model.score_all(torch.tensor([0]), history=torch.tensor([[0, 1]])).shape
        torch.Size([1, 3])
        >>> all(0 <= item < 3 and item != 0 for item in model.generate_items(torch.tensor([[-1, 0]]), k=2)[0])
        True
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_titles: list[str] | None = None,
        item_texts: list[str] | None = None,
        backbone: str = "gpt2",
        pretrained: bool = True,
        peft: PeftMethod = "none",
        lora_rank: int = 8,
        num_virtual_tokens: int = 20,
        max_history: int = 10,
        max_title_tokens: int = 12,
        max_item_tokens: int = 24,
        pooling: Literal["last", "mean"] = "last",
        score_dim: int = 64,
        generation_weight: float = 0.5,
        num_beams: int = 10,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
    ) -> None:
        super().__init__(num_users, num_items, "softmax", learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters(ignore=["item_titles", "item_texts"])
        check_per_item(item_titles, num_items, "item_titles", required=True)
        check_per_item(item_texts, num_items, "item_texts")
        self.item_titles = list(item_titles)
        self.tokenizer = load_tokenizer(backbone)
        self.lm = load_causal_lm(backbone, pretrained, peft, lora_rank, num_virtual_tokens=num_virtual_tokens)
        reserve = num_virtual_tokens if peft == "prompt" else 0
        self.prompts = TitlePrompts(self.tokenizer, self.item_titles, PROMPT_START, PROMPT_END, max_history,
                                    max_title_tokens, context_length(self.lm) - reserve)  # fmt: skip
        texts = list(item_texts) if item_texts is not None else self.item_titles
        encoded = self.tokenizer([t.strip() or self.tokenizer.eos_token for t in texts])["input_ids"]
        self.item_text_ids = [ids[:max_item_tokens] for ids in encoded]
        # Linear heads give user and item their own view of the one shared LM.
        hidden_size = self.lm.get_input_embeddings().embedding_dim
        self.user_head = nn.Linear(hidden_size, score_dim)
        self.item_head = nn.Linear(hidden_size, score_dim)
        # Generation: every catalog title (untruncated) ends with end-of-text; titles shared by several
        # items map to all of them.
        eos = self.tokenizer.eos_token_id
        self.trie = TitleTrie([ids + [eos] for ids in self.prompts.full_title_ids if ids])
        self.items_by_title: dict[tuple[int, ...], list[int]] = {}
        for item, ids in enumerate(self.prompts.full_title_ids):
            self.items_by_title.setdefault(tuple(ids), []).append(item)
        self._item_state_cache: Tensor | None = None

    # ------------------------------------------------------------------ text -> states
    def text_states(self, sequences: list[list[int]]) -> Tensor:
        """Pooled last-layer LM states of token sequences, ``[N, H]``."""
        input_ids, attention_mask = pad_left(sequences, self.tokenizer.pad_token_id, self.device)
        output = run_lm(self.lm, input_ids, attention_mask, logits_to_keep=1, hidden=True)
        return pool_states(last_hidden(output, input_ids), attention_mask, self.hparams.pooling)

    def item_states(self, items: Tensor) -> Tensor:
        """Item vectors ``[..., score_dim]``; during evaluation read from a per-epoch cache of all items."""
        if not self.training:
            if self._item_state_cache is None:
                with torch.no_grad():
                    chunks = torch.arange(self.num_items).split(256)
                    states = [self.text_states([self.item_text_ids[i] for i in chunk.tolist()]) for chunk in chunks]
                self._item_state_cache = self.item_head(torch.cat(states)).float()
            return self._item_state_cache[items]
        unique, inverse = items.unique(return_inverse=True)
        return self.item_head(self.text_states([self.item_text_ids[i] for i in unique.tolist()]))[inverse]

    def user_states(self, history: Tensor) -> Tensor:
        return self.user_head(self.text_states([self.prompts.ids(h) for h in history.tolist()]))

    def _clear_item_cache(self) -> None:
        self._item_state_cache = None

    on_validation_epoch_start = on_test_epoch_start = on_predict_epoch_start = on_train_epoch_start = _clear_item_cache

    # ------------------------------------------------------------------ scoring
    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        user_states = self.user_states(require_history(history, self)).float()
        return torch.einsum("bh,bch->bc", user_states, self.item_states(items).float())

    def score_all(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        all_items = torch.arange(self.num_items, device=users.device)
        return self.user_states(require_history(history, self)).float() @ self.item_states(all_items).T

    # ------------------------------------------------------------------ training: both tasks
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        history, positives = require_history(batch.get("history"), self), batch["item"]
        items = torch.cat([positives.unsqueeze(1), batch["negative_items"]], dim=1)
        item_states = self.item_states(items)
        if self.hparams.generation_weight > 0:
            # One pass serves both tasks: the prompt's states give the user vector (causal attention
            # keeps the target title out of them) and the tokens after the prompt are the target.
            histories, targets = history.tolist(), positives.tolist()
            sequences = [self.prompts.ids(h, t) for h, t in zip(histories, targets)]
            spans = [len(self.prompts.title_ids[t]) + 1 for t in targets]
            input_ids, attention_mask = pad_left(sequences, self.tokenizer.pad_token_id, self.device)
            labels = target_labels(input_ids, spans)
            generation_loss, hidden = target_token_loss(self.lm, input_ids, attention_mask, labels, return_hidden=True)
            prompt_mask = attention_mask * (labels == -100)
            user_states = self.user_head(pool_states(hidden, prompt_mask, self.hparams.pooling))
        else:
            generation_loss, user_states = torch.zeros((), device=self.device), self.user_states(history)
        scores = torch.einsum("bh,bch->bc", user_states, item_states)
        scoring_loss = F.cross_entropy(scores.float(), torch.zeros(len(scores), dtype=torch.long, device=self.device))
        loss = scoring_loss + self.hparams.generation_weight * generation_loss
        size = len(positives)
        self.log_dict({"train/scoring_loss": scoring_loss, "train/generation_loss": generation_loss}, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate_items(self, history: Tensor, k: int = 10, request: str | None = None) -> list[list[int]]:
        """Up to ``k`` catalog items per user, in beam order, by constrained generation of the next
        item's title; items in the history and repeated titles are removed. ``request`` (free text)
        is added to the prompt as ``The user asks for: <request>.`` (training prompts have no request:
        the generator conditions on it only as far as the backbone's pretraining lets it)."""
        histories = history.tolist()
        middle = f" The user asks for: {request.strip()}." if request else ""
        prompts = [self.prompts.ids(h, middle=middle) for h in histories]
        input_ids, attention_mask = pad_left(prompts, self.tokenizer.pad_token_id, self.device)
        prompt_length = input_ids.shape[1]
        beams = max(self.hparams.num_beams, k + max(len([i for i in h if i >= 0]) for h in histories))
        eos = self.tokenizer.eos_token_id

        def allowed(batch_id: int, ids: Tensor) -> list[int]:
            return self.trie.allowed(ids[prompt_length:].tolist()) or [eos]

        output = generate_sharing_prompt(
            self.lm, input_ids, attention_mask, num_beams=beams, num_return_sequences=beams, do_sample=False,
            prefix_allowed_tokens_fn=allowed,
            max_new_tokens=max(map(len, self.prompts.full_title_ids)) + 1, pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=eos,
        )  # fmt: skip
        generated = output[:, prompt_length:]
        results = []
        for user, user_history in enumerate(histories):
            known, found = {i for i in user_history if i >= 0}, []
            for ids in generated[user * beams : (user + 1) * beams].tolist():
                title = tuple(ids[: ids.index(eos)] if eos in ids else ids)
                for item in self.items_by_title.get(title, []):
                    if item not in known and item not in found:
                        found.append(item)
            results.append(found[:k])
        return results

    # ------------------------------------------------------------------ checkpoints
    def frozen_pretrained_state(self) -> dict[str, Tensor]:
        """The LM's pretrained, frozen weights (all but LoRA or the prompt): refilled by name, never checkpointed."""
        return frozen_pretrained_weights(self.lm, "lm", self.hparams.pretrained)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        drop_frozen_weights(checkpoint, self.frozen_pretrained_state())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        refill_frozen_weights(checkpoint, self.frozen_pretrained_state())
