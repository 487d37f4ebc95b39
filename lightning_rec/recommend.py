"""Recommendations for one request: a user id, a free-text request, or both, plus K.

    python -m lightning_rec.recommend --user 12 --k 5 --collaborative checkpoints/neumf.ckpt --collaborative-model NeuMF
    python -m lightning_rec.recommend --request "a light moisturizer for dry skin, not greasy" \\
        --data-config configs/data/beauty.yaml --generative checkpoints/m6rec.ckpt --generative-model M6Rec

The hybrid rule: a request with text goes to the generative side (M6Rec's catalog-constrained
generation, or GPT4Rec's queries with the request as the first one, then BM25), topped up by BM25
over the item texts; a known user without text goes to the collaborative model; without either
model, or for a new user (no id) without text, popularity. A category narrows every path. Results
are new to the user, deduplicated, at most K, each with its item id, title, categories, rank (1 is the
best; the paths' own scores are not comparable, so none is shown) and the reason (which path, which query)
- printed as JSON. Negations in a request ("not greasy", "without fragrance", "no lipstick") become
exclusions: items whose title or categories contain an excluded word are dropped (the count is in their
reasons' request summary), and only the rest of the request is searched. When nothing in the catalog matches
the request, the popular items that fill the list say so in their reason.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml

from lightning_rec.errors import debug_requested, reported_errors

if TYPE_CHECKING:  # the models pull in transformers and peft: imported where used, so --help is instant
    from torch import Tensor

    from lightning_rec.data.datamodule import InteractionDataModule
    from lightning_rec.models import GPT4Rec, M6Rec, Recommender

#: Arguments a model may take from the data module (what the CLI links).
LINKED = ("num_users", "num_items", "item_titles", "item_texts", "item_categories", "item_popularity")
DEFAULT_HISTORY = 15
#: A negation cue, then the words it negates ("or" continues it), up to a comma, "and", "but" or the end.
NEGATION = re.compile(r"\b(?:not|no|without|non|except|avoid)[\s-]+([^,;.]+?)(?=\s+(?:and|but)\b|[,;.]|$)", re.I)


def split_negations(request: str) -> tuple[str, list[str]]:
    """The request without its negated phrases, and the negated words (lower case).

    Example:
        >>> split_negations("moisturizer for dry skin, not greasy")
        ('moisturizer for dry skin', ['greasy'])
        >>> split_negations("a comedy without romance or musicals")
        ('a comedy', ['romance', 'musicals'])
        >>> split_negations("red lipstick, no glitter and long lasting")
        ('red lipstick, long lasting', ['glitter'])
    """
    excluded = [word for phrase in NEGATION.findall(request) for word in re.findall(r"[\w'-]+", phrase.lower())
                if word not in ("or", "a", "an", "any")]  # fmt: skip
    if not excluded:
        return request.strip(), []
    positive = NEGATION.sub("", request)
    positive = re.sub(r"[,;]?\s*\b(?:and|but)\s+(?=\S)", ", ", positive)  # "X, and Y" left by a removed negation
    positive = re.sub(r"\s+", " ", re.sub(r"(?:\s*[,;])+", ",", positive)).strip(" ,;")
    return re.sub(r"^(?:and|but)\b\s*|\s*\b(?:and|but)$", "", positive), excluded


class HybridRecommender:
    """Routes each request to the collaborative, generative or popularity path and post-processes.

    Args:
        datamodule: the data the models were trained on (catalog, users, what each user has).
        collaborative: any trained :class:`~lightning_rec.models.Recommender` (NeuMF, SASRec, ...).
        generative: a trained :class:`~lightning_rec.models.M6Rec` or :class:`~lightning_rec.models.GPT4Rec`.
        history_length: latest items given to models that read histories.
        zero_shot: the generative model is an untrained Instruct LM: free-text requests go through its chat
            template (GPT4Rec) instead of the plain prompt it was never trained on.

    Example:
        >>> from lightning_rec.data_modules import MovieLens1MDataModule
        >>> hybrid = HybridRecommender(MovieLens1MDataModule())
        >>> [(r["title"], r["reason"]) for r in hybrid.recommend(request="a crypt scream", k=1)]
        [('Return Crypt Scream (1953)', 'BM25 match for the request')]
    """

    def __init__(
        self,
        datamodule: InteractionDataModule,
        collaborative: Recommender | None = None,
        generative: M6Rec | GPT4Rec | None = None,
        history_length: int = DEFAULT_HISTORY,
        zero_shot: bool = False,
    ) -> None:
        data = datamodule.data
        for role, model in [("collaborative", collaborative), ("generative", generative)]:
            if model is not None and model.num_items != data.num_items:
                raise ValueError(
                    f"the {role} model ranks {model.num_items} items but the data's catalog has {data.num_items}: "
                    "it was trained on another dataset or split"
                )
        for model in (collaborative, generative):
            if model is not None:
                model.eval()  # no dropout in answers
        self.data, self.collaborative, self.generative = data, collaborative, generative
        self.history_length, self.zero_shot = history_length, zero_shot
        self.user_index = {str(raw): index for index, raw in enumerate(data.user_ids)}
        self.titles = datamodule.item_titles
        self.categories = datamodule.item_categories
        self.popularity_order = datamodule.item_popularity.argsort(descending=True, stable=True).tolist()
        # Titles and categories together: a request may name either.
        self.search_texts = [f"{t} {' '.join(c)}" for t, c in zip(self.titles, self.categories)]

    # ------------------------------------------------------------------ inputs
    def user_items(self, user: int) -> list[int]:
        """Everything the user has, oldest first: training items, then validation and test items."""
        data = self.data
        items = data.train_items[data.train_indptr[user] : data.train_indptr[user + 1]].tolist()
        return items + [int(t[user]) for t in (data.val_items, data.test_items) if t[user] >= 0]

    def allowed_items(self, category: str | None) -> set[int] | None:
        if category is None:
            return None
        wanted = category.strip().lower()
        allowed = {i for i, cats in enumerate(self.categories) if wanted in (c.lower() for c in cats)}
        if not allowed:
            known = sorted({c for cats in self.categories for c in cats})
            raise ValueError(f"unknown category {category!r}; the catalog has {known[:20]}")
        return allowed

    # ------------------------------------------------------------------ the rule
    def recommend(
        self, user: str | int | None = None, request: str | None = None, k: int = 10, category: str | None = None
    ) -> list[dict]:
        """At most ``k`` new items for ``user`` (a raw user id) and/or a free-text ``request``."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if request is not None and not request.strip():
            raise ValueError("the request is empty; give some text or leave it out")
        if user is None and request is None:
            raise ValueError("give a user id, a request, or both")
        user_index = None
        if user is not None:
            if str(user) not in self.user_index:
                raise ValueError(f"unknown user id {user!r} (the data has {len(self.user_index)} users)")
            user_index = self.user_index[str(user)]
        items = self.user_items(user_index) if user_index is not None else []
        history = torch.tensor([([-1] + items)[-self.history_length :]])
        exclude, allowed = set(items), self.allowed_items(category)
        excluded_words: list[str] = []
        if request is not None:
            request, excluded_words = split_negations(request)
            if excluded_words:
                allowed = self._without_words(excluded_words, allowed)
            if not request:
                request = None  # only exclusions: the other paths, minus the excluded items

        results: list[tuple[int, str]] = []
        if request is not None:
            results += self._generative(history, request, k, exclude, allowed)
            results += self._text_search(request, k, exclude | {r[0] for r in results}, allowed)
        elif user_index is not None and self.collaborative is not None:
            results += self._collaborative(user_index, history, k, exclude, allowed)
        taken = exclude | {r[0] for r in results}
        reason = "popular" if user_index is not None else "popular (new user)"
        if request is not None and not results:
            reason = (
                f"popular: nothing in the catalog matches the request {request!r} (no title or category shares a word)"
            )
        if excluded_words:
            reason += f"; items with {', '.join(map(repr, excluded_words))} left out"
        results += [(item, reason) for item in self._popular(k, taken, allowed)]

        unique: dict[int, str] = {}
        for item, why in results:
            unique.setdefault(item, why)
        return [
            {"item_id": str(self.data.items["item_id"].iloc[item]), "title": self.titles[item],
             "categories": self.categories[item], "rank": rank, "reason": why}
            for rank, (item, why) in enumerate(list(unique.items())[:k], start=1)
        ]  # fmt: skip

    def _without_words(self, words: list[str], allowed: set[int] | None) -> set[int]:
        """``allowed`` (every item when ``None``) minus the items whose title or categories contain one of ``words``."""
        pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.I)
        candidates = range(len(self.titles)) if allowed is None else allowed
        return {i for i in candidates if not pattern.search(self.search_texts[i])}

    def _keep(self, item: int, exclude: set[int], allowed: set[int] | None) -> bool:
        return item not in exclude and (allowed is None or item in allowed)

    def _generative(self, history: Tensor, request: str, k: int, exclude: set[int], allowed) -> list:
        from lightning_rec.models import GPT4Rec, M6Rec
        from lightning_rec.retrieval import rank_merge, title_index

        model = self.generative
        if isinstance(model, M6Rec):
            # Beam search returns at most num_beams titles; ask for more when a category filters them.
            found = model.generate_items(history, k if allowed is None else 4 * k, request=request)[0]
            kept = [i for i in found if self._keep(i, exclude, allowed)][:k]
            return [(i, f"generated by M6Rec for the request {request!r}") for i in kept]
        if isinstance(model, GPT4Rec):
            queries = [request] + model.generate_queries(history, request=request, chat=self.zero_shot)[0]
            index = title_index(self.titles, model.bm25_k1, model.bm25_b)
            lists = [[i for i in found if self._keep(i, exclude, allowed)] for found in index.search(queries, 4 * k)]
            merged = rank_merge(lists, k)
            # The reason names the first query (in beam order) that found the item.
            source = {item: q for q, found in reversed(list(zip(queries, lists))) for item in found}
            return [(i, f"GPT4Rec query {source[i]!r}") for i in merged]
        return []

    def _text_search(self, request: str, k: int, exclude: set[int], allowed) -> list:
        from lightning_rec.retrieval import title_index

        index = title_index(self.search_texts, 1.2, 0.75)
        found = index.search([request], len(self.titles))[0]  # every item with a positive score
        kept = [i for i in found if self._keep(i, exclude, allowed)][:k]
        return [(i, "BM25 match for the request") for i in kept]

    def _collaborative(self, user: int, history: Tensor, k: int, exclude: set[int], allowed) -> list:
        model = self.collaborative
        with torch.no_grad():
            scores = model.score_all(torch.tensor([user]), history).float()[0]
        scores[list(exclude)] = float("-inf")
        if allowed is not None:
            mask = torch.ones_like(scores, dtype=torch.bool)
            mask[list(allowed)] = False
            scores[mask] = float("-inf")
        top = scores.topk(min(k, len(scores)))
        name = type(model).__name__
        return [(int(i), f"collaborative ({name})") for s, i in zip(top.values, top.indices) if s > float("-inf")]

    def _popular(self, k: int, exclude: set[int], allowed) -> list[int]:
        return [i for i in self.popularity_order if self._keep(i, exclude, allowed)][:k]


