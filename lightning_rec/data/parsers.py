"""Parsers from the public file formats to an :class:`InteractionLog`.

Each parser checks what it reads and raises :class:`DataFormatError` naming the file and the first
bad line, so a wrong separator or a truncated download fails loudly instead of training on junk.
"""

from __future__ import annotations

import ast
import gzip
import html
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from lightning_rec.data.tables import DataFormatError, InteractionLog

log = logging.getLogger(__name__)

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip


def require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"missing file: {path}")
    return path


def item_text(title: str, categories: list[str], brand: str = "") -> str:
    """The one string the language-model side reads for an item: ``Title | Cat|Cat [| brand]``."""
    parts = [title, "|".join(categories)]
    if brand:
        parts.append(brand)
    return " | ".join(p for p in parts if p)


#: Stands in for a multi-character separator (MovieLens' ``::``), which pyarrow's reader does not take.
_UNIT_SEPARATOR = "\x1f"


def _read_delimited(path: Path, sep: str, names: list[str], numeric: list[str], encoding: str) -> pd.DataFrame:
    """Reads a headerless delimited file with pyarrow's columnar CSV reader: ids and timestamps straight into
    int64 columns, ratings into float64, no Python object per line. If pyarrow rejects the file, the line-by-line
    check runs to name the file and the first bad line (or accepts what pyarrow is stricter about, such as an
    id written ``5.0``). A last line without a newline is reported: the file may be a cut download."""
    raw = path.read_bytes()
    if not raw.strip():
        raise DataFormatError(f"{path}: file is empty")
    if not raw.endswith(b"\n"):
        log.warning("%s: the last line has no newline: the file may be truncated (an interrupted download?)", path)
    delimiter = sep
    if len(sep) > 1:
        raw, delimiter = raw.replace(sep.encode(encoding), _UNIT_SEPARATOR.encode()), _UNIT_SEPARATOR
    types = {
        name: (pa.float64() if name == "rating" else pa.int64()) if name in numeric else pa.string() for name in names
    }
    try:
        table = pacsv.read_csv(
            io.BytesIO(raw),
            read_options=pacsv.ReadOptions(column_names=names, encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
    except pa.ArrowInvalid:
        return _read_delimited_by_line(path, sep, names, numeric, encoding)
    return table.to_pandas()


def _read_delimited_by_line(path: Path, sep: str, names: list[str], numeric: list[str], encoding: str) -> pd.DataFrame:
    """The slow, line-by-line reading that finds and names a bad line; used only once pyarrow has failed."""
    with open(path, encoding=encoding) as f:
        numbered = [(lineno, line) for lineno, line in enumerate(f.read().splitlines(), start=1) if line]
    rows = [line.split(sep) for _, line in numbered]
    for (lineno, line), row in zip(numbered, rows):
        if len(row) != len(names):
            raise DataFormatError(
                f"{path}:{lineno}: expected {len(names)} fields separated by {sep!r}, got {len(row)}: {line[:80]!r}"
            )
    frame = pd.DataFrame(rows, columns=names)
    for column in numeric:
        frame[column] = numeric_column(frame[column], column, lambda row: f"{path}:{numbered[row][0]}")
    return frame


def numeric_column(values: pd.Series, column: str, where) -> pd.Series:
    """Ids and timestamps as integers; ratings as floats (a 4.5 stays 4.5). A value that is not a
    number, or an id or timestamp that is not whole, fails with ``where(row)`` (file and line)."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy())
    if len(bad):
        raise DataFormatError(f"{where(bad[0])}: column {column!r} is not numeric: {values.iloc[bad[0]]!r}")
    if column == "rating":
        return numbers.astype(np.float64)
    fractional = np.flatnonzero((numbers != np.floor(numbers)).to_numpy())
    if len(fractional):
        raise DataFormatError(
            f"{where(fractional[0])}: column {column!r} must be a whole number: {values.iloc[fractional[0]]!r}"
        )
    return numbers.astype(np.int64)


def parse_movielens_movies(path: str | Path, sep: str = "::", encoding: str = "ISO-8859-1") -> pd.DataFrame:
    """``movies.dat``: ``MovieID::Title (Year)::Genre|Genre``."""
    movies = _read_delimited(require_file(path), sep, ["item_id", "title", "genres"], ["item_id"], encoding)
    movies["item_id"] = movies["item_id"].astype(str)
    movies["title"] = movies["title"].str.strip()
    movies["categories"] = movies["genres"].map(lambda g: [x for x in g.split("|") if x])
    movies["text"] = [item_text(t, c) for t, c in zip(movies["title"], movies["categories"])]
    return movies[["item_id", "title", "categories", "text"]]


def parse_movielens_1m(
    data_dir: str | Path, ratings_file: str | Path | None = None, min_rating: float = 0
) -> InteractionLog:
    """MovieLens-1M: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat``.

    ``ratings_file`` may instead point to a CSV with a header holding ``user_id``, ``movie_id``,
    ``rating`` and optionally ``timestamp``; without timestamps the log has no order and the split
    falls back to a seeded random leave-one-out. Ratings below ``min_rating`` are dropped (0 keeps all,
    the implicit-feedback convention of NCF).
    """
    data_dir = Path(data_dir)
    ratings_path = require_file(Path(ratings_file) if ratings_file else data_dir / "ratings.dat")
    items = parse_movielens_movies(data_dir / "movies.dat")
    if ratings_path.suffix == ".csv":
        ratings, ordering = _parse_ratings_csv(ratings_path)
    else:
        ratings = _read_delimited(
            ratings_path,
            "::",
            ["user_id", "item_id", "rating", "order"],
            ["user_id", "item_id", "rating", "order"],
            "ISO-8859-1",
        )
        ordering = "time"
    return _finish_movielens(ratings, items, ordering, min_rating, name="ml-1m", ratings_path=ratings_path)


def _parse_ratings_csv(path: Path) -> tuple[pd.DataFrame, str]:
    frame = pd.read_csv(path)
    if "movie_id" in frame.columns and "item_id" not in frame.columns:
        frame = frame.rename(columns={"movie_id": "item_id"})
    missing = {"user_id", "item_id", "rating"} - set(frame.columns)
    if missing:
        raise DataFormatError(f"{path}:1: header lacks columns {sorted(missing)} (found {list(frame.columns)})")
    for column in ["user_id", "item_id", "rating"] + (["timestamp"] if "timestamp" in frame.columns else []):
        frame[column] = numeric_column(frame[column], column, lambda row: f"{path}:{row + 2}")  # header is line 1
    unresolved = frame["item_id"] < 0
    if unresolved.any():
        log.warning("%s: dropped %d ratings whose movie id is unknown (-1)", path, int(unresolved.sum()))
        frame = frame[~unresolved]
    if "timestamp" in frame.columns:
        return frame.rename(columns={"timestamp": "order"}), "time"
    log.warning("%s has no timestamps: the split will be a seeded random leave-one-out, not by time", path)
    frame["order"] = 0
    return frame, "none"


def _finish_movielens(
    ratings: pd.DataFrame, items: pd.DataFrame, ordering: str, min_rating: float, name: str, ratings_path: Path
) -> InteractionLog:
    if min_rating > 0:
        kept = ratings["rating"] >= min_rating
        log.info("%s: dropped %d ratings below %g", name, int((~kept).sum()), min_rating)
        ratings = ratings[kept]
    ratings = ratings.assign(user_id=ratings["user_id"].astype(str), item_id=ratings["item_id"].astype(str))
    known = ratings["item_id"].isin(items["item_id"])
    if not known.all():
        log.warning("%s: dropped %d ratings of movies missing from the movie file", ratings_path, int((~known).sum()))
        ratings = ratings[known]
    columns = ["user_id", "item_id", "order", "rating"]
    return InteractionLog(ratings[columns].reset_index(drop=True), items, ordering, name)  # type: ignore[arg-type]


def parse_movielens_100k(data_dir: str | Path, min_rating: float = 0) -> InteractionLog:
    """MovieLens-100K: ``u.data`` (tab separated, with timestamps) and ``u.item`` (19 genre flags)."""
    data_dir = Path(data_dir)
    ratings_path = require_file(data_dir / "u.data")
    ratings = _read_delimited(
        ratings_path,
        "\t",
        ["user_id", "item_id", "rating", "order"],
        ["user_id", "item_id", "rating", "order"],
        "ISO-8859-1",
    )
    names = ["item_id", "title", "release", "video", "url"] + ML100K_GENRES
    raw = _read_delimited(require_file(data_dir / "u.item"), "|", names, ["item_id"] + ML100K_GENRES, "ISO-8859-1")
    flags = raw[ML100K_GENRES].to_numpy().astype(bool)
    items = pd.DataFrame({"item_id": raw["item_id"].astype(str), "title": raw["title"].str.strip()})
    items["categories"] = [[g for g, on in zip(ML100K_GENRES, row) if on] for row in flags]
    items["text"] = [item_text(t, c) for t, c in zip(items["title"], items["categories"])]
    return _finish_movielens(ratings, items, "time", min_rating, name="ml-100k", ratings_path=ratings_path)


# ---------------------------------------------------------------------------------------- Amazon


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        yield from f


def _parse_record(line: str, path: Path, lineno: int) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        # The 2014 metadata dumps are Python dict literals, not JSON.
        try:
            return ast.literal_eval(line)
        except (ValueError, SyntaxError) as err:
            raise DataFormatError(f"{path}:{lineno}: not a JSON object: {line[:80]!r}") from err


def _clean_title(title: object) -> str:
    if not isinstance(title, str):
        return ""
    return re.sub(r"\s+", " ", html.unescape(title)).strip()


def _read_json_lines(path: Path, columns: list[str]) -> pa.Table | None:
    """JSON lines (gzipped or not) through pyarrow's reader, with every record holding ``columns``; ``None`` where
    it cannot (not strict JSON, such as the 2014 metadata dumps' Python literals, or a record without one of
    them), so the caller reads line by line, which names the bad line."""
    import pyarrow.json as pajson

    try:
        table = pajson.read_json(path)
    except pa.ArrowInvalid:
        return None
    if not set(columns) <= set(table.column_names) or any(table.column(c).null_count for c in columns):
        return None
    return table


def _json_records(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in enumerate(_open_text(path), start=1):
        if line.strip():
            yield lineno, _parse_record(line, path, lineno)


def _read_reviews(path: Path) -> pd.DataFrame:
    columns = ["reviewerID", "asin", "unixReviewTime"]
    table = _read_json_lines(path, columns)
    frame = table.select(columns).to_pandas() if table is not None else None
    if frame is None or not pd.api.types.is_integer_dtype(frame["unixReviewTime"]):
        rows = []
        for lineno, record in _json_records(path):
            try:
                rows.append((record["reviewerID"], record["asin"], int(record["unixReviewTime"])))
            except (KeyError, TypeError, ValueError) as err:
                raise DataFormatError(f"{path}:{lineno}: needs reviewerID, asin, unixReviewTime ({err!r})") from err
        frame = pd.DataFrame(rows, columns=columns)
    return frame.set_axis(["user_id", "item_id", "order"], axis=1).astype({"user_id": str, "item_id": str})


def _read_metadata(path: Path) -> pd.DataFrame:
    """``asin``, ``title``, ``brand`` and ``categories`` (2014: a list of category paths) or ``category`` (2018)."""
    table = _read_json_lines(path, ["asin"])
    numbered = enumerate(table.to_pandas().to_dict("records"), start=1) if table is not None else _json_records(path)
    items = []
    for lineno, record in numbered:
        if not isinstance(record.get("asin"), str):
            raise DataFormatError(f"{path}:{lineno}: metadata record without 'asin'")
        categories = _listed(record.get("categories")) or _listed(record.get("category"))
        if categories and isinstance(categories[0], list):
            categories = list(dict.fromkeys(c for category_path in categories for c in category_path))
        title, brand = _clean_title(record.get("title")), _clean_title(record.get("brand"))
        items.append((record["asin"], title, list(categories), item_text(title, list(categories), brand)))
    return pd.DataFrame(items, columns=["item_id", "title", "categories", "text"]).drop_duplicates("item_id")


def _listed(value) -> list:
    """A metadata list field as a Python list (pyarrow gives arrays, JSON gives lists, absent is ``None``)."""
    if value is None or isinstance(value, float):
        return []
    return [_listed(v) if not isinstance(v, str) else v for v in value]


def parse_amazon_reviews(reviews_file: str | Path, meta_file: str | Path, name: str = "amazon") -> InteractionLog:
    """Amazon 5-core review dump (JSON lines, optionally gzipped) plus its metadata file.

    Reviews need ``reviewerID``, ``asin`` and ``unixReviewTime``; metadata rows give ``title``,
    ``brand`` and ``categories`` (2014 dumps) or ``category`` (2018 dumps). Both are read by pyarrow's JSON
    reader; a file it rejects (the 2014 metadata are Python literals) is read line by line, which also
    names the first bad line.
    """
    reviews_path, meta_path = require_file(reviews_file), require_file(meta_file)
    return InteractionLog(_read_reviews(reviews_path), _read_metadata(meta_path), "time", name)


def _read_sequences(path: Path) -> pd.DataFrame:
    """``user item1 item2 ...`` lines into (user, item, position) columns with pyarrow's string kernels; a line
    without an item sends the file to the line-by-line reading, which names it."""
    import pyarrow.compute as pc

    lines = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["line"]),
        parse_options=pacsv.ParseOptions(delimiter=_UNIT_SEPARATOR, quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()}),
    ).column("line")
    tokens = pc.split_pattern_regex(pc.utf8_trim_whitespace(lines), r"\s+")
    if len(tokens) == 0 or pc.min(pc.list_value_length(tokens)).as_py() < 2:
        return _read_sequences_by_line(path)
    items = pc.list_slice(tokens, 1).combine_chunks()
    parents = pc.list_parent_indices(items).to_numpy()
    starts = items.offsets.to_numpy()[:-1]
    positions = np.arange(len(parents)) - (starts - starts[0])[parents]
    users = pc.list_element(tokens, 0).combine_chunks().take(pa.array(parents))
    return pd.DataFrame({"user_id": users.to_pandas(), "item_id": pc.list_flatten(items).to_pandas(),
                         "order": positions})  # fmt: skip


def _read_sequences_by_line(path: Path) -> pd.DataFrame:
    rows = []
    for lineno, line in enumerate(_open_text(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise DataFormatError(f"{path}:{lineno}: expected 'user item1 item2 ...', got {line.strip()[:80]!r}")
        rows.extend((fields[0], item, position) for position, item in enumerate(fields[1:]))
    if not rows:
        raise DataFormatError(f"{path}: file is empty")
    return pd.DataFrame(rows, columns=["user_id", "item_id", "order"])


def parse_amazon_sequences(sequence_file: str | Path, titles_file: str | Path, name: str = "amazon") -> InteractionLog:
    """Time-ordered sequences (``user item1 item2 ...`` per line) plus a title TSV.

    The TSV has a header with ``asin`` (or ``item_id``) and ``title`` columns, as in the P5/IDGenRec
    preprocessing of the Amazon 5-core data. There are no timestamps; the order within a line is used.
    """
    sequence_path, titles_path = require_file(sequence_file), require_file(titles_file)
    interactions = _read_sequences(sequence_path)
    titles = pd.read_csv(titles_path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    titles = titles.rename(columns={"asin": "item_id"})
    if not {"item_id", "title"} <= set(titles.columns):
        raise DataFormatError(
            f"{titles_path}:1: header needs 'asin' (or 'item_id') and 'title', got {list(titles.columns)}"
        )
    item_table = pd.DataFrame({"item_id": titles["item_id"], "title": titles["title"].map(_clean_title)})
    item_table["categories"] = [[] for _ in range(len(item_table))]
    item_table["text"] = item_table["title"]
    return InteractionLog(interactions, item_table.drop_duplicates("item_id"), "position", name)


# ---------------------------------------------------------------------------------------- own logs

_PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(source, columns: list[str], what: str) -> pd.DataFrame:
    """Reads ``columns`` (all of them must exist) of a CSV, TSV or Parquet file with a header, or of a
    pandas/Polars DataFrame. Files go through pyarrow: only the named columns are read, typed by pyarrow.

    Raises:
        DataFormatError: the file is missing, unreadable, or lacks a column (naming the columns it has).
    """
    if hasattr(source, "to_pandas") and not isinstance(source, pd.DataFrame):  # Polars, pyarrow tables
        source = source.to_pandas()
    if isinstance(source, pd.DataFrame):
        _require_columns(list(source.columns), columns, f"{what} DataFrame")
        return source[columns].reset_index(drop=True)
    path = Path(source)
    parquet_folder = path.is_dir()  # a folder of Parquet parts, as Spark and Polars write them
    if not parquet_folder:
        require_file(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if parquet_folder or path.suffix.lower() in _PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            available = pq.ParquetDataset(path).schema.names
            _require_columns(available, columns, str(path))
            table = pq.read_table(path, columns=columns)
        else:
            delimiter = "\t" if ".tsv" in suffixes or ".tab" in suffixes else ","
            with pacsv.open_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter)) as reader:
                _require_columns(reader.schema.names, columns, f"{path}:1")  # reads the first block only
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(include_columns=columns, strings_can_be_null=True),
            )
    except pa.ArrowInvalid as err:
        kind = "Parquet" if parquet_folder or path.suffix.lower() in _PARQUET_SUFFIXES else "CSV/TSV"
        raise DataFormatError(f"{path}: not a readable {kind} file "
                              f"({str(err).splitlines()[0]})") from None  # fmt: skip
    # Arrow's buffers are freed column by column as pandas takes them, and the pool hands them back to the
    # system: at 100M rows the table and its copy would otherwise both stay resident.
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    pa.default_memory_pool().release_unused()
    return frame


def _require_columns(available: list[str], wanted: list[str], where: str) -> None:
    missing = [column for column in wanted if column not in available]
    if missing:
        raise DataFormatError(
            f"{where}: no column {missing[0]!r} (columns are {available}): name the right one in the data "
            "module's *_column arguments"
        )


def _order_values(values: pd.Series, column: str, where: str) -> np.ndarray:
    """Timestamps as int64: numbers as they are (seconds, milliseconds...), datetimes and date strings in ns."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("datetime64[ns]").astype(np.int64).to_numpy()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64 if pd.api.types.is_float_dtype(values) else np.int64)
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise DataFormatError(
            f"{where}: column {column!r} row {bad[0] + 1} is neither a number nor a date: {values.iloc[bad[0]]!r}"
        )
    return parsed.astype("datetime64[ns, UTC]").astype(np.int64).to_numpy()


def _drop_missing(frame: pd.DataFrame, columns: list[str], where: str) -> pd.DataFrame:
    missing = frame[columns].isna().any(axis=1)
    if missing.any():
        log.warning("%s: dropped %d rows with an empty %s", where, int(missing.sum()), " or ".join(columns))
        frame = frame[~missing]
    return frame


def _whole_numbers(values: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(values):
        return True
    return pd.api.types.is_float_dtype(values) and bool((values == np.floor(values)).all())


def _as_ids(values: pd.Series, as_text: bool) -> pd.Series:
    """Raw ids as int64 (no Python object per row: what keeps a 100M-row log in memory) or, where either table
    has non-numeric ids, as strings, so ``7`` in the log and ``7`` in the item table (or ``7.0`` from a float
    column that had gaps) name the same item."""
    if _whole_numbers(values):
        values = values.astype(np.int64)
    return values.astype(str) if as_text else values


def check_order_columns(time_column: str | None, order_column: str | None) -> None:
    """A log is ordered by a time or by a position, not by both."""
    if time_column and order_column:
        raise ValueError("give time_column or order_column, not both (set the other to null)")


def parse_interaction_table(
    interactions,
    items=None,
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
    time_column: str | None = "timestamp",
    order_column: str | None = None,
    rating_column: str | None = None,
    min_rating: float = 0,
    item_id_column: str | None = None,
    title_column: str = "title",
    categories_column: str | None = None,
    categories_separator: str = "|",
    brand_column: str | None = None,
    text_columns: list[str] | None = None,
    name: str = "custom",
) -> InteractionLog:
    """A user's own log (file or DataFrame, columns mapped by name) plus an optional item table.

    The split orders each user's interactions by ``time_column`` (numbers or dates), else by
    ``order_column`` (a position: the file is in time order), else at random (seeded). Item text is
    ``title | categories | brand`` then any ``text_columns``, the same layout as the public datasets.
    Rows with an empty user, item or time are dropped with a logged count.
    """
    check_order_columns(time_column, order_column)
    where = name if isinstance(interactions, pd.DataFrame) or hasattr(interactions, "to_pandas") else str(interactions)
    order = time_column or order_column
    wanted = [user_column, item_column] + [c for c in (order, rating_column) if c]
    frame = _drop_missing(read_table(interactions, wanted, "interactions"), [c for c in wanted if c != rating_column],
                          where)  # fmt: skip
    if frame.empty:
        raise DataFormatError(f"{where}: no interactions")
    table = pd.DataFrame({"user_id": _as_ids(frame[user_column], not _whole_numbers(frame[user_column])),
                          "item_id": frame[item_column]})  # fmt: skip
    table["order"] = _order_values(frame[order], order, where) if order else 0
    if rating_column:
        table["rating"] = numeric_column(frame[rating_column].reset_index(drop=True), rating_column,
                                         lambda row: f"{where}: row {row + 1}").to_numpy()  # fmt: skip
        if min_rating > 0:
            kept = table["rating"] >= min_rating
            log.info("%s: dropped %d interactions rated below %g", name, int((~kept).sum()), min_rating)
            table = table[kept]
    ordering = "time" if time_column else "position" if order_column else "none"
    if ordering == "none":
        log.warning("%s: no time_column or order_column: the split is a seeded random leave-one-out", name)
    item_table = _item_table(
        items, table["item_id"], item_id_column or item_column, title_column, categories_column,
        categories_separator, brand_column, text_columns or [], name,
    )  # fmt: skip
    as_text = not (_whole_numbers(table["item_id"]) and _whole_numbers(item_table["item_id"]))
    table["item_id"] = _as_ids(table["item_id"], as_text)
    item_table["item_id"] = _as_ids(item_table["item_id"], as_text)
    return InteractionLog(table.reset_index(drop=True), item_table, ordering, name)  # type: ignore[arg-type]


def _item_table(
    items, logged_items: pd.Series, id_column: str, title_column: str, categories_column: str | None,
    separator: str, brand_column: str | None, text_columns: list[str], name: str,
) -> pd.DataFrame:  # fmt: skip
    if items is None:
        log.info("%s: no item table: items have no text (text models need one: pass items)", name)
        ids = pd.Series(logged_items.unique())
        return pd.DataFrame({"item_id": ids, "title": "", "categories": [[] for _ in ids], "text": ""})
    optional = [c for c in (categories_column, brand_column, *text_columns) if c]
    frame = read_table(items, [id_column, title_column, *optional], "items")
    frame = _drop_missing(frame, [id_column], f"{name} item table")
    strings = {column: frame[column].fillna("").astype(str).map(_clean_title) for column in [title_column, *optional]
               if column != categories_column}  # fmt: skip
    categories = (
        [_categories(value, separator) for value in frame[categories_column]]
        if categories_column else [[] for _ in range(len(frame))]
    )  # fmt: skip
    brands = strings[brand_column] if brand_column else pd.Series("", index=frame.index)
    texts = [
        " | ".join(part for part in [item_text(title, cats, brand), *extra] if part)
        for title, cats, brand, *extra in zip(strings[title_column], categories, brands,
                                               *(strings[c] for c in text_columns))
    ]  # fmt: skip
    table = pd.DataFrame({"item_id": frame[id_column].to_numpy(), "title": strings[title_column].to_numpy(),
                          "categories": categories, "text": texts})  # fmt: skip
    duplicated = table["item_id"].duplicated()
    if duplicated.any():
        log.warning("%s item table: %d repeated item ids; the first row of each is kept", name, int(duplicated.sum()))
        table = table[~duplicated]
    return table.reset_index(drop=True)


def _categories(value, separator: str) -> list[str]:
    """A categories cell: a list (Parquet, DataFrame) or one string joined by ``separator``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    parts = value.split(separator) if isinstance(value, str) else list(value)
    return [part.strip() for part in map(str, parts) if part.strip()]
