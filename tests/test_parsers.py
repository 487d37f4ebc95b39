import ast
import gzip
import json
import logging

import pytest

from lightning_rec.data.parsers import (
    parse_amazon_reviews,
    parse_amazon_sequences,
    parse_movielens_1m,
    parse_movielens_100k,
)
from lightning_rec.data.synthetic import EMBEDDED_DIR
from lightning_rec.data.tables import DataFormatError
from tests.conftest import write_amazon_reviews, write_amazon_sequences, write_ml100k


def copy_ml1m(tmp_path, ratings_text: str):
    (tmp_path / "movies.dat").write_bytes((EMBEDDED_DIR / "movies.dat").read_bytes())
    (tmp_path / "ratings.dat").write_text(ratings_text)
    return tmp_path


def test_embedded_ml1m_parses_with_titles_genres_and_time():
    log = parse_movielens_1m(EMBEDDED_DIR)
    assert log.ordering == "time"
    assert len(log.interactions) == sum(1 for _ in open(EMBEDDED_DIR / "ratings.dat"))
    first = log.items.iloc[0]
    assert first["text"] == f"{first['title']} | {'|'.join(first['categories'])}"
    assert first["title"].endswith("(1950)")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataFormatError, match="missing file: .*ratings.dat"):
        parse_movielens_1m(copy_ml1m(tmp_path, "").joinpath("nope"))


def test_wrong_separator_names_file_and_line(tmp_path):
    copy_ml1m(tmp_path, "1::2::5::978300760\n1,3,4,978300761\n")
    with pytest.raises(DataFormatError, match=r"ratings.dat:2: expected 4 fields separated by '::'"):
        parse_movielens_1m(tmp_path)


def test_non_numeric_id_names_line(tmp_path):
    copy_ml1m(tmp_path, "1::2::5::978300760\n\nabc::3::4::978300761\n")
    with pytest.raises(DataFormatError, match=r"ratings.dat:3: column 'user_id' is not numeric"):
        parse_movielens_1m(tmp_path)


def test_empty_file(tmp_path):
    copy_ml1m(tmp_path, "")
    with pytest.raises(DataFormatError, match="empty"):
        parse_movielens_1m(tmp_path)


def test_ratings_csv_without_timestamps_warns_and_has_no_order(tmp_path, caplog):
    copy_ml1m(tmp_path, "")
    csv = tmp_path / "ratings.csv"
    csv.write_text("user_id,item_rank,movie_id,rating\n1,1,1,5\n1,2,2,3\n1,3,-1,4\n2,1,3,4\n")
    with caplog.at_level(logging.WARNING):
        log = parse_movielens_1m(tmp_path, ratings_file=csv)
    assert log.ordering == "none"
    assert len(log.interactions) == 3
    assert "no timestamps" in caplog.text and "dropped 1 ratings whose movie id is unknown" in caplog.text


def test_ml100k_genres_from_flags(tmp_path):
    log = parse_movielens_100k(write_ml100k(tmp_path))
    assert log.items.iloc[0]["categories"] == ["Western"]
    assert log.ordering == "time" and len(log.interactions) == 12 * 6


def test_amazon_sequences_keep_file_order_and_unescape_titles(tmp_path):
    log = parse_amazon_sequences(*write_amazon_sequences(tmp_path))
    assert log.ordering == "position"
    first_user = log.interactions[log.interactions.user_id == "U0"]
    assert first_user["item_id"].tolist() == ["A0", "A1", "A2", "A3", "A4"]
    assert first_user["order"].tolist() == [0, 1, 2, 3, 4]
    assert log.items.iloc[0]["title"] == "Product number 0 & more"


def test_amazon_reviews_gzip_json_and_python_literal_meta(tmp_path):
    log = parse_amazon_reviews(*write_amazon_reviews(tmp_path))
    assert log.ordering == "time" and len(log.interactions) == 50
    item = log.items.set_index("item_id").loc["A3"]
    assert item["categories"] == ["Beauty", "Lips"]
    assert item["text"] == "Lipstick 3 | Beauty|Lips | Acme"


def test_json_metadata_reads_like_the_python_literal_dump(tmp_path):
    reviews, literal_meta = write_amazon_reviews(tmp_path)
    json_meta = tmp_path / "meta.json.gz"
    with gzip.open(json_meta, "wt") as f:  # 2018 layout: strict JSON, a flat `category` list
        for line in literal_meta.read_text().splitlines():
            record = ast.literal_eval(line)
            record["category"] = record.pop("categories")[0]
            f.write(json.dumps(record) + "\n")
    literal, strict = parse_amazon_reviews(reviews, literal_meta), parse_amazon_reviews(reviews, json_meta)
    assert strict.items.to_dict("records") == literal.items.to_dict("records")
    assert strict.interactions.equals(literal.interactions)


def test_a_sequence_line_without_items_is_named(tmp_path):
    sequences, titles = write_amazon_sequences(tmp_path)
    sequences.write_text("U1 A1 A2\n   \nU2 A3\t A4\nU3\nU4 A1 A2\n")
    with pytest.raises(DataFormatError, match=r"user_sequence.txt:4: expected 'user item1 item2 ...', got 'U3'"):
        parse_amazon_sequences(sequences, titles)
    sequences.write_text("U1 A1 A2\n   \nU2 A3\t A4\n")  # blank lines and mixed whitespace are fine
    log = parse_amazon_sequences(sequences, titles)
    assert log.interactions.values.tolist() == [["U1", "A1", 0], ["U1", "A2", 1], ["U2", "A3", 0], ["U2", "A4", 1]]


def test_amazon_bad_json_line_is_named(tmp_path):
    reviews, meta = write_amazon_reviews(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"reviewerID": "U1", "asin": "A1", "unixReviewTime": 5}\n{not json\n')
    with pytest.raises(DataFormatError, match=r"bad.json:2: not a JSON object"):
        parse_amazon_reviews(bad, meta)


def test_half_star_ratings_stay_floats_and_fractional_ids_are_rejected(tmp_path):
    copy_ml1m(tmp_path, "1::2::4.5::978300760\n1::3::3::978300761\n")
    assert parse_movielens_1m(tmp_path).interactions["rating"].tolist() == [4.5, 3.0]
    copy_ml1m(tmp_path, "1::2::4::978300760\n1::3.5::3::978300761\n")
    with pytest.raises(DataFormatError, match=r"ratings.dat:2: column 'item_id' must be a whole number: '3.5'"):
        parse_movielens_1m(tmp_path)
    (tmp_path / "ratings.csv").write_text("user_id,movie_id,rating\n1,2,4.5\n1,3,2.5\n")
    assert parse_movielens_1m(tmp_path, tmp_path / "ratings.csv").interactions["rating"].tolist() == [4.5, 2.5]


def test_a_last_line_without_newline_is_reported_as_possibly_truncated(tmp_path, caplog):
    copy_ml1m(tmp_path, "1::2::5::978300760\n1::3::4::9783")  # a download cut inside the last field
    with caplog.at_level(logging.WARNING):
        log = parse_movielens_1m(tmp_path)
    assert "ratings.dat: the last line has no newline: the file may be truncated" in caplog.text
    assert len(log.interactions) == 2


def test_the_columnar_reader_gives_integer_ids_and_float_ratings(tmp_path):
    copy_ml1m(tmp_path, "1::2::4.5::978300760\n2::3::4::978300761\n")
    ratings = parse_movielens_1m(tmp_path).interactions
    assert str(ratings["rating"].dtype) == "float64" and list(ratings["rating"]) == [4.5, 4.0]