def load_model(checkpoint: str, class_name: str, datamodule: InteractionDataModule):
    """A model of ``lightning_rec.models.<class_name>`` from ``checkpoint``, with the data module's
    sizes and item data passed as the CLI links them; a catalog mismatch is a clear error."""
    import lightning_rec.models as models

    cls = getattr(models, class_name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"unknown model {class_name!r}; choose from {sorted(models.__all__)}")
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
    saved = payload.get("hyper_parameters", {})
    parameters = inspect.signature(cls.__init__).parameters
    # Checked before building anything: a model built from another class's arguments could try to
    # download a backbone or silently load a fraction of the weights.
    saved_class = payload.get("model_class")
    foreign = sorted(name for name in saved if not name.startswith("_") and name not in parameters)
    if (saved_class is not None and saved_class != class_name) or (saved_class is None and foreign):
        what = saved_class or f"model with arguments {foreign} that {class_name} does not take"
        raise ValueError(f"checkpoint {checkpoint} holds a {what}, not a {class_name}: name its model class")
    for size in ("num_users", "num_items"):
        if size in saved and saved[size] != getattr(datamodule, size):
            raise ValueError(
                f"checkpoint {checkpoint} was trained with {size}={saved[size]}, the data has "
                f"{getattr(datamodule, size)}: it does not match this catalog"
            )
    linked = linked_arguments(cls, datamodule)
    try:
        return cls.load_from_checkpoint(checkpoint, map_location="cpu", **linked)
    except RuntimeError as err:
        if saved_class is not None or "state_dict" not in str(err):
            raise
        # A checkpoint from before model classes were recorded: say which class its weights fit.
        guess = class_with_keys(set(payload["state_dict"]), saved, datamodule)
        hint = f"its weights are a {guess}'s: name that class" if guess else "name the class it was trained as"
        raise ValueError(f"checkpoint {checkpoint} records no model class and its weights do not fit a {class_name}; "
                         f"{hint}") from None  # fmt: skip


