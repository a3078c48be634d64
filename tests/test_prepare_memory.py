"""Preparing a corpus takes memory bounded by the chunk size, not by the corpus size.

`bert-flax prepare` runs in a fresh process on synthetic corpora of 1 MB and 7 MB
(scripts/make_corpus.py); its peak RSS must not grow with the corpus. The code before prepared
datasets held every document, sentence and token id as Python objects: about 50 bytes of RAM per
byte of text, so about +300 MB here, against a bound of 60 MB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

GROWTH_BOUND_MB = 60


def _peak_rss_mb_of_prepare(corpus: Path, cache: Path, minilm_dir: str) -> float:
    """Peak RSS of a `bert-flax prepare` process (one worker: the process holds everything)."""
    code = (
        "import resource, sys\n"
        "from bert_flax.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    argv = [
        "prepare", "--quiet", f"data.path={corpus}", f"data.cache_dir={cache}", f"tokenizer.name={minilm_dir}",
        "data.prepare_workers=1", "data.prepare_chunk_bytes=1000000",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.parametrize("small_mb, large_mb", [(1, 7)])
def test_prepare_memory_does_not_grow_with_the_corpus(tmp_path: Path, minilm_dir: str, small_mb: int, large_mb: int) -> None:
    peaks = {}
    for mb in (small_mb, large_mb):
        corpus = tmp_path / f"corpus{mb}.txt"
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "make_corpus.py"), str(corpus), "--mb", str(mb)], check=True,
            capture_output=True,
        )
        peaks[mb] = _peak_rss_mb_of_prepare(corpus, tmp_path / f"cache{mb}", minilm_dir)
    growth = peaks[large_mb] - peaks[small_mb]
    assert growth < GROWTH_BOUND_MB, f"peak RSS {peaks}: +{growth:.0f} MB for +{large_mb - small_mb} MB of text"
