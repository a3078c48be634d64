"""Tests for bert_flax.data.corpus and .reader: documents, streamed and validated files, globs, downloads,
`datasets` sources."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import urllib.request
from pathlib import Path

import pytest

from bert_flax.config import DataConfig
from bert_flax.data import corpus as corpus_module
from bert_flax.data.corpus import PROJECT_DATA_DIR, cache_root, download, load_manifest, resolve_paths, source_files
from bert_flax.data.documents import split_documents
from bert_flax.data.reader import read_chunks, read_file_chunks, source_identity, total_bytes
from bert_flax.errors import UserError

UNREACHABLE = "http://127.0.0.1:9/x"


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("no download expected")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERT_FLAX_CACHE", str(tmp_path / "bert_flax_cache"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listing(directory: Path) -> set[str]:
    """Every path under `directory`, hidden files included (empty when it does not exist)."""
    if not directory.exists():
        return set()
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def _documents(data: DataConfig, chunk_bytes: int = 1 << 20) -> list[str]:
    """Every document `read_chunks` gives, in order."""
    return [document for chunk in read_chunks(data, chunk_bytes) for document in chunk.documents]


def _file_documents(path: Path, mode: str, chunk_bytes: int) -> list[str]:
    return [document for chunk in read_file_chunks(path, mode, chunk_bytes) for document in chunk.documents]


def _is_real_meditations(path: Path) -> bool:
    manifest = json.loads((PROJECT_DATA_DIR / "meditations.json").read_text(encoding="utf-8"))
    return _sha256(path.read_bytes()) == manifest["sha256"]


# ---------------------------------------------------------------------------------------------
# split_documents


def test_split_documents_line_mode() -> None:
    text = "  First   doc\there.  \n\n   \n\tSecond doc\r\nthird\x0bone\n\n"
    assert split_documents(text, "line") == ["First doc here.", "Second doc", "third", "one"]


def test_split_documents_blank_line_mode() -> None:
    text = "\n\nPara one,\nline two.\n\n  \t \nPara two.\r\n\r\nPara   three\nstill three.\n\n\n\n"
    assert split_documents(text, "blank_line") == ["Para one, line two.", "Para two.", "Para three still three."]


def test_split_documents_empty_and_whitespace() -> None:
    for mode in ("line", "blank_line"):
        assert split_documents("", mode) == []
        assert split_documents(" \n\t\n \r\n", mode) == []
        assert split_documents("one", mode) == ["one"]


def test_split_documents_modes_differ_on_paragraphs() -> None:
    text = "a b\nc d\n\ne f"
    assert split_documents(text, "line") == ["a b", "c d", "e f"]
    assert split_documents(text, "blank_line") == ["a b c d", "e f"]


# ---------------------------------------------------------------------------------------------
# read_chunks / read_file_chunks on bad input


def _read_error(*paths: str | Path, chunk_bytes: int = 1 << 20) -> str:
    with pytest.raises(UserError) as info:
        _documents(DataConfig(path=tuple(str(p) for p in paths)), chunk_bytes)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(UserError) as info:
        next(read_file_chunks(missing, "line", 1024))
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)
    message = _read_error(missing)
    assert str(missing) in message and "data.path" in message
    with pytest.raises(UserError, match="does not exist"):  # the identity is checked too (before any reading)
        source_identity(DataConfig(path=(str(missing),)))


def test_directory(tmp_path: Path) -> None:
    directory = tmp_path / "texts"
    directory.mkdir()
    message = _read_error(directory)
    assert "directory" in message and str(directory) in message and "*.txt" in message


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    message = _read_error(empty)
    assert str(empty) in message and "empty" in message


def test_whitespace_only_file(tmp_path: Path) -> None:
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\t\n\r\n   \n" * 50, encoding="utf-8")
    for chunk_bytes in (4, 1 << 20):  # also when it takes several chunks
        message = _read_error(blank, chunk_bytes=chunk_bytes)
        assert str(blank) in message and "whitespace" in message


def test_binary_file(tmp_path: Path) -> None:
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    message = _read_error(binary)
    assert str(binary) in message and "binary" in message


def test_invalid_utf8_reports_byte_offset(tmp_path: Path) -> None:
    prefix = ("Valid text here. " * 80).encode("utf-8")[:1234]
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(prefix + "é and more".encode("latin-1"))
    assert len(prefix) == 1234
    message = _read_error(bad)
    assert str(bad) in message and "UTF-8" in message
    assert "byte offset 1234" in message
    assert "\\xe9" in message


def test_invalid_utf8_in_a_later_chunk_reports_the_absolute_offset(tmp_path: Path) -> None:
    lines = "".join(f"line {i}: naïve café — “quoted”.\n" for i in range(300)).encode("utf-8")
    bad = tmp_path / "late.txt"
    bad.write_bytes(lines + b"bad \xff byte\n" + b"more text\n" * 10)
    offset = len(lines) + len(b"bad ")
    for chunk_bytes in (64, 1000, 1 << 20):
        chunks = read_file_chunks(bad, "line", chunk_bytes)
        documents: list[str] = []
        with pytest.raises(UserError) as info:
            for chunk in chunks:
                documents.extend(chunk.documents)
        message = str(info.value)
        assert f"byte offset {offset}" in message and str(bad) in message and "\\xff" in message, message
        if chunk_bytes < len(lines):  # the chunks before the bad byte were streamed
            assert documents and documents == split_documents(lines.decode("utf-8"), "line")[: len(documents)]


def test_invalid_utf8_offset_counts_the_byte_order_mark(tmp_path: Path) -> None:
    bad = tmp_path / "bom.txt"
    bad.write_bytes(b"\xef\xbb\xbf" + b"first line\n" * 20 + b"\xc3(\n")
    assert f"byte offset {3 + 11 * 20}" in _read_error(bad, chunk_bytes=32)


def test_byte_order_mark_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffFirst doc.\nSecond doc.\n".encode("utf-8"))
    assert _documents(DataConfig(path=(str(path),))) == ["First doc.", "Second doc."]


def test_utf8_multibyte_is_fine(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Καλημέρα κόσμε.\nnaïve café — “quoted”.\n", encoding="utf-8")
    for chunk_bytes in (3, 1 << 20):  # chunks are cut at newlines, never inside a character
        assert _documents(DataConfig(path=(str(good),)), chunk_bytes) == ["Καλημέρα κόσμε.", "naïve café — “quoted”."]


def test_glob_matching_nothing(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*.nothing")
    message = _read_error(pattern)
    assert "matches no file" in message and pattern in message


def test_globs_and_multiple_files_concatenate_in_order(tmp_path: Path) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "b.txt").write_text("b one\nb two\n", encoding="utf-8")
    (texts / "a.txt").write_text("a one\n", encoding="utf-8")
    (texts / "c.txt").write_text("\nc one\n\n", encoding="utf-8")
    (texts / "skip.md").write_text("not matched\n", encoding="utf-8")
    globbed = DataConfig(path=(str(texts / "*.txt"),))
    assert _documents(globbed) == ["a one", "b one", "b two", "c one"]
    assert [p.name for p in resolve_paths([str(texts / "*.txt")])] == ["a.txt", "b.txt", "c.txt"]
    assert source_files(globbed) == [texts / "a.txt", texts / "b.txt", texts / "c.txt"]
    # Explicit paths keep the order given; a glob and a file mix.
    assert _documents(DataConfig(path=(str(texts / "c.txt"), str(texts / "a.txt")))) == ["c one", "a one"]
    mixed = DataConfig(path=(str(texts / "skip.md"), str(texts / "[ab].txt")))
    assert _documents(mixed) == ["not matched", "a one", "b one", "b two"]
    # A chunk never spans two files.
    chunks = list(read_chunks(mixed, 1 << 20))
    assert [c.documents for c in chunks] == [["not matched"], ["a one"], ["b one", "b two"]]
    assert [c.num_bytes for c in chunks] == [12, 6, 12]


def test_recursive_glob(tmp_path: Path) -> None:
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "x" / "y" / "deep.txt").write_text("deep\n", encoding="utf-8")
    (tmp_path / "x" / "top.txt").write_text("top\n", encoding="utf-8")
    assert set(_documents(DataConfig(path=(str(tmp_path / "x" / "**" / "*.txt"),)))) == {"deep", "top"}


def test_one_bad_file_among_good_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("fine\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    message = _read_error(good, empty)
    assert str(empty) in message and str(good) not in message
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xfe\n")
    message = _read_error(good, bad, good)
    assert str(bad) in message and "byte offset 3" in message


def test_documents_mode_applies_to_files(tmp_path: Path) -> None:
    path = tmp_path / "paras.txt"
    path.write_text("p1 l1\np1 l2\n\np2 l1\n", encoding="utf-8")
    assert len(_documents(DataConfig(path=(str(path),)))) == 3
    assert _documents(DataConfig(path=(str(path),), documents="blank_line")) == ["p1 l1 p1 l2", "p2 l1"]


def test_row_documents_need_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data.documents"):
        DataConfig(path=(str(tmp_path / "x.txt"),), documents="row")


def test_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_root(DataConfig(cache_dir=str(tmp_path / "c"))) == tmp_path / "c"
    monkeypatch.setenv("BERT_FLAX_CACHE", str(tmp_path / "env"))
    assert cache_root(DataConfig()) == tmp_path / "env"


# ---------------------------------------------------------------------------------------------
# Chunking: the same documents as reading the file whole


def _mixed_text(seed: int) -> str:
    """Lines and paragraphs of varied length: CRLF and LF, blank lines holding spaces and tabs,
    multibyte characters, and a few documents much longer than the chunks read."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "Γάμμα", "délta", "“quoted”", "x", "—", "naïve"]
    pieces = []
    for i in range(400):
        length = rng.choice([1, 2, 5, 12, 40]) if i % 97 else 900  # every 97th: a long document
        line = " ".join(rng.choice(words) for _ in range(length))
        newline = rng.choice(["\n", "\n", "\r\n"])
        pieces.append(line + newline + rng.choice(["", "", "\n", " \t\n", "\r\n", "\n\n\n"]))
    return "".join(pieces)


