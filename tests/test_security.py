"""No pickle is ever loaded: a pickle planted where weights or a checkpoint are expected is refused
without being unpickled (its payload would create a marker file)."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path

import pytest
from conftest import smoke_config

from bert_flax.cli import main
from bert_flax.errors import UserError
from bert_flax.interop.sources import load_model_source
from bert_flax.pretrain import pretrain
from bert_flax.run.metrics import read_metrics


class _Payload:
    """Unpickling this calls open(marker, "w"): the marker's existence proves the pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def plant_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_Payload(marker)))


def test_the_payload_does_run_when_unpickled(tmp_path: Path) -> None:
    """The check below means something: plain pickle.load of the same bytes does create the marker."""
    marker = tmp_path / "unpickled"
    plant_pickle(tmp_path / "payload.pkl", marker)
    pickle.loads((tmp_path / "payload.pkl").read_bytes()).close()
    assert marker.exists()


def test_pickle_as_pytorch_weights_is_refused(minilm_dir: str, tmp_path: Path, capsys) -> None:
    model_dir, marker = tmp_path / "model", tmp_path / "unpickled"
    model_dir.mkdir()
    shutil.copy(Path(minilm_dir) / "config.json", model_dir / "config.json")
    plant_pickle(model_dir / "pytorch_model.bin", marker)
    with pytest.raises(UserError, match="is not a plain state dict"):
        load_model_source(str(model_dir))
    assert main(["export", str(model_dir), "--out", str(tmp_path / "out")]) == 2
    assert "not a plain state dict" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_pickle_planted_as_a_checkpoint_is_refused(
    corpus_path: Path, smoke_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, run_dir, marker = smoke_config(corpus_path, smoke_cache), tmp_path / "run", tmp_path / "unpickled"
    pretrain(config, run_dir, stop_at=2, show_progress=False)
    planted = run_dir / "checkpoints" / "4"
    for item in ("state", "data"):
        for name in ("checkpoint", "_METADATA", "data.pkl"):
            plant_pickle(planted / item / name, marker)
    (planted / "_CHECKPOINT_METADATA").write_text(json.dumps({"init_timestamp_nsecs": 1}))

    with pytest.raises(UserError, match="cannot read checkpoint"):
        main(["export", str(planted), "--out", str(tmp_path / "out"), "--debug"])
    with caplog.at_level(logging.WARNING, logger="bert_flax.engine.checkpoint"):
        result = pretrain(config, run_dir, show_progress=False)
    assert any("step 4 is unreadable" in record.getMessage() for record in caplog.records)
    assert result.finished and [r["step"] for r in read_metrics(run_dir, "train")] == [1, 2, 3, 4]
    assert not marker.exists()
