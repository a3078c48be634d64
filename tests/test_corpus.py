"""Tests for bert_flax.data.corpus: documents, validated files, globs, downloads, `datasets` sources."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from bert_flax.config import DataConfig
from bert_flax.data import corpus as corpus_module
from bert_flax.data.corpus import (
    PROJECT_DATA_DIR,
    cache_root,
    download,
    load_corpus,
    load_manifest,
    read_text_file,
    resolve_paths,
    split_documents,
)
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
# read_text_file / load_corpus on bad input


def _load_error(tmp_path: Path, *paths: str | Path) -> str:
    with pytest.raises(UserError) as info:
        load_corpus(DataConfig(path=tuple(str(p) for p in paths), cache_dir=str(tmp_path / "cache")))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(UserError) as info:
        read_text_file(missing)
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)
    message = _load_error(tmp_path, missing)
    assert str(missing) in message and "data.path" in message


def test_directory(tmp_path: Path) -> None:
    directory = tmp_path / "texts"
    directory.mkdir()
    message = _load_error(tmp_path, directory)
    assert "directory" in message and str(directory) in message and "*.txt" in message


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    message = _load_error(tmp_path, empty)
    assert str(empty) in message and "empty" in message


def test_whitespace_only_file(tmp_path: Path) -> None:
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\t\n\r\n   \n", encoding="utf-8")
    message = _load_error(tmp_path, blank)
    assert str(blank) in message and "whitespace" in message


def test_binary_file(tmp_path: Path) -> None:
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    message = _load_error(tmp_path, binary)
    assert str(binary) in message and "binary" in message


def test_invalid_utf8_reports_byte_offset(tmp_path: Path) -> None:
    prefix = ("Valid text here. " * 80).encode("utf-8")[:1234]
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(prefix + "é and more".encode("latin-1"))
    assert len(prefix) == 1234
    message = _load_error(tmp_path, bad)
    assert str(bad) in message and "UTF-8" in message
    assert "1234" in message
    assert "\\xe9" in message


def test_utf8_multibyte_is_fine(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Καλημέρα κόσμε.\nnaïve café — “quoted”.\n", encoding="utf-8")
    corpus = load_corpus(DataConfig(path=(str(good),)))
    assert corpus.documents == ("Καλημέρα κόσμε.", "naïve café — “quoted”.")


def test_glob_matching_nothing(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*.nothing")
    message = _load_error(tmp_path, pattern)
    assert "matches no file" in message and pattern in message


def test_globs_and_multiple_files_concatenate_in_order(tmp_path: Path) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "b.txt").write_text("b one\nb two\n", encoding="utf-8")
    (texts / "a.txt").write_text("a one\n", encoding="utf-8")
    (texts / "c.txt").write_text("\nc one\n\n", encoding="utf-8")
    (texts / "skip.md").write_text("not matched\n", encoding="utf-8")
    globbed = load_corpus(DataConfig(path=(str(texts / "*.txt"),)))
    assert globbed.documents == ("a one", "b one", "b two", "c one")
    assert [p.name for p in resolve_paths([str(texts / "*.txt")])] == ["a.txt", "b.txt", "c.txt"]
    # Explicit paths keep the order given; a glob and a file mix.
    explicit = load_corpus(DataConfig(path=(str(texts / "c.txt"), str(texts / "a.txt"))))
    assert explicit.documents == ("c one", "a one")
    mixed = load_corpus(DataConfig(path=(str(texts / "skip.md"), str(texts / "[ab].txt"))))
    assert mixed.documents == ("not matched", "a one", "b one", "b two")
    assert str(texts / "a.txt") in mixed.source
    # Different content, different hash; the same content, the same hash.
    assert len({globbed.sha256, explicit.sha256, mixed.sha256}) == 3


def test_recursive_glob(tmp_path: Path) -> None:
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "x" / "y" / "deep.txt").write_text("deep\n", encoding="utf-8")
    (tmp_path / "x" / "top.txt").write_text("top\n", encoding="utf-8")
    corpus = load_corpus(DataConfig(path=(str(tmp_path / "x" / "**" / "*.txt"),)))
    assert set(corpus.documents) == {"deep", "top"}


def test_one_bad_file_among_good_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("fine\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    message = _load_error(tmp_path, good, empty)
    assert str(empty) in message


def test_documents_mode_applies_to_files(tmp_path: Path) -> None:
    path = tmp_path / "paras.txt"
    path.write_text("p1 l1\np1 l2\n\np2 l1\n", encoding="utf-8")
    assert len(load_corpus(DataConfig(path=(str(path),))).documents) == 3
    blank = load_corpus(DataConfig(path=(str(path),), documents="blank_line"))
    assert blank.documents == ("p1 l1 p1 l2", "p2 l1")


def test_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_root(DataConfig(cache_dir=str(tmp_path / "c"))) == tmp_path / "c"
    monkeypatch.setenv("BERT_FLAX_CACHE", str(tmp_path / "env"))
    assert cache_root(DataConfig()) == tmp_path / "env"


# ---------------------------------------------------------------------------------------------
# The real corpus (or the generated stand-in)


def test_load_corpus_file(corpus_path: Path, corpus_lines: list[str]) -> None:
    data = DataConfig(path=(str(corpus_path),))
    first = load_corpus(data)
    second = load_corpus(data)
    assert first.sha256 == second.sha256
    assert first.documents == second.documents
    assert len(first.sha256) == 64
    assert len(first.documents) == len(corpus_lines)
    assert first.documents[0] == " ".join(corpus_lines[0].split())
    assert str(corpus_path) in first.source
    if _is_real_meditations(corpus_path):
        assert len(first.documents) == 507
        assert first.documents[0].startswith("From my grandfather Verus")


def test_sha_ignores_path_but_not_content(corpus_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.txt"
    shutil.copy(corpus_path, copy)
    original = load_corpus(DataConfig(path=(str(corpus_path),)))
    assert load_corpus(DataConfig(path=(str(copy),))).sha256 == original.sha256
    with copy.open("a", encoding="utf-8") as f:
        f.write("\nOne more paragraph.\n")
    changed = load_corpus(DataConfig(path=(str(copy),)))
    assert changed.sha256 != original.sha256
    assert len(changed.documents) == len(original.documents) + 1


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
        load_corpus(DataConfig(corpus="no-such-corpus", cache_dir=str(tmp_path)))
    message = str(info.value)
    assert "no-such-corpus" in message and "meditations" in message and "data.path" in message


def test_load_corpus_offline_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
        load_corpus(DataConfig(corpus="meditations", cache_dir=str(cache)))
    message = str(info.value)
    assert "data.path" in message and "meditations" in message
    assert "\n" not in message
    assert _listing(project_downloads) - before == set()  # no temp file or partial download
    assert not any(name.startswith(".download-") for name in _listing(cache_root(DataConfig(cache_dir=str(cache)))))
    assert not (project_downloads / manifest["filename"]).exists()


def test_default_corpus_is_the_shipped_meditations_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default config needs neither data.path nor a network: data/meditations.txt is the manifest's file."""
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    corpus = load_corpus(DataConfig(cache_dir=str(tmp_path)))
    assert len(corpus.documents) == 507
    assert corpus.source == f"meditations ({PROJECT_DATA_DIR / 'meditations.txt'})"
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
    corpus = load_corpus(DataConfig(corpus="tiny", cache_dir=str(tmp_path / "cache")))
    assert corpus.documents == ("Pinned paragraph.",)  # the verified download, not the edited copy


