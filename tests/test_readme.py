"""The README stays true: its generated references match the code, and every command in its `bash`
blocks runs — in order, in one scratch directory — except the few that need a network, a TPU or
are the test suite itself, listed below with the reason. Buckets (gs://) are those of the session's
Cloud Storage emulator; scripts/tpu_vm.sh runs with --dry-run.

Long commands get overrides appended that make them tiny (a later `key=value` wins), so what is
checked is that each command line parses, finds its files and flags, and exits 0.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from finetune_data import pair_questions, topic_rows, write_squad, write_topic_csv

from bert_flax import cli
from bert_flax.cli.reference import generated_sections, replace_generated

README = REPO_ROOT / "README.md"
NOT_RUN = {
    "pip install -e . && bert-flax pretrain": "downloads bert-base-uncased and the corpus",
    "bert-flax prepare data.dataset=wikimedia/wikipedia data.dataset_config=20231101.en data.documents=row "
    "data.streaming=true": "streams Wikipedia from the hub",
    'pip install -e ".[dev]" && XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m pytest -q': (
        "the test suite itself: CI runs it"
    ),
    "bert-flax bench --suite": "minutes of processes; tests/test_bench_suite.py runs the smoke suite end to end",
}
# Appended to the commands that would otherwise train or time for minutes, by verb (or script).
TINY = {
    "pretrain": "model.preset=tiny train.steps=4 train.batch_size=16 data.max_seq_len=64 eval.every=2 "
    "checkpoint.every=2 optim.warmup_steps=1",
    "finetune": "train.steps=2 eval.every=2 checkpoint.every=2 data.max_seq_len=64 finetune.max_query_len=16 "
    "finetune.doc_stride=16 optim.warmup_steps=1",
    "bench": "--steps 2 --warmup 1 model.preset=tiny train.batch_size=8",
    "bench-data": "--seconds 0.5",
    "scripts/bench_pytorch.py": "--preset tiny --batch-size 8 --steps 2 --warmup 1",
    "scripts/tpu_vm.sh": "--dry-run",  # prints the gcloud commands: no GCP from here
}


def readme_commands(text: str) -> list[str]:
    """Commands of the README's ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(shlex.join(shlex.split(line, comments=True)) if "#" in line else line)
    return commands


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))
BUCKETS = sorted(set(re.findall(r"gs://([a-z0-9][a-z0-9._-]{2,62})", "\n".join(COMMANDS))))  # on the test server


def test_generated_references_are_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert replace_generated(text, generated_sections()) == text, "README is stale: run python scripts/update_readme.py"


def test_the_not_run_list_names_readme_commands() -> None:
    stale = [command for command in NOT_RUN if command not in COMMANDS]
    assert not stale, f"NOT_RUN lists commands the README no longer has: {stale}"


@pytest.fixture(scope="module")
def readme_buckets(gcs_server) -> list[str]:
    """The buckets the commands name, on the session's Cloud Storage emulator."""
    return [gcs_server.create_bucket(bucket) for bucket in BUCKETS]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory, corpus_path: Path) -> Path:
    """A user's working directory: the repo's configs and scripts and small task data from the corpus."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("configs", "scripts"):
        (root / name).symlink_to(REPO_ROOT / name)
    paragraphs = [line for line in corpus_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    split = len(paragraphs) * 4 // 5
    write_topic_csv(topic_rows(paragraphs[:split]), root / "train.csv")
    write_topic_csv(topic_rows(paragraphs[split:]), root / "eval.csv")
    write_squad(pair_questions(paragraphs[:split][:60]), root / "train-v1.1.json")
    write_squad(pair_questions(paragraphs[split:][:20]), root / "dev-v1.1.json")
    (root / "page.txt").write_text(
        "The Meditations were written by Marcus Aurelius, emperor of Rome, in Greek, during his campaigns.\n",
        encoding="utf-8",
    )
    return root


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    verb = argv[1] if argv[0] in ("bert-flax", "python") else argv[0]
    return argv + shlex.split(TINY.get(verb, ""))


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i:02d} {c[:60]}" for i, c in enumerate(COMMANDS)])
def test_readme_command_runs(
    command: str, scratch: Path, monkeypatch: pytest.MonkeyPatch, capsys, request: pytest.FixtureRequest
) -> None:
    if command in NOT_RUN:
        pytest.skip(NOT_RUN[command])
    monkeypatch.chdir(scratch)
    argv = _argv(command)
    if argv[0] == "bert-flax" and "gs://" in command:
        request.getfixturevalue("readme_buckets")
    if argv[0] == "bert-flax":  # in this process: no JAX start-up per command
        code = cli.main(argv[1:])
        captured = capsys.readouterr()
        assert code == 0, f"{command}\nexit {code}\n{captured.err[-3000:]}"
        return
    assert argv[0] in ("python", "scripts/tpu_vm.sh"), f"test_readme does not know how to run: {command}"
    executable = [sys.executable] if argv[0] == "python" else ["bash"]
    result = subprocess.run(
        [*executable, *(argv[1:] if argv[0] == "python" else argv)],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{result.stderr[-3000:]}"
