"""Writes the top-K recommendations of ``predict`` with item ids and titles."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

log = logging.getLogger(__name__)


class TopKPredictionWriter(BasePredictionWriter):
    """Writes ``user_id, rank, item_id, title, score`` rows for ``Trainer.predict``.

    Works with any module whose ``predict_step`` returns ``user`` ``[B]``, ``items`` ``[B, K]`` and
    ``scores`` ``[B, K]`` (as every :class:`~lightning_rec.models.Recommender` does) and any data
    module exposing ``user_ids`` (raw id per user index) and ``item_table`` (``item_id``, ``title``).
    When the prediction also has ``history`` ``[B, H]`` and ``attention`` ``[B, K, H]`` (models with
    cross-attention), an ``explanation`` column names the history items that weighed most; with
    ``queries`` (one list of strings per user, as GPT4Rec returns) a ``queries`` column lists them.
    Under several processes each rank writes ``<stem>.rank<N><suffix>``. Slots marked ``-1`` (a user
    with fewer than K items left to recommend) are skipped, so such a user gets fewer rows; their
    number is logged.

    Args:
        output_path: ``.csv`` or ``.jsonl`` file to write.

    Example:
        >>> writer = TopKPredictionWriter("predictions/top10.csv")
        >>> trainer = L.Trainer(callbacks=[writer])  # then trainer.predict(model, datamodule=dm)
    """

    def __init__(self, output_path: str = "predictions/top_k.csv") -> None:
        super().__init__(write_interval="epoch")
        self.empty_slots = 0
        self.output_path = Path(output_path)
        if self.output_path.suffix not in (".csv", ".jsonl"):
            raise ValueError(f"output_path must end in .csv or .jsonl, got {output_path!r}")

    def _rows(self, trainer: L.Trainer, predictions: list[dict[str, Any]]):
        datamodule = trainer.datamodule
        user_ids, items = datamodule.user_ids, datamodule.item_table
        item_ids, titles = items["item_id"].tolist(), items["title"].tolist()
        for batch in predictions:
            for b, user in enumerate(batch["user"].tolist()):
                for k, (item, score) in enumerate(zip(batch["items"][b].tolist(), batch["scores"][b].tolist())):
                    if item < 0:  # an empty slot: the user has fewer allowed items than K
                        self.empty_slots += 1
                        continue
                    row = {"user_id": str(user_ids[user]), "rank": k + 1, "item_id": str(item_ids[item]),
                           "title": titles[item], "score": round(float(score), 6)}  # fmt: skip
                    if "attention" in batch:
                        row["explanation"] = self._explain(batch["history"][b], batch["attention"][b, k], titles)
                    if "queries" in batch:  # generative retrieval: the queries that produced the list
                        row["queries"] = " | ".join(batch["queries"][b])
                    yield row

    @staticmethod
    def _explain(history, weights, titles: list[str], top: int = 3) -> str:
        """``title (weight); ...`` for the history items with the largest attention weights."""
        order = weights.argsort(descending=True)[:top]
        return "; ".join(f"{titles[int(history[i])]} ({float(weights[i]):.2f})" for i in order if history[i] >= 0)

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: list[Any], batch_indices: Any
    ) -> None:
        path = self.output_path
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.empty_slots = 0
        rows = list(self._rows(trainer, predictions))
        if self.empty_slots:
            log.info("%d top-K slots left empty: their users have fewer than K new items", self.empty_slots)
        with open(path, "w", encoding="utf-8", newline="") as f:
            if path.suffix == ".jsonl":
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            else:
                fields = list(rows[0]) if rows else ["user_id", "rank", "item_id", "title", "score"]
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        rank_zero_info(f"wrote {len(rows)} recommendations to {path}")