def test_download_dir_falls_back_to_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a writable source checkout, downloads go to the cache directory."""
    payload = b"Cached paragraph one.\nCached paragraph two.\n"
    _tiny_manifest_outside_a_checkout(tmp_path, monkeypatch, payload)
    cache = tmp_path / "cache"
    corpus = load_corpus(DataConfig(corpus="tiny", cache_dir=str(cache)))
    assert corpus.documents == ("Cached paragraph one.", "Cached paragraph two.")
    assert (cache / "downloads" / "tiny.txt").read_bytes() == payload
    assert "tiny" in corpus.source


# ---------------------------------------------------------------------------------------------
# The `datasets` source



def test_datasets_text_source(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("First  line.\n\nSecond line.\nThird\n", encoding="utf-8")
    corpus = load_corpus(DataConfig(dataset="text", path=(str(path),), cache_dir=str(tmp_path / "cache")))
    assert corpus.documents == ("First line.", "Second line.", "Third")
    assert corpus.source == "datasets:text"
    # The same documents from a plain file give the same content hash.
    assert corpus.sha256 == load_corpus(DataConfig(path=(str(path),))).sha256


def test_datasets_csv_source(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('id,body\n1,"Hello  world."\n2,"Second, row."\n3,\n', encoding="utf-8")
    corpus = load_corpus(DataConfig(dataset="csv", path=(str(path),), text_column="body"))
    assert corpus.documents == ("Hello world.", "Second, row.")


def test_datasets_wrong_column_lists_columns(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("id,body,title\n1,hello,t\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_corpus(DataConfig(dataset="csv", path=(str(path),), text_column="text"))
    message = str(info.value)
    assert "'text'" in message and "data.text_column" in message
    for column in ("id", "body", "title"):
        assert column in message


def test_datasets_source_with_no_text(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("\n \n\n", encoding="utf-8")
    with pytest.raises(UserError, match="no documents"):
        load_corpus(DataConfig(dataset="text", path=(str(path),)))


def test_datasets_glob_matching_nothing(tmp_path: Path, hf_datasets_cache: Path) -> None:
    with pytest.raises(UserError, match="matches no file"):
        load_corpus(DataConfig(dataset="text", path=(str(tmp_path / "*.none"),)))
