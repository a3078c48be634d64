"""Runs in a bucket: gs:// run dirs, checkpoints, prepared data, corpora and exports against a real GCS
JSON-API server on loopback (fake-gcs-server, started by conftest.py; tests/gcs_emulator.py points every
client at it and away from real credentials and the cloud's metadata server).

Two runs carry most checks. `bucket_run`: the corpus in the bucket, `prepare` publishes the prepared
dataset there, `pretrain --stop-at 2` with one cache, then the same command from another working
directory with an empty cache (a fresh machine), which must continue bit for bit from the bucket alone,
copying the prepared data instead of tokenizing the corpus. `faults`: real processes on a server whose
objects outlive it, killed with SIGKILL inside a checkpoint save, then the server killed as the rerun
saves, then the server back and a last rerun. Both runs' traces must equal the local smoke run's.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, TIMING_KEYS
from gcs_emulator import Server, emulator_env, free_port

from bert_flax.cli import main
from bert_flax.errors import EXIT_BAD_INPUT, EXIT_RESUMABLE, UserError
from bert_flax.finetune.classify_data import read_rows
from bert_flax.storage import GsPath, download, to_path, write_file

pytestmark = pytest.mark.slow

SMOKE = str(REPO_ROOT / "configs" / "smoke.yaml")
TIMEOUT = 300


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def trace(metrics_text: str) -> list[dict]:
    records = [json.loads(line) for line in metrics_text.splitlines() if line.strip()]
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


def objects(prefix: GsPath) -> list[str]:
    """Every object name under `prefix`, relative to it, as a client of its own sees them."""
    import gcsfs

    fs = gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True, use_listings_cache=False)
    return sorted(GsPath(f"gs://{name}").relative_to(prefix).as_posix() for name in fs.find(prefix.url))


@pytest.fixture(scope="module")
def bucket_run(gcs_server: Server, corpus_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    bucket = to_path(f"gs://{gcs_server.create_bucket()}")
    root = tmp_path_factory.mktemp("bucket_run")
    write_file(bucket / "corpus" / "meditations.txt", corpus_path.read_bytes())
    run = bucket / "run"
    data = [f"data.path={bucket}/corpus/*.txt", f"data.prepared_dir={bucket}/prepared"]
    pretrain = ["pretrain", "--config", SMOKE, "--run-dir", str(run), "--quiet", *data]
    result = {"bucket": bucket, "run": run, "root": root}
    with pytest.MonkeyPatch.context() as patch:
        for machine in ("first", "fresh"):
            (root / machine).mkdir()
            patch.chdir(root / machine)
            patch.setenv("BERT_FLAX_CACHE", str(root / machine / "cache"))
            if machine == "first":
                result["prepare"] = run_cli("prepare", "--config", SMOKE, "--quiet", *data)
                result["stopped"] = run_cli(*pretrain, "--stop-at", "2")
                result["metrics_at_stop"] = (run / "metrics.jsonl").read_text()
            else:  # copies the prepared data, never tokenizes the corpus again
                from bert_flax.data import prepare

                patch.setattr(prepare, "_build", lambda *args, **kwargs: pytest.fail("the corpus was tokenized again"))
                result["resumed"] = run_cli(*pretrain)
    return result


def test_prepare_publishes_to_the_bucket_manifest_and_all(bucket_run: dict) -> None:
    code, out, err = bucket_run["prepare"]
    assert code == 0, err
    prepared = bucket_run["bucket"] / "prepared"
    assert out.startswith(f"prepared: {prepared} (")
    manifest = json.loads((prepared / "manifest.json").read_text())
    named = [manifest["files"]["sentence_starts"], manifest["files"]["document_starts"], *manifest["files"]["tokens"]]
    assert sorted(objects(prepared)) == sorted(["manifest.json", *(entry["file"] for entry in named)])
    assert manifest["sources"][0]["path"] == f"{bucket_run['bucket']}/corpus/meditations.txt"


def test_a_fresh_machine_resumes_from_the_bucket_bit_for_bit(bucket_run: dict, smoke_run: Path) -> None:
    for leg in ("stopped", "resumed"):
        code, _, err = bucket_run[leg]
        assert code == 0, err
    run = bucket_run["run"]
    assert {r["step"] for r in trace(bucket_run["metrics_at_stop"])} == {1, 2}
    assert trace((run / "metrics.jsonl").read_text()) == trace((smoke_run / "metrics.jsonl").read_text())
    fresh_cache = bucket_run["root"] / "fresh" / "cache" / "prepared" / "gs"
    (copy,) = fresh_cache.iterdir()  # the prepared data, copied once from the bucket
    assert (copy / "manifest.json").read_text() == (bucket_run["bucket"] / "prepared" / "manifest.json").read_text()
    for machine in ("first", "fresh"):  # no local look-alike such as ./gs:/bucket/run
        assert not (bucket_run["root"] / machine / "gs:").exists()


def test_every_run_file_is_an_object_in_the_bucket(bucket_run: dict) -> None:
    names = objects(bucket_run["run"])
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "model_config.json",
        "tokenizer/vocab.txt",
        "final/config.json",
        "final/flax_model.msgpack",
        "checkpoints/2/commit_success.txt",
        "checkpoints/4/commit_success.txt",
    ):
        assert name in names
    assert len([name for name in names if name.startswith("tensorboard/") and "tfevents" in name]) == 1


def test_tensorboard_reads_every_scalar_of_the_resumed_run_once(bucket_run: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(bucket_run["run"] / "tensorboard"))
    events.Reload()
    records = trace((bucket_run["run"] / "metrics.jsonl").read_text())
    for split in ("train", "eval"):
        logged = [r for r in records if r["split"] == split]
        scalars = events.Scalars(f"{split}/loss")
        assert [s.step for s in scalars] == [r["step"] for r in logged]
        np.testing.assert_allclose([s.value for s in scalars], [r["loss"] for r in logged], rtol=1e-6)


def test_report_eval_and_predict_read_a_bucket_run(bucket_run: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    run = bucket_run["run"]
    monkeypatch.setenv("BERT_FLAX_CACHE", str(bucket_run["root"] / "fresh" / "cache"))
    code, out, err = run_cli("report", str(run))
    assert code == 0, err
    assert {"report.md", "plots/loss.png", "plots/learning_rate.png"} <= set(objects(run))
    assert "![loss](plots/loss.png)" in (run / "report.md").read_text()
    code, out, err = run_cli("eval", "--model", str(run), "--json")
    assert code == 0, err
    measured = json.loads(out)
    logged = [r for r in trace((run / "metrics.jsonl").read_text()) if r["split"] == "eval"][-1]
    assert measured["step"] == logged["step"] == 4
    np.testing.assert_allclose(
        [measured["loss"], measured["mlm_accuracy"]], [logged["loss"], logged["mlm_accuracy"]], rtol=1e-5
    )
    code, out, err = run_cli(
        "predict", "fill-mask", "--model", str(run / "checkpoints" / "2"), "--json", "the [MASK] is good"
    )
    assert code == 0, err
    assert len(json.loads(out)["masks"][0]) == 5


def test_export_from_the_bucket_to_the_bucket_and_to_disk_loads_in_transformers(
    bucket_run: dict, tmp_path: Path
) -> None:
    from transformers import BertForPreTraining

    run, remote_out, local_out = bucket_run["run"], bucket_run["bucket"] / "export", tmp_path / "export"
    for out in (remote_out, local_out):
        code, _, err = run_cli("export", str(run), "--out", str(out))
        assert code == 0, err
    assert objects(remote_out) == sorted(p.name for p in local_out.iterdir())
    fetched = download(remote_out, tmp_path / "fetched")
    assert (fetched / "model.safetensors").read_bytes() == (local_out / "model.safetensors").read_bytes()
    model = BertForPreTraining.from_pretrained(fetched)
    assert model.config.num_hidden_layers == 2
    code, _, err = run_cli("export", str(run), "--out", str(remote_out))
    assert code == EXIT_BAD_INPUT and "already exists" in err


# --- real processes: a save killed, then the bucket gone mid-run ------------------------------------


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, corpus_path: Path, smoke_cache: Path) -> dict:
    root = tmp_path_factory.mktemp("gcs_faults")
    server = Server(free_port(), root / "server.log", root / "objects")
    (root / "objects").mkdir()
    server.start()
    run = to_path(f"gs://{server.create_bucket()}/run")
    (root / "tmp").mkdir()  # the working copies a killed process leaves behind stay in here
    env = {
        **os.environ,
        **emulator_env(server.url),
        "HF_HUB_OFFLINE": "1",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "TMPDIR": str(root / "tmp"),
    }
    argv = [
        "pretrain",
        "--config",
        SMOKE,
        "--run-dir",
        str(run),
        f"data.path={corpus_path}",
        f"data.cache_dir={smoke_cache}",
    ]
    tests = REPO_ROOT / "tests"

    def start(*prefix: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *prefix, *argv],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    result = {"run": run}
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", server.url)  # gcsfs reads it on every request
            result["killed"] = start(str(tests / "crash_in_checkpoint_save.py"), "4")
            result["after_kill"] = objects(run / "checkpoints")
            result["bucket_down"] = start(
                str(tests / "bucket_down_in_checkpoint_save.py"), "4", str(server.process.pid)
            )
            server.process.wait()
            server.start()  # the same port and objects
            result["rerun"] = start("-m", "bert_flax.cli")
            result["metrics"] = (run / "metrics.jsonl").read_text()
            result["steps"] = objects(run / "checkpoints")
    finally:
        server.stop()
    return result


def test_a_save_killed_before_its_commit_marker_is_never_read(faults: dict) -> None:
    killed, bucket_down = faults["killed"], faults["bucket_down"]
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "2/commit_success.txt" in faults["after_kill"]
    assert any(name.startswith("4/") for name in faults["after_kill"])  # written, but never committed
    assert "4/commit_success.txt" not in faults["after_kill"]
    assert "checkpoint step 4 was never finished (a save was interrupted); deleting it" in bucket_down.stderr
    assert f"resuming {faults['run']} from step 2" in bucket_down.stderr


def test_the_bucket_going_away_stops_the_run_with_one_line_then_the_rerun_resumes(
    faults: dict, smoke_run: Path
) -> None:
    bucket_down, rerun = faults["bucket_down"], faults["rerun"]
    assert bucket_down.returncode == EXIT_RESUMABLE, bucket_down.stderr
    errors = [line for line in bucket_down.stderr.splitlines() if line.startswith("error:")]
    assert errors == [bucket_down.stderr.splitlines()[-1]], bucket_down.stderr
    assert f"saving checkpoint 4 to {faults['run']}/checkpoints failed" in errors[0]
    assert "rerun the same command to resume" in errors[0]
    assert "Traceback" not in bucket_down.stderr
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming {faults['run']} from step 2" in rerun.stderr
    assert trace(faults["metrics"]) == trace((smoke_run / "metrics.jsonl").read_text())
    assert {"2/commit_success.txt", "4/commit_success.txt"} <= set(faults["steps"])


# --- refused before anything is written -----------------------------------------------------------


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture
def fresh_clients(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The storage clients set up again for one test (and again after it), in an empty working directory."""
    from bert_flax import storage

    monkeypatch.chdir(tmp_path)
    storage._fs.cache_clear()
    yield monkeypatch
    storage._fs.cache_clear()