def linked_arguments(cls: type, datamodule: InteractionDataModule) -> dict:
    """The data module's sizes and item data that ``cls`` takes, as the CLI links them."""
    parameters = inspect.signature(cls.__init__).parameters
    linked = {name: getattr(datamodule, name) for name in LINKED if name in parameters}
    if "item_popularity" in linked:
        linked["item_popularity"] = linked["item_popularity"].tolist()
    return linked


def class_with_keys(keys: set[str], saved: dict, datamodule: InteractionDataModule) -> str | None:
    """The ID-only model class (cheap to build) whose state dict has exactly ``keys``, built from the
    checkpoint's saved arguments; ``None`` when none has."""
    import lightning_rec.models as models

    for name in sorted(models.__all__):
        cls = getattr(models, name)
        parameters = inspect.signature(cls.__init__).parameters
        if "backbone" in parameters or name == "Recommender":
            continue  # text models load a language model to be built
        arguments = {k: v for k, v in saved.items() if k in parameters}
        try:
            candidate = cls(**{**arguments, **linked_arguments(cls, datamodule)})
        except (TypeError, ValueError):
            continue
        if set(candidate.state_dict()) == keys:
            return name
    return None


def build_datamodule(config: str | None) -> InteractionDataModule:
    """The ``data`` section of a fit config (or a data-only config); the embedded default without one."""
    if config is None:
        from lightning_rec.data_modules import MovieLens1MDataModule

        return MovieLens1MDataModule()
    path = Path(config)
    if not path.is_file() and (Path(__file__).resolve().parent.parent / "configs" / config).is_file():
        path = Path(__file__).resolve().parent.parent / "configs" / config
    from lightning.pytorch.cli import instantiate_class

    section = yaml.safe_load(path.read_text())
    section = section.get("data", section)
    if "class_path" not in section:
        raise ValueError(f"{config}: expected a 'data' section with class_path and init_args")
    return instantiate_class((), section)


