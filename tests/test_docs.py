"""The numbers in the README and docs/ are the numbers in benchmarks/results/*.json."""

import json
from pathlib import Path

import pytest

from benchmarks.sequential import headline, recall_markdown

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every table of a markdown text, as rows keyed by the header's cells."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and lines[i + 1].startswith("|---"):
            header = [cell.strip() for cell in line.strip("|").split("|")]
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")))))
            tables.append(rows)
    return tables


NCF_COLUMNS = [("HR@10 (sampled-99)", "sampled-99", "HR@10"), ("NDCG@10 (sampled-99)", "sampled-99", "NDCG@10"),
               ("HR@10 (full)", "full", "HR@10"), ("NDCG@10 (full)", "full", "NDCG@10")]  # fmt: skip


def rows_of(name: str) -> list[dict]:
    return json.loads((RESULTS / f"{name}.json").read_text())


@pytest.mark.parametrize(("page_table", "results"), [(0, "ncf_ml1m"), (1, "ncf_ml100k")])
def test_the_ncf_tables_are_their_json_rows(page_table, results):
    table = markdown_tables((REPO / "docs" / "benchmarks" / "ncf.md").read_text())[page_table]
    rows = {(r["model"], r["protocol"]): r for r in rows_of(results)}
    assert table
    for line in table:
        for column, protocol, metric in NCF_COLUMNS:
            value = rows[(line["model"], protocol)][metric]
            if results == "ncf_ml100k" and line["model"] == "ItemPop" and protocol == "sampled-99":
                continue  # the page dates this row against today's sampler in its text
            assert float(line[column]) == pytest.approx(value, abs=5.01e-4), (
                line["model"],
                column,
            )  # 3 decimals, either rounding


def test_the_gpt2_tables_quote_the_peak_memory_of_their_summary_rows():
    summaries = {}
    for row in rows_of("gpt2_ml1m") + rows_of("gpt2_ml100k"):
        if isinstance(row.get("seed"), str) and row.get("peak_memory_mb") is not None:
            summaries.setdefault(row["model"].split("[")[0], set()).add(row["peak_memory_mb"])
    checked = 0
    for table in markdown_tables((REPO / "docs" / "benchmarks" / "gpt2.md").read_text()):
        for line in table:
            if "peak RSS MB (max over seeds)" in line:
                assert int(line["peak RSS MB (max over seeds)"]) in summaries[line["model"].split("[")[0]]
                checked += 1
    assert checked >= 12


def test_the_readme_headline_is_generated_from_the_sequential_rows():
    assert headline(rows_of("sequential"), "beauty", "ce", 64) in (REPO / "README.md").read_text()


def test_the_feedforward_ablation_table_is_generated_from_the_sequential_rows():
    table = headline(rows_of("sequential"), "beauty", "ce", 64, feedforward_dim=64)
    assert table in (REPO / "docs" / "benchmarks" / "sequential.md").read_text()


def test_the_sasrec_block_table_is_generated_from_the_sequential_rows():
    table = headline(rows_of("sequential"), "beauty", "ce", 64, feedforward_dim=64, block="sasrec")
    text = (REPO / "docs" / "benchmarks" / "sequential.md").read_text()
    assert f"<!-- sasrec-block -->\n{table}\n<!-- /sasrec-block -->" in text
    assert f"{table}\n<!-- /sasrec-block -->" in (REPO / "README.md").read_text()


def test_the_readme_recall_table_is_generated_from_its_rows():
    table = recall_markdown(rows_of("beauty_recall_table"), rows_of("sequential"))
    assert table in (REPO / "README.md").read_text()
    assert table in (REPO / "docs" / "benchmarks" / "sequential.md").read_text()
