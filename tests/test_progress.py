"""The progress display: a redrawn bar on a terminal, plain lines elsewhere, nothing with --quiet."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from bert_flax import cli
from bert_flax.formats import format_duration
from bert_flax.run.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_bar_redraws_one_line_with_step_loss_speed_and_eta() -> None:
    stream = Terminal()
    progress = Progress(total_steps=10, start_step=0, stream=stream)
    for step in range(1, 6):
        progress.update(step, loss=7.5 - step * 0.1, tokens_per_second=12345.0)
    progress.message("eval step 5: loss 7.0000")
    progress.update(6, loss=6.9, tokens_per_second=12000.0)
    progress.close()
    text = stream.getvalue()
    frames = text.split("\r")
    assert "step 5/10 loss 7.0000 12,345 tok/s eta " in frames[5]
    assert frames[5].startswith("[############............]")  # 5/10 of a 24-wide bar
    assert re.search(r"eta \d+m\d\ds", frames[5])
    assert "\x1b[Keval step 5: loss 7.0000\n" in text  # the message clears the bar and keeps its own line
    assert text.endswith("\n") and text.count("\n") == 2


def test_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(total_steps=40, start_step=0, stream=stream)
    for step in range(1, 41):
        progress.update(step, loss=1.0, tokens_per_second=100.0)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert [int(re.match(r"step (\d+)/40 ", line).group(1)) for line in lines] == list(range(2, 41, 2))


def test_resumed_eta_counts_only_this_run() -> None:
    stream = io.StringIO()
    progress = Progress(total_steps=100, start_step=90, stream=stream)
    assert progress._eta(90) == "?"
    progress.t0 -= 10.0  # 10 s for the first 5 steps of this run: 2 s per step, 5 steps left
    assert progress._eta(95) == "0m10s"


@pytest.mark.parametrize("seconds, shown", [(0, "0m00s"), (59.9, "0m59s"), (61, "1m01s"), (3600 * 2 + 65, "2h01m")])
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_disabled_progress_writes_nothing() -> None:
    stream = Terminal()
    progress = Progress(total_steps=4, start_step=0, stream=stream, enabled=False)
    progress.update(1, 1.0, 1.0)
    progress.message("eval")
    progress.close()
    assert stream.getvalue() == ""


@pytest.mark.slow
def test_cli_quiet_drops_progress_but_keeps_the_result(corpus_path: Path, tmp_path: Path, capsys) -> None:
    argv = ["pretrain", "--config", "configs/smoke.yaml", f"data.path={corpus_path}", "train.steps=4"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)
        assert cli.main([*argv, "--run-dir", str(tmp_path / "loud")]) == 0
        loud = capsys.readouterr()
        assert cli.main([*argv, "--run-dir", str(tmp_path / "quiet"), "--quiet"]) == 0
        quiet = capsys.readouterr()
    assert re.search(r"^step 4/4 loss \d+\.\d{4} [\d,]+ tok/s eta ", loud.err, re.M)
    assert "eval step 2:" in loud.err
    assert quiet.err == ""
    assert quiet.out.startswith("finished: ") and loud.out.startswith("finished: ")
