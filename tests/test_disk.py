"""The one writer for files and the one for directories: atomic, and with the user's umask, so a run's
outputs are as readable as anything else the user writes (a TensorBoard server, a teammate)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

import pytest
from conftest import smoke_config

from bert_flax.disk import write_dir, write_file
from bert_flax.interop.export import export
from bert_flax.pretrain import pretrain
from bert_flax.run.report import write_report

UMASK = 0o027  # group may read, others may not: neither the default 022 nor mkstemp's private 077


@pytest.fixture
def umask() -> Iterator[int]:
    old = os.umask(UMASK)
    try:
        yield UMASK
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _wrong_modes(root: Path, umask: int, with_root: bool = True) -> list[str]:
    """Entries under `root` whose permission bits are not what `open`/`mkdir` give under `umask`."""
    wrong = []
    for path in [root] * with_root + sorted(root.rglob("*")):
        want = (0o777 if path.is_dir() else 0o666) & ~umask
        if not path.is_symlink() and _mode(path) != want:
            wrong.append(f"{path.relative_to(root)}: {oct(_mode(path))}, want {oct(want)}")
    return wrong


def test_write_file_text_bytes_and_writer(tmp_path: Path, umask: int) -> None:
    assert write_file(tmp_path / "a" / "b.txt", "héllo\n").read_text(encoding="utf-8") == "héllo\n"
    assert write_file(tmp_path / "c.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_file(tmp_path / "d.bin", lambda f: f.write(b"xyz")).read_bytes() == b"xyz"
    assert _wrong_modes(tmp_path, umask, with_root=False) == []  # tmp_path itself is pytest's


def test_write_file_failure_keeps_the_old_file(tmp_path: Path, umask: int) -> None:
    target = write_file(tmp_path / "config.yaml", "old\n")

    def half_then_fail(f: object) -> None:
        f.write(b"new, half")  # type: ignore[attr-defined]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_file(target, half_then_fail)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary file left behind


def test_write_dir_replaces_whole_or_not_at_all(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "final"
    write_dir(target, lambda d: (d / "weights").write_text("v1"))
    assert write_dir(target, lambda d: (d / "weights").write_text("v2")) == 2  # what fill returned
    assert [p.name for p in target.iterdir()] == ["weights"] and (target / "weights").read_text() == "v2"

    def fail(directory: Path) -> None:
        (directory / "weights").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dir(target, fail)
    assert (target / "weights").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["final"]  # no temporary or set-aside directory left
    assert _wrong_modes(tmp_path, umask, with_root=False) == []


def test_a_run_an_export_and_a_report_honour_the_umask(
    corpus_path: Path, tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything a run writes, its tokenizer and token caches, its export and its report: files 0666
    and directories 0777 less the umask (mkstemp/mkdtemp would give 0600/0700)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache, run_dir, out = tmp_path / "cache", tmp_path / "run", tmp_path / "exported"
    result = pretrain(smoke_config(corpus_path, cache), run_dir, show_progress=False)
    assert result.finished
    export(str(run_dir), out)
    write_report(run_dir)
    assert {"config.yaml", "metrics.jsonl", "final", "tensorboard", "plots", "report.md"} <= {
        p.name for p in run_dir.iterdir()
    }
    for root in (run_dir, out, cache):
        assert _wrong_modes(root, umask) == [], root.name