@pytest.mark.parametrize("mode", ["line", "blank_line"])
def test_chunked_reading_gives_the_documents_of_the_whole_file(tmp_path: Path, mode: str) -> None:
    text = _mixed_text(seed=len(mode))
    path = tmp_path / "mixed.txt"
    path.write_bytes(text.encode("utf-8"))
    expected = split_documents(text, mode)
    assert any(len(d.encode("utf-8")) > 1000 for d in expected)  # longer than the smaller chunks
    assert len(expected) > 100
    for chunk_bytes in (1, 7, 100, 1000, 4096, 1 << 20):
        chunks = list(read_file_chunks(path, mode, chunk_bytes))
        assert [d for c in chunks for d in c.documents] == expected, chunk_bytes
        assert sum(c.num_bytes for c in chunks) == path.stat().st_size
        if chunk_bytes <= 1000:
            assert len(chunks) > 10


def test_chunked_reading_without_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "tail.txt"
    path.write_bytes(b"one\r\ntwo\r\n\r\nthree \xe2\x80\x94 last")
    for mode, expected in (("line", ["one", "two", "three — last"]), ("blank_line", ["one two", "three — last"])):
        for chunk_bytes in (1, 4, 1024):
            assert _file_documents(path, mode, chunk_bytes) == expected


