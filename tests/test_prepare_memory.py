"""Preparing a corpus takes memory bounded by the chunk size, not by the corpus size.

One fresh process runs `bert-flax prepare` on a synthetic corpus of 1 MB, then on one of 7 MB
(scripts/make_corpus.py); its peak RSS must not grow from the first to the second. The code before
prepared datasets held every document, sentence and token id as Python objects: about 50 bytes of
RAM per byte of text, so about +300 MB here, against a bound of 60 MB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

GROWTH_BOUND_MB = 60
PEAKS_SCRIPT = """
import resource, sys
from bert_flax.cli import main
for corpus, cache in zip(sys.argv[2::2], sys.argv[3::2]):
    argv = ["prepare", "--quiet", f"data.path={corpus}", f"data.cache_dir={cache}", f"tokenizer.name={sys.argv[1]}",
            "data.prepare_workers=1", "data.prepare_chunk_bytes=1000000"]
    assert main(argv) == 0
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def test_prepare_memory_does_not_grow_with_the_corpus(tmp_path: Path, minilm_dir: str) -> None:
    sizes_mb = (1, 7)
    argv = [minilm_dir]
    for mb in sizes_mb:
        corpus = tmp_path / f"corpus{mb}.txt"
        make = [sys.executable, str(REPO_ROOT / "scripts" / "make_corpus.py"), str(corpus), "--mb", str(mb)]
        subprocess.run(make, check=True, capture_output=True)
        argv += [str(corpus), str(tmp_path / f"cache{mb}")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", PEAKS_SCRIPT, *argv], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    small, large = (int(line) / 1024 for line in result.stdout.splitlines() if line.isdigit())
    assert large - small < GROWTH_BOUND_MB, f"peak RSS {small:.0f} MB at {sizes_mb[0]} MB, {large:.0f} MB at {sizes_mb[1]} MB"
