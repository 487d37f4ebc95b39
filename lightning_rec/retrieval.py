"""BM25 over item titles (the ``bm25s`` library) and GPT4Rec's rank-based merge of several result lists."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from functools import lru_cache

import bm25s
import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)
# bm25s sets its own logger to DEBUG at import, so every index build would print a line.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class TitleIndex:
    """A BM25 index of one catalog's titles; ``search`` returns item indices, best first.

    Items with an empty title are indexed as empty documents, so no query retrieves them (logged).
    Use :func:`title_index` to build each (catalog, k1, b) once and reuse it.

    Example:
        >>> index = TitleIndex(["red lipstick", "blue pen", "lipstick"], k1=1.2, b=0.75)
        >>> index.search(["lipstick", "zzz"], k=2)  # the shorter title scores higher
        [[2, 0], []]
    """

    def __init__(self, titles: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.num_items, self.k1, self.b = len(titles), k1, b
        empty = sum(1 for title in titles if not title.strip())
        if empty:
            log.warning("%d items have an empty title; BM25 never retrieves them", empty)
        self.retriever = bm25s.BM25(k1=k1, b=b)
        # A placeholder token keeps empty titles as (unmatchable) documents, so indices stay aligned.
        corpus = [title if title.strip() else "\x00" for title in titles]
        self.retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """Top ``k`` item indices per query with a positive score; a query matching nothing gets ``[]``."""
        if not queries:
            return []
        k = min(k, self.num_items)
        tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False, return_ids=False)
        # bm25s cannot search with an empty token list: such queries get no result.
        searchable = [i for i, query_tokens in enumerate(tokens) if query_tokens]
        results: list[list[int]] = [[] for _ in queries]
        if searchable:
            documents, scores = self.retriever.retrieve(
                [tokens[i] for i in searchable], k=k, show_progress=False, n_threads=0
            )
            for row, i in enumerate(searchable):
                results[i] = [int(d) for d, s in zip(documents[row], scores[row]) if s > 0]
        return results


@lru_cache(maxsize=16)
def _cached_index(digest: str, titles: tuple[str, ...], k1: float, b: float) -> TitleIndex:
    return TitleIndex(titles, k1, b)


def title_index(titles: Sequence[str], k1: float, b: float) -> TitleIndex:
    """The BM25 index of ``titles`` with ``k1``/``b``, built once per process and catalog."""
    titles = tuple(titles)
    digest = hashlib.sha256("\x1e".join(titles).encode()).hexdigest()
    return _cached_index(digest, titles, float(k1), float(b))


def rank_merge(ranked_lists: Sequence[Sequence[int]], k: int, exclude: set[int] | None = None) -> list[int]:
    """GPT4Rec's merge: from each list in beam order take its next ``k // m`` new items (skipping items
    already taken or in ``exclude``), then fill up to ``k`` from the next ranks, round-robin.

    Example:
        >>> rank_merge([[1, 2, 3, 4], [2, 5, 6, 7]], k=4, exclude={3})
        [1, 2, 5, 6]
    """
    exclude = exclude or set()
    taken: list[int] = []
    seen = set(exclude)
    cursors = [0] * len(ranked_lists)

    def take_from(j: int, count: int) -> None:
        ranked = ranked_lists[j]
        while count > 0 and cursors[j] < len(ranked) and len(taken) < k:
            item = ranked[cursors[j]]
            cursors[j] += 1
            if item not in seen:
                seen.add(item)
                taken.append(item)
                count -= 1

    share = k // max(1, len(ranked_lists))
    for j in range(len(ranked_lists)):
        take_from(j, share)
    while len(taken) < k and any(c < len(r) for c, r in zip(cursors, ranked_lists)):
        for j in range(len(ranked_lists)):
            take_from(j, 1)
    return taken


def fill_from(ranked: list[int], fallback: Tensor, k: int, exclude: set[int]) -> list[int]:
    """``ranked`` padded to ``k`` with the first items of ``fallback`` (e.g. by popularity) not
    already present or excluded."""
    if len(ranked) >= k:
        return ranked[:k]
    present = set(ranked) | exclude
    extra = [int(i) for i in fallback.tolist() if int(i) not in present]
    return ranked + extra[: k - len(ranked)]


def to_tensor(lists: Sequence[Sequence[int]], k: int) -> Tensor:
    """``[len(lists), k]`` item indices, ``-1`` where a list is shorter."""
    out = np.full((len(lists), k), -1, dtype=np.int64)
    for row, items in enumerate(lists):
        out[row, : len(items[:k])] = items[:k]
    return torch.from_numpy(out)
