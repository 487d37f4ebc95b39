"""GPT4Rec (Li et al. 2023): a causal LM writes search queries from the user's history, BM25
retrieves items by title for each query, and a rank-based merge builds the recommendation list."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from transformers import get_linear_schedule_with_warmup

from lightning_rec.metrics import BeyondAccuracyMetrics, RankingMetrics
from lightning_rec.models.base import (
    check_hyperparameters,
    check_sizes_match,
    drop_frozen_weights,
    frozen_pretrained_weights,
    refill_frozen_weights,
)
from lightning_rec.nn.causal_lm import (
    TitlePrompts,
    context_length,
    generate_sharing_prompt,
    load_causal_lm,
    pad_left,
    target_labels,
    target_token_loss,
)
from lightning_rec.nn.text_encoder import load_tokenizer
from lightning_rec.retrieval import fill_from, rank_merge, title_index, to_tensor

log = logging.getLogger(__name__)

Batch = dict[str, Tensor]
PROMPT_START = "Previously, the customer has bought:"
PROMPT_END = " In the future, the customer wants to buy"


class GPT4Rec(L.LightningModule):
    """Generative queries + BM25 retrieval + rank-based merge.

    Training: for each training interaction the prompt ``Previously, the customer has bought: <title
    1>. <title 2>. ... In the future, the customer wants to buy`` (the latest ``max_history`` items)
    is followed by the next item's title and end-of-text; the loss covers only those target tokens.
    Evaluation and predict: beam search with ``num_queries`` beams returns ``num_queries`` queries
    per user; BM25 (``bm25s``) retrieves items by title for each; :func:`~lightning_rec.retrieval.rank_merge`
    takes the top ``K / m`` of each list in beam order, skipping items already taken or already known
    to the user, and fills up to K (then from popularity if retrieval runs dry, with a logged count).
    BM25's ``k1``/``b`` are grid-searched on validation (the grid and the winner are logged, saved in
    checkpoints and used for test/predict). Data: an ``InteractionDataModule`` with ``history_length``
    = ``max_history``; item titles, categories and popularity are linked from it by the CLI.

    Args:
        item_titles: title of each item index (linked from the data module).
        item_categories: categories of each item (linked; for Diversity@K and Coverage@K).
        item_popularity: training interaction counts per item (linked; the fill-up order).
        generator: Hugging Face causal LM name or path (``gpt2``), or the bundled ``tiny-gpt2``.
        pretrained: load the generator's weights (``False``: random initialisation of its config).
        use_peft: train LoRA adapters (``peft``) instead of all weights.
        lora_rank: LoRA rank.
        lora_target_modules: modules with adapters (``None``: the architecture's default, ``c_attn`` for
            GPT-2, ``q_proj``/``v_proj`` for Llama-style models such as SmolLM2).
        max_history: history items in the prompt (the paper: 15).
        max_title_tokens: tokens kept per title in the prompt, so the prompt fits the context.
        num_queries: beams = queries per user (``m``: 1, 5, 10, 20, 40).
        max_query_tokens: longest generated query.
        query_decoding: ``beam`` (the paper: the ``m`` best beams, deterministic) or ``sample`` (``m``
            nucleus samples, seeded by torch's generator: more varied when beams are near-duplicates;
            transformers 5 moved diverse beam search to a Hub repository, so it is not offered offline).
        sampling_top_p: nucleus mass for ``sample``.
        top_k: cut-offs of Recall@K, Diversity@K, Coverage@K.
        bm25_k1_grid: ``k1`` values tried on validation.
        bm25_b_grid: ``b`` values tried on validation.
        learning_rate: AdamW learning rate (the paper: 1e-4).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warmup steps (the paper: 2,000 at full scale), then linear decay.

    Example:
        >>> model = GPT4Rec(["red lipstick", "lip gloss", "blue pen"], generator="tiny-gpt2", pretrained=False,
        ...                 num_queries=2, max_query_tokens=4)
        >>> model.prompt_ids([0, 1])[:3] == model.tokenizer.encode("Previously, the")
        True
    """

    def __init__(
        self,
        item_titles: list[str] | None = None,
        item_categories: list[list[str]] | None = None,
        item_popularity: Sequence[int] | None = None,
        generator: str = "gpt2",
        pretrained: bool = True,
        use_peft: bool = False,
        lora_rank: int = 8,
        lora_target_modules: Sequence[str] | None = None,
        max_history: int = 15,
        max_title_tokens: int = 12,
        num_queries: int = 5,
        max_query_tokens: int = 16,
        query_decoding: Literal["beam", "sample"] = "beam",
        sampling_top_p: float = 0.9,
        top_k: Sequence[int] = (5, 10, 20, 40),
        bm25_k1_grid: Sequence[float] = (0.9, 1.2, 1.5, 2.0),
        bm25_b_grid: Sequence[float] = (0.5, 0.75, 1.0),
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 2000,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["item_titles", "item_categories", "item_popularity"])
        check_hyperparameters(self.hparams, "GPT4Rec")
        if query_decoding not in ("beam", "sample"):
            raise ValueError(f"query_decoding must be 'beam' or 'sample', got {query_decoding!r}")
        if not item_titles:
            raise ValueError("GPT4Rec needs the item titles (link data.item_titles to the model)")
        self.item_titles = list(item_titles)
        self.num_items = len(item_titles)
        self.tokenizer = load_tokenizer(generator)
        self.generator = load_causal_lm(generator, pretrained, "lora" if use_peft else "none", lora_rank,
                                        lora_target_modules)  # fmt: skip
        self.prompts = TitlePrompts(self.tokenizer, self.item_titles, PROMPT_START, PROMPT_END, max_history,
                                    max_title_tokens, context_length(self.generator))  # fmt: skip
        self.title_ids = self.prompts.title_ids
        popularity = torch.as_tensor(item_popularity if item_popularity is not None else [0.0] * self.num_items)
        self.register_buffer("popularity_order", popularity.argsort(descending=True, stable=True), persistent=False)
        self.top_k = sorted(set(top_k))
        self.recall = torch.nn.ModuleDict({s: RankingMetrics(self.top_k) for s in ("test",)})
        categories = item_categories or [[] for _ in range(self.num_items)]
        self.beyond = torch.nn.ModuleDict({"test": BeyondAccuracyMetrics(categories, self.top_k)})
        self.bm25_k1, self.bm25_b = float(bm25_k1_grid[0]), float(bm25_b_grid[0])
        self.bm25_grid: list[dict] = []
        self._validation: list[tuple[list[list[str]], list[set[int]], Tensor]] = []
        self.counts = {"empty_history": 0, "empty_query_results": 0, "filled_from_popularity": 0}

    def setup(self, stage: str) -> None:
        check_sizes_match(self, self.trainer.datamodule)

    # ------------------------------------------------------------------ prompts
    def prompt_ids(self, history: Sequence[int], target: int | None = None, request: str | None = None) -> list[int]:
        """Token ids of the prompt for ``history`` (item indices, oldest first), then ``The customer asks for:
        <request>.`` when a free-text ``request`` is given, plus the target title and end-of-text when ``target``
        is given. Oldest items are dropped if it would not fit."""
        middle = f" The customer asks for: {request.strip()}." if request else ""
        reserve = self.hparams.max_query_tokens if target is None else 0
        return self.prompts.ids(history, target, reserve=reserve, middle=middle)

    # ------------------------------------------------------------------ training
    def training_inputs(self, histories: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``input_ids``, ``attention_mask`` and ``labels`` (-100 except on the target title and
        end-of-text) for prompts of ``histories`` ``[B, H]`` followed by ``targets`` ``[B]``, left-padded
        so that every target ends at the last position."""
        pairs = [(h, t) for h, t in zip(histories.tolist(), targets.tolist()) if self.title_ids[t]]
        input_ids, attention_mask = pad_left([self.prompt_ids(h, t) for h, t in pairs], self.tokenizer.pad_token_id,
                                             self.device)  # fmt: skip
        return input_ids, attention_mask, target_labels(input_ids, [len(self.title_ids[t]) + 1 for _, t in pairs])

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        input_ids, attention_mask, labels = self.training_inputs(batch["history"], batch["item"])
        loss, _ = target_token_loss(self.generator, input_ids, attention_mask, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(input_ids))
        return loss

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, min(self.hparams.warmup_steps, total // 2), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ queries and retrieval
    def chat_prompt_ids(self, history: Sequence[int], request: str) -> list[int] | None:
        """The free-text ``request`` and the latest purchases as one user turn of the generator's chat template
        (an Instruct model zero-shot); ``None`` when the tokenizer has no chat template."""
        if not getattr(self.tokenizer, "chat_template", None):
            return None
        titles = [self.item_titles[i] for i in history if i >= 0][-self.hparams.max_history :]
        bought = "; ".join(titles) if titles else "nothing yet"
        content = (f"A customer has bought: {bought}. The customer asks for: {request.strip()}. "
                   "Write a short search query for a product to recommend.")  # fmt: skip
        ids = self.tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # transformers 5 returns a BatchEncoding

    @torch.no_grad()
    def generate_queries(self, histories: Tensor, request: str | None = None, chat: bool = False) -> list[list[str]]:
        """``num_queries`` queries per user: beam search (deterministic, best beam first) or samples. A free-text
        ``request`` goes into every prompt (training prompts have none: the generator follows it as far as its
        pretraining lets it); with ``chat`` it is asked through the chat template instead (a zero-shot Instruct
        generator), where the tokenizer has one. History-only queries keep the paper's plain prompt."""
        histories_list = histories.tolist()
        self.counts["empty_history"] += sum(1 for h in histories_list if not any(i >= 0 for i in h))
        prompts = [self.prompt_ids(h, request=request) for h in histories_list]
        if chat and request:
            chats = [self.chat_prompt_ids(h, request) for h in histories_list]
            prompts = [c if c is not None else p for c, p in zip(chats, prompts)]
        input_ids, attention_mask = pad_left(prompts, self.tokenizer.pad_token_id, self.device)
        m = self.hparams.num_queries
        if self.hparams.query_decoding == "beam":  # the paper: the m best beams
            decoding = dict(num_beams=m, do_sample=False)
        else:  # m independent nucleus samples: more varied queries than near-duplicate beams
            decoding = dict(do_sample=True, top_p=self.hparams.sampling_top_p, top_k=0)
        output = generate_sharing_prompt(
            self.generator, input_ids, attention_mask, num_return_sequences=m, **decoding,
            max_new_tokens=self.hparams.max_query_tokens, pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )  # fmt: skip
        texts = self.tokenizer.batch_decode(output[:, input_ids.shape[1] :], skip_special_tokens=True)
        return [[q.strip() for q in texts[u * m : (u + 1) * m]] for u in range(len(histories_list))]

    def recommend(
        self, queries: list[list[str]], known: list[set[int]], k1: float, b: float, count: bool = True
    ) -> Tensor:
        """``[B, max K]`` merged item lists for each user's queries, known items excluded; ``count``
        adds queries without results and lists filled from popularity to :attr:`counts`."""
        index = title_index(self.item_titles, k1, b)
        k = max(self.top_k)
        per_query = max(k, 1)
        lists = []
        for user_queries, exclude in zip(queries, known):
            results = index.search(user_queries, per_query + len(exclude))
            merged = rank_merge(results, k, exclude)
            if count:
                self.counts["empty_query_results"] += sum(1 for r in results if not r)
                self.counts["filled_from_popularity"] += len(merged) < k
            if len(merged) < k:
                merged = fill_from(merged, self.popularity_order, k, exclude)
            lists.append(merged)
        return to_tensor(lists, k)

    @staticmethod
    def known_items(batch: Batch) -> list[set[int]]:
        if "seen_mask" in batch:
            return [set(torch.nonzero(row).squeeze(1).tolist()) for row in batch["seen_mask"]]
        return [set(i for i in row if i >= 0) for row in batch["history"].tolist()]

    def ranked_scores(self, top_items: Tensor) -> Tensor:
        """Scores that reproduce the ranked lists (unlisted items: -inf) for :class:`RankingMetrics`."""
        k = top_items.shape[1]
        scores = torch.full((len(top_items), self.num_items), float("-inf"), device=top_items.device)
        rank_scores = (k - torch.arange(k, dtype=torch.float, device=top_items.device)).expand(len(top_items), -1)
        rows = torch.arange(len(top_items), device=top_items.device).unsqueeze(1).expand(-1, k)
        valid = top_items >= 0
        scores[rows[valid], top_items[valid]] = rank_scores[valid]
        return scores

    # ------------------------------------------------------------------ validation: BM25 grid search
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        queries = self.generate_queries(batch["history"])
        self._validation.append((queries, self.known_items(batch), batch["target_item"].cpu()))

    def bm25_grid_search(self, validation: list, reduce=lambda hits: hits) -> list[dict]:
        """``Recall@max K`` of each (k1, b) in the grid on stored ``(queries, known items, targets)``;
        ``reduce`` sums the hit counts across processes."""
        k = max(self.top_k)
        grid = []
        for k1 in self.hparams.bm25_k1_grid:
            for b in self.hparams.bm25_b_grid:
                hits = torch.zeros(2, dtype=torch.float64)  # [hits, users]
                for queries, known, targets in validation:
                    top = self.recommend(queries, known, k1, b, count=False)
                    # A target of -1 (held-out item unseen in training) is a miss, not a match of an empty slot.
                    hits[0] += ((top == targets.unsqueeze(1)).any(1) & (targets >= 0)).sum()
                    hits[1] += len(targets)
                hits = reduce(hits)
                grid.append({"k1": float(k1), "b": float(b), f"Recall@{k}": float(hits[0] / hits[1].clamp(min=1))})
        return grid

    def on_validation_epoch_end(self) -> None:
        k = max(self.top_k)
        grid = self.bm25_grid_search(
            self._validation, lambda hits: self.trainer.strategy.reduce(hits.to(self.device), reduce_op="sum").cpu()
        )
        self._validation.clear()
        best = max(grid, key=lambda row: row[f"Recall@{k}"])
        self.bm25_k1, self.bm25_b, self.bm25_grid = best["k1"], best["b"], grid
        self.log_dict({f"val/Recall@{k}": best[f"Recall@{k}"], "val/bm25_k1": best["k1"], "val/bm25_b": best["b"]})
        rank_zero_info(
            f"BM25 grid on validation (Recall@{k}): {json.dumps(grid)}; chosen k1={best['k1']}, b={best['b']}"
        )

    # ------------------------------------------------------------------ test and predict
    def test_step(self, batch: Batch, batch_idx: int) -> None:
        queries = self.generate_queries(batch["history"])
        top = self.recommend(queries, self.known_items(batch), self.bm25_k1, self.bm25_b).to(self.device)
        targets = batch["target_item"].unsqueeze(1)
        self.recall["test"].update(self.ranked_scores(top), targets)
        self.beyond["test"].update(top, targets)

    def on_test_epoch_end(self) -> None:
        values = {**self.recall["test"].compute(), **self.beyond["test"].compute()}
        self.log_dict({f"test/{name}": value for name, value in values.items()})
        self.recall["test"].reset()
        self.beyond["test"].reset()
        if any(self.counts.values()):
            log.warning("GPT4Rec: %s", ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.counts.items()))
        self.counts = dict.fromkeys(self.counts, 0)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict:
        """Top-K items with the queries that found them: ``user``, ``items``, ``scores``, ``queries``."""
        queries = self.generate_queries(batch["history"])
        top = self.recommend(queries, self.known_items(batch), self.bm25_k1, self.bm25_b)
        k = top.shape[1]
        scores = (k - torch.arange(k, dtype=torch.float)).expand(len(top), -1).clone()
        return {"user": batch["user"], "items": top, "scores": scores, "queries": queries}

    # ------------------------------------------------------------------ checkpoints
    def frozen_pretrained_state(self) -> dict[str, Tensor]:
        """The generator's pretrained, frozen weights (all but LoRA's): refilled by name, never checkpointed."""
        return frozen_pretrained_weights(self.generator, "generator", self.hparams.pretrained)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["model_class"] = type(self).__name__
        checkpoint["bm25"] = {"k1": self.bm25_k1, "b": self.bm25_b, "grid": self.bm25_grid}
        drop_frozen_weights(checkpoint, self.frozen_pretrained_state())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        refill_frozen_weights(checkpoint, self.frozen_pretrained_state())
        bm25 = checkpoint.get("bm25", {})
        self.bm25_k1, self.bm25_b = bm25.get("k1", self.bm25_k1), bm25.get("b", self.bm25_b)
        self.bm25_grid = bm25.get("grid", [])