def refused_pretrain(run_dir: str, corpus_path: Path, smoke_cache: Path, caplog: pytest.LogCaptureFixture) -> str:
    argv = [
        "pretrain",
        "--config",
        SMOKE,
        "--run-dir",
        run_dir,
        f"data.path={corpus_path}",
        f"data.cache_dir={smoke_cache}",
    ]
    code, out, err = run_cli(*argv)
    assert (code, out) == (EXIT_BAD_INPUT, ""), err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    return one_line_error(err)


def test_without_the_gcs_extra_a_bucket_is_one_line_naming_it(
    fresh_clients: pytest.MonkeyPatch, tmp_path: Path, corpus_path: Path, smoke_cache: Path, caplog
) -> None:
    fresh_clients.setitem(sys.modules, "gcsfs", None)  # `import gcsfs` fails, as without the extra
    message = refused_pretrain("gs://some-bucket/run", corpus_path, smoke_cache, caplog)
    assert 'pip install "bert_flax[gcs]"' in message
    assert list(tmp_path.iterdir()) == []


def test_without_credentials_a_bucket_is_one_line_naming_the_login(
    fresh_clients: pytest.MonkeyPatch, tmp_path: Path, corpus_path: Path, smoke_cache: Path, caplog
) -> None:
    """No emulator: the real service's path, where google-auth finds no credentials (an empty gcloud
    config, no metadata server); a proxy on a closed loopback port catches any request that would leave."""
    for name in emulator_env(""):
        fresh_clients.delenv(name)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        fresh_clients.setenv(name, "http://127.0.0.1:9")
    message = refused_pretrain("gs://some-bucket/run", corpus_path, smoke_cache, caplog)
    assert "gcloud auth application-default login" in message
    assert list(tmp_path.iterdir()) == []


def test_fine_tuning_files_are_read_from_the_bucket(gcs_bucket: str, tmp_path: Path) -> None:
    """finetune.train_path / eval_path in a bucket: the same rows as the local file; a missing one is one line."""
    local = tmp_path / "train.csv"
    local.write_text("text,label\nThe soul is dyed by its thoughts.,soul\nWaste no more time.,time\n")
    write_file(to_path(f"{gcs_bucket}/data/train.csv"), local.read_bytes())
    assert read_rows(f"{gcs_bucket}/data/train.csv") == read_rows(local)
    with pytest.raises(UserError, match=rf"^file {gcs_bucket}/data/eval.csv does not exist; pass a .csv"):
        read_rows(f"{gcs_bucket}/data/eval.csv")