def main(argv: list[str] | None = None) -> list[dict]:
    """The entry point; our input errors end as one line, ``error: <message>`` (``--debug``: the traceback)."""
    argv, debug = debug_requested(sys.argv[1:] if argv is None else list(argv))
    with reported_errors(debug):
        return recommend_from_arguments(argv)


def recommend_from_arguments(argv: list[str]) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", help="raw user id as in the dataset")
    parser.add_argument("--request", help="free-text request")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--category", help="only items of this category (genre)")
    parser.add_argument("--data-config", help="YAML with the data section (default: the embedded dataset)")
    parser.add_argument("--collaborative", help="checkpoint of a collaborative model")
    parser.add_argument("--collaborative-model", default="NeuMF", help="its class in lightning_rec.models")
    parser.add_argument("--generative", help="checkpoint of M6Rec or GPT4Rec")
    parser.add_argument("--generative-model", default="M6Rec", choices=["M6Rec", "GPT4Rec"])
    parser.add_argument("--generator", help="zero-shot GPT4Rec with this LM and no checkpoint (e.g. smollm2-135m)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    datamodule = build_datamodule(args.data_config)
    collaborative = load_model(args.collaborative, args.collaborative_model, datamodule) if args.collaborative else None
    if args.generative and args.generator:
        raise ValueError("give --generative (a trained checkpoint) or --generator (a zero-shot LM), not both")
    generative = load_model(args.generative, args.generative_model, datamodule) if args.generative else None
    if args.generator:
        from lightning_rec.models import GPT4Rec

        generative = GPT4Rec(datamodule.item_titles, datamodule.item_categories, datamodule.item_popularity.tolist(),
                             generator=args.generator, pretrained=True)  # fmt: skip
    hybrid = HybridRecommender(datamodule, collaborative, generative, zero_shot=args.generator is not None)
    results = hybrid.recommend(args.user, args.request, args.k, args.category)
    json.dump(results, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return results


if __name__ == "__main__":
    main()
