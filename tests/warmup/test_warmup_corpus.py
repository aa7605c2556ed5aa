"""Corpus reading: JSONL and Parquet, files, directories and s3:// prefixes, bad records named
and skipped."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warmup.corpus import BadRecord, Corpus, CorpusDocument, S3Access

GOOD = [{"id": "a", "text": "Alpha text."}, {"id": "b", "text": "Beta text."}]


def items(corpus) -> list:
    return list(corpus)


def test_jsonl_good_and_bad_records_in_order(tmp_path):
    lines = [
        "\ufeff" + json.dumps(GOOD[0]),         # a byte-order mark before the first record
        json.dumps({"text": "no id"}),
        "",                                      # blank lines are not records
        json.dumps({"id": "c"}),
        json.dumps({"id": "d", "text": "   \n"}),
        '{"id": "e", "text": ',                  # truncated JSON
        json.dumps([1, 2]),
        json.dumps({"id": 7, "text": "Integer id."}),
        json.dumps({"id": True, "text": "Boolean id."}),
        json.dumps({"id": "f", "text": 3}),
        '{"id": "g", "text": "\\ud800 lone surrogate"}',
        json.dumps({"id": "h" * 200, "text": "Long id."}),
        json.dumps(GOOD[1]),
    ]
    data = "\n".join(lines).encode() + b"\n" + b'{"id": "i", "text": "caf\xe9"}\n'  # Latin-1, not UTF-8
    path = tmp_path / "c.jsonl"
    path.write_bytes(data)
    got = items(Corpus(str(path)))
    f = str(path)
    assert got == [
        CorpusDocument("a", "Alpha text."),
        BadRecord(f"{f}:2", "missing 'id'"),
        BadRecord(f"{f}:4", "missing 'text'"),
        BadRecord(f"{f}:5", "empty 'text'"),
        BadRecord(f"{f}:6", got[4].reason),
        BadRecord(f"{f}:7", "a record must be an object with 'id' and 'text', got list"),
        CorpusDocument("7", "Integer id."),
        BadRecord(f"{f}:9", "'id' must be a string or an integer, got bool"),
        BadRecord(f"{f}:10", "'text' must be a string, got int"),
        BadRecord(f"{f}:11", "'text' is not valid Unicode (a lone surrogate)"),
        BadRecord(f"{f}:12", "'id' is longer than 180 UTF-8 bytes"),
        CorpusDocument("b", "Beta text."),
        BadRecord(f"{f}:14", "not UTF-8 (byte 24)"),
    ]
    assert got[4].reason.startswith("invalid JSON:")


def test_parquet_rows_with_binary_text_and_nulls(tmp_path):
    table = pa.table({
        "id": pa.array(["p0", "p1", None, "p3", "p4"]),
        "text": pa.array([b"Plain text.", b"caf\xe9", b"Has id null.", None, "Unicode \u00e9t\u00e9.".encode()],
                         pa.binary()),
        "extra": pa.array([1, 2, 3, 4, 5]),
    })
    path = tmp_path / "c.parquet"
    pq.write_table(table, path, row_group_size=2)
    corpus = Corpus(str(path), parquet_batch_rows=2)
    assert corpus.num_rows() == 5
    f = str(path)
    assert items(corpus) == [
        CorpusDocument("p0", "Plain text."),
        BadRecord(f"{f}:row 1", "'text' is not UTF-8"),
        BadRecord(f"{f}:row 2", "missing 'id'"),
        BadRecord(f"{f}:row 3", "missing 'text'"),
        CorpusDocument("p4", "Unicode \u00e9t\u00e9."),
    ]


def test_parquet_without_the_columns_is_one_bad_record(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"doc": ["x"], "text": ["y"]}), path)
    assert items(Corpus(str(path))) == [BadRecord(str(path), "no column 'id'; columns: doc, text")]


def test_directory_reads_corpus_files_in_path_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.jsonl.gz").write_bytes(gzip.compress(json.dumps(GOOD[1]).encode() + b"\n"))
    (tmp_path / "a.ndjson").write_text(json.dumps(GOOD[0]) + "\n")
    pq.write_table(pa.table({"id": ["c"], "text": ["Gamma."]}), tmp_path / "b" / "1.parquet")
    (tmp_path / "notes.txt").write_text("not a corpus file")
    corpus = Corpus(str(tmp_path))
    assert [f.removeprefix(str(tmp_path)) for f in corpus.files] == ["/a.ndjson", "/b/1.parquet", "/b/2.jsonl.gz"]
    assert corpus.num_rows() is None
    assert items(corpus) == [CorpusDocument("a", "Alpha text."), CorpusDocument("c", "Gamma."),
                             CorpusDocument("b", "Beta text.")]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.jsonl", "no such file or directory"),
    (lambda p: (p / "c.csv").write_text("id,text\n") and p / "c.csv", "unknown corpus format"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no corpus files"),
])
def test_bad_locations_are_value_errors(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        Corpus(str(make(tmp_path)))


def test_s3_prefix(s3_server, s3_bucket):
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="corpus/part-0.jsonl",
                      Body=(json.dumps(GOOD[0]) + "\n" + '{"id": "x"}\n').encode())
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["b"], "text": ["Beta text."]}), buf)
    client.put_object(Bucket=s3_bucket, Key="corpus/part-1.parquet", Body=buf.getvalue())
    client.put_object(Bucket=s3_bucket, Key="other/part-9.jsonl", Body=b'{"id": "z", "text": "Elsewhere."}\n')
    s3 = S3Access(endpoint_url=s3_server.endpoint_url, region="us-east-1", max_attempts=1)
    corpus = Corpus(f"s3://{s3_bucket}/corpus", s3)
    assert corpus.files == [f"{s3_bucket}/corpus/part-0.jsonl", f"{s3_bucket}/corpus/part-1.parquet"]
    assert items(corpus) == [CorpusDocument("a", "Alpha text."),
                             BadRecord(f"s3://{s3_bucket}/corpus/part-0.jsonl:2", "missing 'text'"),
                             CorpusDocument("b", "Beta text.")]
    assert items(Corpus(f"s3://{s3_bucket}/other/part-9.jsonl", s3)) == [CorpusDocument("z", "Elsewhere.")]
    with pytest.raises(ValueError, match="no such file or directory"):
        Corpus(f"s3://{s3_bucket}/nothing-here", s3)


def test_s3_endpoint_must_be_a_url():
    with pytest.raises(ValueError, match="must look like"):
        S3Access(endpoint_url="127.0.0.1:9000").filesystem()