# ---------------------------------------------------------------------------------------------
# The real corpus


def test_read_corpus_file(corpus_path: Path, corpus_lines: list[str]) -> None:
    data = DataConfig(path=(str(corpus_path),))
    documents = _documents(data)
    assert documents == _documents(data, 10_000)
    assert len(documents) == len(corpus_lines)
    assert documents[0] == " ".join(corpus_lines[0].split())
    if _is_real_meditations(corpus_path):
        assert len(documents) == 507
        assert documents[0].startswith("From my grandfather Verus")


def test_source_identity_names_files_not_content(corpus_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.txt"
    shutil.copy(corpus_path, copy)
    data = DataConfig(path=(str(copy),))
    (identity,) = source_identity(data)
    assert identity == {"path": str(copy.resolve()), "bytes": corpus_path.stat().st_size, "mtime_ns": copy.stat().st_mtime_ns}
    assert total_bytes([identity, identity]) == 2 * identity["bytes"]
    before = _documents(data)
    with copy.open("a", encoding="utf-8") as f:
        f.write("\nOne more paragraph.\n")
    (changed,) = source_identity(data)
    assert changed["bytes"] > identity["bytes"]
    assert _documents(data) == before + ["One more paragraph."]
    # The same bytes with another mtime are another identity (nothing is read to tell them apart).
    os.utime(copy, ns=(changed["mtime_ns"] + 10**9, changed["mtime_ns"] + 10**9))
    assert source_identity(data)[0]["mtime_ns"] != changed["mtime_ns"]


# ---------------------------------------------------------------------------------------------
# download()


def _manifest(url: str, data: bytes, filename: str = "corpus.txt") -> dict:
    return {"name": "testcorpus", "url": url, "sha256": _sha256(data), "filename": filename}


def test_download_file_url(tmp_path: Path) -> None:
    payload = "Downloaded paragraph one.\nParagraph two.\n".encode("utf-8")
    source = tmp_path / "source.txt"
    source.write_bytes(payload)
    dest_dir = tmp_path / "downloads"
    manifest = _manifest(source.as_uri(), payload)
    path = download(manifest, dest_dir)
    assert path == dest_dir / "corpus.txt"
    assert path.read_bytes() == payload
    assert _listing(dest_dir) == {"corpus.txt"}  # no temp files left
    # A verified file is not fetched again: the source may disappear.
    source.unlink()
    mtime = path.stat().st_mtime_ns
    assert download(manifest, dest_dir) == path
    assert path.stat().st_mtime_ns == mtime
    assert _listing(dest_dir) == {"corpus.txt"}


def test_download_replaces_a_stale_file(tmp_path: Path) -> None:
    payload = b"fresh content\n"
    source = tmp_path / "source.txt"
    source.write_bytes(payload)
    dest_dir = tmp_path / "downloads"
    dest_dir.mkdir()
    (dest_dir / "corpus.txt").write_bytes(b"stale or truncated")
    path = download(_manifest(source.as_uri(), payload), dest_dir)
    assert path.read_bytes() == payload
    assert _listing(dest_dir) == {"corpus.txt"}


def test_download_wrong_sha_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "source.txt"
    source.write_bytes(b"tampered content\n")
    dest_dir = tmp_path / "downloads"
    manifest = _manifest(source.as_uri(), b"the expected content\n")
    with pytest.raises(UserError) as info:
        download(manifest, dest_dir)
    message = str(info.value)
    assert "sha256" in message and manifest["sha256"] in message and "data.path" in message
    assert _listing(dest_dir) == set()


def test_download_unreachable(tmp_path: Path) -> None:
    dest_dir = tmp_path / "downloads"
    manifest = _manifest(UNREACHABLE, b"whatever")
    with pytest.raises(UserError) as info:
        download(manifest, dest_dir, timeout_s=5)
    message = str(info.value)
    assert "data.path" in message and UNREACHABLE in message and "testcorpus" in message
    assert _listing(dest_dir) == set()


def test_download_missing_file_url(tmp_path: Path) -> None:
    dest_dir = tmp_path / "downloads"
    manifest = _manifest((tmp_path / "absent.txt").as_uri(), b"whatever")
    with pytest.raises(UserError, match="data.path"):
        download(manifest, dest_dir)
    assert _listing(dest_dir) == set()


# ---------------------------------------------------------------------------------------------
# Manifests and the no-path default


def test_project_manifest() -> None:
    manifest = load_manifest("meditations")
    assert manifest["name"] == "meditations"
    assert len(manifest["sha256"]) == 64
    assert manifest["filename"] == "meditations.txt"
    assert manifest["url"].startswith("https://")


def test_unknown_manifest_lists_known(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        _documents(DataConfig(corpus="no-such-corpus", cache_dir=str(tmp_path)))
    message = str(info.value)
    assert "no-such-corpus" in message and "meditations" in message and "data.path" in message


def test_default_corpus_download_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = json.loads((PROJECT_DATA_DIR / "meditations.json").read_text(encoding="utf-8"))
    manifest["url"] = UNREACHABLE
    # A file name nobody has downloaded, so a file already in data/downloads cannot satisfy it.
    manifest["filename"] = f"offline-test-{os.getpid()}.txt"
    data_dir = tmp_path / "manifests"
    data_dir.mkdir()
    (data_dir / "meditations.json").write_text(json.dumps(manifest), encoding="utf-8")
    monkeypatch.setenv("BERT_FLAX_DATA_DIR", str(data_dir))
    cache = tmp_path / "cache"
    project_downloads = PROJECT_DATA_DIR / "downloads"
    before = _listing(project_downloads)
    with pytest.raises(UserError) as info:
        _documents(DataConfig(corpus="meditations", cache_dir=str(cache)))
    message = str(info.value)
    assert "data.path" in message and "meditations" in message
    assert "\n" not in message
    assert _listing(project_downloads) - before == set()  # no temp file or partial download
    assert not any(name.startswith(".download-") for name in _listing(cache_root(DataConfig(cache_dir=str(cache)))))
    assert not (project_downloads / manifest["filename"]).exists()


def test_default_corpus_is_the_shipped_meditations_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default config needs neither data.path nor a network: data/meditations.txt is the manifest's file."""
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    data = DataConfig(cache_dir=str(tmp_path))
    assert source_files(data) == [PROJECT_DATA_DIR / "meditations.txt"]
    assert len(_documents(data)) == 507
    assert source_identity(data)[0]["path"] == str((PROJECT_DATA_DIR / "meditations.txt").resolve())
    manifest = load_manifest("meditations")
    assert hashlib.sha256((PROJECT_DATA_DIR / "meditations.txt").read_bytes()).hexdigest() == manifest["sha256"]


def _tiny_manifest_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload: bytes) -> Path:
    """A manifest `tiny` pinning `payload` (served from a file URL), with no writable project data/."""
    source = tmp_path / "source.txt"
    source.write_bytes(payload)
    data_dir = tmp_path / "manifests"
    data_dir.mkdir()
    (data_dir / "tiny.json").write_text(json.dumps(_manifest(source.as_uri(), payload, "tiny.txt")), encoding="utf-8")
    monkeypatch.setenv("BERT_FLAX_DATA_DIR", str(data_dir))
    monkeypatch.setattr(corpus_module, "PROJECT_DATA_DIR", tmp_path / "no-checkout")
    return data_dir


def test_a_shipped_copy_that_does_not_match_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = _tiny_manifest_outside_a_checkout(tmp_path, monkeypatch, b"Pinned paragraph.\n")
    (data_dir / "tiny.txt").write_text("Edited by hand.\n", encoding="utf-8")
    data = DataConfig(corpus="tiny", cache_dir=str(tmp_path / "cache"))
    assert _documents(data) == ["Pinned paragraph."]  # the verified download, not the edited copy
    assert source_files(data) == [tmp_path / "cache" / "downloads" / "tiny.txt"]


def test_download_dir_falls_back_to_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a writable source checkout, downloads go to the cache directory."""
    payload = b"Cached paragraph one.\nCached paragraph two.\n"
    _tiny_manifest_outside_a_checkout(tmp_path, monkeypatch, payload)
    cache = tmp_path / "cache"
    data = DataConfig(corpus="tiny", cache_dir=str(cache))
    assert _documents(data) == ["Cached paragraph one.", "Cached paragraph two."]
    assert (cache / "downloads" / "tiny.txt").read_bytes() == payload
    assert source_identity(data)[0]["path"] == str((cache / "downloads" / "tiny.txt").resolve())


# ---------------------------------------------------------------------------------------------
# The `datasets` source


def test_datasets_text_source(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("First  line.\n\nSecond line.\nThird\n", encoding="utf-8")
    data = DataConfig(dataset="text", path=(str(path),), cache_dir=str(tmp_path / "cache"))
    assert _documents(data) == ["First line.", "Second line.", "Third"]
    # The same documents as the plain file.
    assert _documents(data) == _documents(DataConfig(path=(str(path),)))
    (identity,) = source_identity(data)
    assert identity["dataset"] == "text" and identity["data_files"][0]["path"] == str(path.resolve())
    assert total_bytes([identity]) is None


def test_datasets_csv_source(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('id,body\n1,"Hello  world."\n2,"Second, row."\n3,\n', encoding="utf-8")
    assert _documents(DataConfig(dataset="csv", path=(str(path),), text_column="body")) == ["Hello world.", "Second, row."]


def test_datasets_wrong_column_lists_columns(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("id,body,title\n1,hello,t\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        _documents(DataConfig(dataset="csv", path=(str(path),), text_column="text"))
    message = str(info.value)
    assert "'text'" in message and "data.text_column" in message and "\n" not in message
    for column in ("id", "body", "title"):
        assert column in message


def test_datasets_source_with_no_text(tmp_path: Path, hf_datasets_cache: Path) -> None:
    """No documents (preparing refuses it: test_prepare.py)."""
    path = tmp_path / "blank.txt"
    path.write_text("\n \n\n", encoding="utf-8")
    assert _documents(DataConfig(dataset="text", path=(str(path),))) == []


def test_datasets_glob_matching_nothing(tmp_path: Path, hf_datasets_cache: Path) -> None:
    with pytest.raises(UserError, match="matches no file"):
        _documents(DataConfig(dataset="text", path=(str(tmp_path / "*.none"),)))


def test_datasets_unknown_dataset(tmp_path: Path, hf_datasets_cache: Path) -> None:
    with pytest.raises(UserError) as info:
        _documents(DataConfig(dataset=str(tmp_path / "no-such-dataset")))
    assert "no-such-dataset" in str(info.value) and "data.path" in str(info.value) and "\n" not in str(info.value)


ROWS = [
    "Title one\n\nFirst paragraph of row one.\nStill the first paragraph.\n\n\nSecond paragraph.",
    "Row two has one line",
    "Row three line one\nrow three line two",
    "",
    "  \n\n  ",
    "Row six\n\n  \t\nends here\n",
]


def _rows_source(tmp_path: Path, kind: str) -> Path:
    if kind == "json":
        path = tmp_path / "rows.jsonl"
        path.write_text("".join(json.dumps({"id": i, "text": row}) + "\n" for i, row in enumerate(ROWS)), encoding="utf-8")
    else:
        path = tmp_path / "rows.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text"])
            writer.writerows(enumerate(ROWS))
    return path


@pytest.mark.parametrize("kind, streaming", [("json", False), ("csv", False), ("json", True)])
def test_datasets_rows_as_documents(tmp_path: Path, hf_datasets_cache: Path, kind: str, streaming: bool) -> None:
    path = _rows_source(tmp_path, kind)

    def documents(mode: str) -> list[str]:
        return _documents(DataConfig(dataset=kind, path=(str(path),), documents=mode, streaming=streaming))

    # documents=row: every row with text is exactly one document, blank lines and all.
    assert documents("row") == [" ".join(row.split()) for row in ROWS if row.strip()]
    # blank_line: every row is split on its own; consecutive rows never merge into one document.
    assert documents("blank_line") == [
        "Title one",
        "First paragraph of row one. Still the first paragraph.",
        "Second paragraph.",
        "Row two has one line",
        "Row three line one row three line two",
        "Row six",
        "ends here",
    ]
    assert documents("line") == [line.strip() for row in ROWS for line in row.splitlines() if line.strip()]


def test_datasets_rows_are_read_in_chunks(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = tmp_path / "many.jsonl"
    rows = [f"row {i}\n\nsecond paragraph of {i}" for i in range(700)]
    path.write_text("".join(json.dumps({"text": row}) + "\n" for row in rows), encoding="utf-8")
    data = DataConfig(dataset="json", path=(str(path),), documents="row")
    chunks = list(read_chunks(data, 1024))
    assert len([c for c in chunks if c.documents]) >= 3  # row batches, not the whole dataset at once
    assert [d for c in chunks for d in c.documents] == [" ".join(row.split()) for row in rows]
    assert _documents(data) == [" ".join(row.split()) for row in rows]
