"""scripts/tpu_vm.sh builds the right gcloud commands (no GCP here: a fake `gcloud` records its argv).

The remote `bert-flax pretrain` line is checked two ways: split with shlex and parsed by the real CLI
parser and config loader, and run by bash with a stand-in `bert-flax` that records what it received,
so a value with spaces, quotes or `$` arrives intact.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from bert_flax.cli import _OVERRIDE, build_parser
from bert_flax.config import load_config

SCRIPT = REPO_ROOT / "scripts" / "tpu_vm.sh"
CONFIG = "configs/meditations_scratch.yaml"
TRICKY_PATH = "/data/my corpus.txt"
TRICKY_COLUMN = 'it\'s $HOME; `x` "q"'
USER_OVERRIDES = ["train.steps=100", f"data.path={TRICKY_PATH}", f"data.text_column={TRICKY_COLUMN}"]
BASE = ["--name", "bert-tpu", "--zone", "us-central2-b"]
UP = [
    *BASE,
    *("--project", "my-project", "--accelerator", "v4-32", "--spot"),
    *("--repo", "https://github.com/example/bert_flax.git", "--ref", "v0.1"),
    *("--config", CONFIG, "--run-dir", "/mnt/shared/runs/v4"),
]
SHELL_OPERATORS = {">", ">>", "2>&1", "<", "&", "&&", "|", "||", ";"}

FAKE_GCLOUD = """#!{python}
import json, os, sys
args = sys.argv[1:]
log_path = os.environ["FAKE_GCLOUD_LOG"]
with open(log_path, "a") as log:
    log.write(json.dumps(args) + "\\n")


def next_state(variable):
    # FAKE_TPU_STATE / FAKE_QR_STATE: "A|B|C", one per describe call, the last one repeating; "" not found
    states = os.environ.get(variable, "").split("|")
    counter = f"{{log_path}}.{{variable}}"
    calls = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(calls + 1))
    return states[min(calls, len(states) - 1)]


if args[3:4] == ["describe"]:
    if os.environ.get("FAKE_DESCRIBE_ERROR"):
        print(os.environ["FAKE_DESCRIBE_ERROR"], file=sys.stderr)
        sys.exit(1)
    state = next_state("FAKE_QR_STATE" if args[2] == "queued-resources" else "FAKE_TPU_STATE")
    if not state:
        print(f"ERROR: (gcloud.compute.tpus.{{args[2]}}.describe) NOT_FOUND: Resource not found", file=sys.stderr)
        sys.exit(1)
    print(state)
"""

# Stands in for .venv/bin/bert-flax on a worker: records its argv, then waits for `release`.
FAKE_BERT_FLAX = """#!{python}
import json, pathlib, sys, time
here = pathlib.Path(__file__).resolve().parents[2]
(here / "argv.json").write_text(json.dumps(sys.argv[1:]))
deadline = time.time() + 20
while not (here / "release").exists() and time.time() < deadline:
    time.sleep(0.02)
print("fake pretrain done")
"""


@pytest.fixture
def gcloud(tmp_path: Path):
    """Run the script with a fake gcloud first on PATH; returns (run, calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "gcloud"
    fake.write_text(FAKE_GCLOUD.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "gcloud.jsonl"

    def run(
        *args: str,
        state: str = "",
        queued_state: str = "",
        describe_error: str = "",
        poll: str = "0",
        cwd: Path = tmp_path,
    ) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_GCLOUD_LOG": str(log),
            "FAKE_TPU_STATE": state,
            "FAKE_QR_STATE": queued_state,
            "FAKE_DESCRIBE_ERROR": describe_error,
            "TPU_VM_POLL_SECONDS": poll,
        }
        return subprocess.run(["bash", str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True)

    def calls() -> list[list[str]]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    return run, calls


def commands(calls: list[list[str]]) -> list[str]:
    """"group verb" of each gcloud call: "tpu-vm describe", "queued-resources create", ..."""
    assert all(call[:2] == ["compute", "tpus"] for call in calls), calls
    return [f"{call[2]} {call[3]}" for call in calls]


def verbs(calls: list[list[str]]) -> list[str]:
    assert all(call[:3] == ["compute", "tpus", "tpu-vm"] for call in calls), calls
    return [call[3] for call in calls]


def remote_command(call: list[str]) -> str:
    (command,) = [arg.removeprefix("--command=") for arg in call if arg.startswith("--command=")]
    return command


def pretrain_argv(command: str) -> list[str]:
    """The `bert-flax pretrain ...` words of the remote command, up to the first shell operator."""
    words = shlex.split(command)
    start = next(i for i, word in enumerate(words) if word.endswith("bin/bert-flax"))
    end = next((i for i in range(start, len(words)) if words[i] in SHELL_OPERATORS), len(words))
    return words[start + 1 : end]


def parse_like_cli(argv: list[str]):
    """What bert_flax.cli.main does before dispatching: overrides moved after the options."""
    overrides = [a for a in argv if _OVERRIDE.match(a)]
    return build_parser().parse_args([a for a in argv if not _OVERRIDE.match(a)] + overrides)


def test_shellcheck_is_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("the shellcheck executable is not installed")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_up_creates_a_missing_vm_then_installs_and_runs_on_all_workers(gcloud):
    run, calls = gcloud
    result = run("up", *UP, *USER_OVERRIDES)
    assert result.returncode == 0, result.stderr
    recorded = calls()
    assert verbs(recorded) == ["describe", "create", "ssh", "ssh"]
    describe, create, install, start = recorded
    assert describe[4] == create[4] == install[4] == start[4] == "bert-tpu"
    for call in recorded:
        assert "--zone=us-central2-b" in call and "--project=my-project" in call, call
    assert "--accelerator-type=v4-32" in create and "--version=tpu-ubuntu2204-base" in create
    assert "--spot" in create and "--preemptible" not in create
    assert "--worker=all" in install and "--worker=all" in start
    setup = remote_command(install)
    assert "git clone --quiet https://github.com/example/bert_flax.git bert_flax" in setup
    assert "fetch --quiet origin v0.1" in setup and "checkout --quiet --detach FETCH_HEAD" in setup
    assert "pip install --quiet -e '.[tpu,gcs]'" in setup
    assert "nohup" in remote_command(start)


def test_up_reuses_an_existing_vm(gcloud):
    run, calls = gcloud
    result = run("up", *UP, state="READY\tv4-32")
    assert result.returncode == 0, result.stderr
    assert verbs(calls()) == ["describe", "ssh", "ssh"]
    assert "reusing it" in result.stderr and "warning" not in result.stderr


def test_create_warns_when_the_existing_vm_is_another_type(gcloud):
    run, calls = gcloud
    result = run("create", *BASE, "--accelerator", "v3-8", state="READY\tv4-32")
    assert result.returncode == 0, result.stderr
    assert verbs(calls()) == ["describe"]
    assert "warning: bert-tpu is a v4-32, not the requested v3-8" in result.stderr


def test_a_preempted_vm_is_not_reused(gcloud):
    run, calls = gcloud
    result = run("up", *UP, state="PREEMPTED\tv4-32")
    assert result.returncode == 1
    assert verbs(calls()) == ["describe"]
    assert "PREEMPTED" in result.stderr and "delete" in result.stderr


def test_a_stopped_vm_is_started_then_used(gcloud):
    run, calls = gcloud
    result = run("up", *UP, state="STOPPED\tv4-32|READY\tv4-32")
    assert result.returncode == 0, result.stderr
    recorded = calls()
    assert commands(recorded) == ["tpu-vm describe", "tpu-vm start", "tpu-vm describe", "tpu-vm ssh", "tpu-vm ssh"]
    assert recorded[1][4:] == ["bert-tpu", "--zone=us-central2-b", "--project=my-project"]
    assert "is STOPPED; starting it" in result.stderr


def test_a_vm_being_created_is_waited_for(gcloud):
    run, calls = gcloud
    result = run("up", *UP, state="CREATING\tv4-32|CREATING\tv4-32|READY\tv4-32")
    assert result.returncode == 0, result.stderr
    assert commands(calls()) == ["tpu-vm describe"] * 3 + ["tpu-vm ssh", "tpu-vm ssh"]
    assert "waiting until it is READY" in result.stderr and "tpu-vm bert-tpu is CREATING; waiting" in result.stderr


def test_a_vm_preempted_while_waited_for_is_an_error(gcloud):
    run, calls = gcloud
    result = run("up", *UP, state="STARTING\tv4-32|PREEMPTED\tv4-32")
    assert result.returncode == 1
    assert commands(calls()) == ["tpu-vm describe", "tpu-vm describe"]  # no install, no run
    assert "is PREEMPTED, not READY; run 'tpu_vm.sh delete' then 'tpu_vm.sh up'" in result.stderr


def test_waiting_gives_up_after_the_wait_timeout(gcloud):
    run, calls = gcloud
    result = run("create", *BASE, "--accelerator", "v4-32", "--wait-timeout=2", state="REPAIRING\tv4-32", poll="1")
    assert result.returncode == 1
    assert commands(calls()) == ["tpu-vm describe"] * 4  # the first look, then after 0, 1 and 2 s of waiting
    assert "tpu-vm bert-tpu is still REPAIRING after 2 s (--wait-timeout 2)" in result.stderr


def test_a_describe_error_is_shown_not_taken_for_not_found(gcloud):
    run, calls = gcloud
    denied = "ERROR: (gcloud.compute.tpus.tpu-vm.describe) PERMISSION_DENIED: Cloud TPU API has not been used"
    result = run("up", *UP, describe_error=denied)
    assert result.returncode == 1
    assert commands(calls()) == ["tpu-vm describe"]  # nothing created
    assert denied in result.stderr and "error: gcloud could not describe tpu-vm bert-tpu" in result.stderr
    assert result.stderr.count("error:") == 1, result.stderr  # gcloud's error and ours, nothing after


def test_queued_up_requests_a_queued_resource_and_waits_until_active(gcloud):
    run, calls = gcloud
    result = run("up", *UP, "--queued", queued_state="|WAITING_FOR_RESOURCES|PROVISIONING|ACTIVE")
    assert result.returncode == 0, result.stderr
    recorded = calls()
    assert commands(recorded) == [
        "queued-resources describe",
        "queued-resources create",
        *["queued-resources describe"] * 3,
        "tpu-vm ssh",
        "tpu-vm ssh",
    ]
    assert recorded[1][3:] == [
        "create",
        "bert-tpu",
        "--node-id=bert-tpu",
        "--zone=us-central2-b",
        "--project=my-project",
        "--accelerator-type=v4-32",
        "--runtime-version=tpu-ubuntu2204-base",
        "--spot",
    ]
    assert "--format=value(state.state)" in recorded[0]
    assert "is WAITING_FOR_RESOURCES; waiting for ACTIVE" in result.stderr
    assert "queued resource bert-tpu is ACTIVE" in result.stderr


def test_queued_reuses_an_existing_request(gcloud):
    run, calls = gcloud
    result = run("create", *BASE, "--accelerator", "v5litepod-8", "--queued", queued_state="PROVISIONING|ACTIVE")
    assert result.returncode == 0, result.stderr
    assert commands(calls()) == ["queued-resources describe"] * 2  # found, then until ACTIVE
    assert "exists (state PROVISIONING); reusing it" in result.stderr


def test_a_failed_queued_request_is_an_error(gcloud):
    run, calls = gcloud
    result = run("up", *UP, "--queued", queued_state="|FAILED")
    assert result.returncode == 1
    assert commands(calls()) == ["queued-resources describe", "queued-resources create", "queued-resources describe"]
    assert "is FAILED, not ACTIVE; run 'tpu_vm.sh delete --queued' then 'tpu_vm.sh up'" in result.stderr


@pytest.mark.parametrize("extra, confirm_flag", [([], []), (["--yes"], ["--quiet"])])
def test_delete_queued_deletes_the_request_and_its_vm(gcloud, extra, confirm_flag):
    run, calls = gcloud
    assert run("delete", *BASE, "--queued", *extra).returncode == 0
    assert calls() == [
        ["compute", "tpus", "queued-resources", "delete", "bert-tpu", "--zone=us-central2-b", "--force", *confirm_flag]
    ]


def test_queued_dry_run(gcloud):
    run, calls = gcloud
    result = run("up", *UP, "--queued", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert calls() == []
    printed = [shlex.split(line) for line in result.stdout.splitlines() if not line.startswith("#")]
    assert [words[3:5] for words in printed] == [
        ["queued-resources", "describe"],
        ["queued-resources", "create"],
        ["tpu-vm", "ssh"],
        ["tpu-vm", "ssh"],
    ]


@pytest.mark.parametrize(
    "accelerator, extra, version",
    [
        ("v3-8", [], "tpu-ubuntu2204-base"),
        ("v5litepod-8", [], "v2-alpha-tpuv5-lite"),
        ("v5p-8", [], "v2-alpha-tpuv5"),
        ("v6e-8", ["--preemptible"], "v2-alpha-tpuv6e"),
        ("v4-8", ["--version", "tpu-vm-custom"], "tpu-vm-custom"),
    ],
)
def test_create_picks_the_software_version_per_generation(gcloud, accelerator, extra, version):
    run, calls = gcloud
    result = run("create", *BASE, "--accelerator", accelerator, *extra)
    assert result.returncode == 0, result.stderr
    describe, create = calls()
    assert create[3:] == [
        "create",
        "bert-tpu",
        "--zone=us-central2-b",
        f"--accelerator-type={accelerator}",
        f"--version={version}",
        *(["--preemptible"] if "--preemptible" in extra else []),
    ]


def test_run_builds_a_pretrain_command_the_cli_accepts(gcloud):
    run, calls = gcloud
    result = run("run", *BASE, "--config", CONFIG, "--run-dir", "runs/my run", *USER_OVERRIDES)
    assert result.returncode == 0, result.stderr
    (call,) = calls()
    assert call[3:5] == ["ssh", "bert-tpu"] and "--worker=all" in call
    argv = pretrain_argv(remote_command(call))
    assert argv[0] == "pretrain", argv
    args = parse_like_cli(argv)
    assert (args.verb, args.config, args.run_dir) == ("pretrain", CONFIG, "runs/my run")
    assert args.overrides == [*USER_OVERRIDES, "parallel.distributed=true"]
    config = load_config(REPO_ROOT / args.config, args.overrides)
    assert config.train.steps == 100
    assert config.data.path == (TRICKY_PATH,)
    assert config.data.text_column == TRICKY_COLUMN
    assert config.parallel.distributed is True


def _wait_for(path: Path, timeout_s: float = 10) -> None:
    deadline = time.time() + timeout_s
    while not path.exists():
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_the_remote_command_runs_in_the_background_and_refuses_a_second_start(gcloud, tmp_path):
    """Execute the remote command with bash, as a worker's login shell would, in a fake checkout."""
    run, calls = gcloud
    remote = tmp_path / "home" / "bert flax"  # a space in the checkout path too
    (remote / ".venv" / "bin").mkdir(parents=True)
    fake = remote / ".venv" / "bin" / "bert-flax"
    fake.write_text(FAKE_BERT_FLAX.format(python=sys.executable))
    fake.chmod(0o755)
    result = run("run", *BASE, "--remote-dir", str(remote), "--run-dir", "runs/x", *USER_OVERRIDES)
    assert result.returncode == 0, result.stderr
    command = remote_command(calls()[-1])
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    try:
        first = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=20)
        assert first.returncode == 0, first.stderr
        assert "pretrain started" in first.stdout
        _wait_for(remote / "argv.json")
        received = json.loads((remote / "argv.json").read_text())
        assert received == ["pretrain", "--run-dir", "runs/x", *USER_OVERRIDES, "parallel.distributed=true"]
        second = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=20)
        assert second.returncode == 1 and "still running" in second.stderr
    finally:
        (remote / "release").touch()
    logs = list((remote / "logs").glob("pretrain-*.log"))
    assert len(logs) == 1
    deadline = time.time() + 10
    while "fake pretrain done" not in logs[0].read_text():
        assert time.time() < deadline, logs[0].read_text()
        time.sleep(0.02)


def test_follow_runs_in_the_foreground(gcloud, tmp_path):
    run, calls = gcloud
    remote = tmp_path / "home" / "bert_flax"
    (remote / ".venv" / "bin").mkdir(parents=True)
    fake = remote / ".venv" / "bin" / "bert-flax"
    fake.write_text(FAKE_BERT_FLAX.format(python=sys.executable))
    fake.chmod(0o755)
    (remote / "release").touch()
    assert run("run", *BASE, "--run-dir", "r", "--follow").returncode == 0
    command = remote_command(calls()[-1])
    assert "nohup" not in command
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert "fake pretrain done" in result.stdout
    assert json.loads((remote / "argv.json").read_text()) == ["pretrain", "--run-dir", "r", "parallel.distributed=true"]


@pytest.mark.parametrize(
    "run_dir, remote_path",
    [("runs/v3", "bert-tpu:bert_flax/runs/v3"), ("/mnt/shared/runs/v4", "bert-tpu:/mnt/shared/runs/v4")],
)
def test_fetch_copies_the_run_dir_from_worker_0(gcloud, tmp_path, run_dir, remote_path):
    run, calls = gcloud
    result = run("fetch", *BASE, "--project", "p", "--run-dir", run_dir, "--dest", "got")
    assert result.returncode == 0, result.stderr
    (call,) = calls()
    assert call[3:] == ["scp", "--recurse", "--worker=0", remote_path, "got/", "--zone=us-central2-b", "--project=p"]
    assert (tmp_path / "got").is_dir()


def test_fetch_of_a_bucket_run_copies_it_from_the_bucket(gcloud, tmp_path):
    run, calls = gcloud
    result = run("fetch", *BASE, "--project", "p", "--run-dir", "gs://my-bucket/runs/v4", "--dest", "got")
    assert result.returncode == 0, result.stderr
    assert calls() == [["storage", "cp", "--recursive", "gs://my-bucket/runs/v4", "got/", "--project=p"]]
    assert (tmp_path / "got").is_dir()


def test_fetch_defaults_to_runs_slash_vm_name(gcloud, tmp_path):
    run, calls = gcloud
    assert run("fetch", *BASE, "--run-dir", "runs/v3").returncode == 0
    assert calls()[0][7] == "runs/bert-tpu/"
    assert (tmp_path / "runs" / "bert-tpu").is_dir()


@pytest.mark.parametrize("extra, confirm_flag", [([], []), (["--yes"], ["--quiet"])])
def test_delete(gcloud, extra, confirm_flag):
    run, calls = gcloud
    assert run("delete", *BASE, *extra).returncode == 0
    assert calls() == [["compute", "tpus", "tpu-vm", "delete", "bert-tpu", "--zone=us-central2-b", *confirm_flag]]


def test_dry_run_prints_every_command_and_runs_none(gcloud):
    run, calls = gcloud
    result = run("up", *UP, "--dry-run", *USER_OVERRIDES)
    assert result.returncode == 0, result.stderr
    assert calls() == []
    printed = [shlex.split(line) for line in result.stdout.splitlines() if not line.startswith("#")]
    assert [words[:5] for words in printed] == [
        ["gcloud", "compute", "tpus", "tpu-vm", verb] for verb in ("describe", "create", "ssh", "ssh")
    ]
    parse_like_cli(pretrain_argv(remote_command(printed[-1])))  # what it prints is what it would run


def test_help_documents_every_command(gcloud):
    run, calls = gcloud
    result = run("--help")
    assert result.returncode == 0 and calls() == []
    for word in ("create", "install", "run", "fetch", "delete", "up", "--dry-run", "--spot", "--follow", "worker 0"):
        assert word in result.stdout, word
    assert "only process 0" in " ".join(result.stdout.split())
    assert run("run", "-h").stdout == result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "missing COMMAND"),
        (["launch", *BASE], "unknown command 'launch'"),
        (["run", "--zone", "z", "--run-dir", "r"], "missing --name"),
        (["run", "--name", "t", "--run-dir", "r"], "missing --zone"),
        (["run", "--name", "My_TPU", "--zone", "z", "--run-dir", "r"], "is not a TPU VM name"),
        (["run", *BASE, "--run-dir", "r", "--bogus"], "unknown option '--bogus'"),
        (["run", *BASE, "--run-dir"], "--run-dir needs a value"),
        (["run", *BASE, "--run-dir", "r", "train.steps"], "'train.steps' is not a config override"),
        (["run", *BASE, "--run-dir", "r", "steps=3"], "'steps=3' is not a config override"),
        (["run", *BASE, "--run-dir", "r", "parallel.distributed=false"], "parallel.distributed is always true"),
        (["run", *BASE], "run needs --run-dir"),
        (["fetch", *BASE], "fetch needs --run-dir"),
        (["install", *BASE], "install needs --repo"),
        (["up", *BASE, "--accelerator", "v3-8", "--run-dir", "r"], "up needs --repo"),
        (["create", *BASE], "create needs --accelerator"),
        (["create", *BASE, "--accelerator", "tpu-v3"], "is not an accelerator type"),
        (["create", *BASE, "--accelerator", "v9x-8"], "no default TPU software version"),
        (["create", *BASE, "--accelerator", "v3-8", "--spot", "--preemptible"], "exclude each other"),
        (["create", *BASE, "--accelerator", "v5litepod-8", "--queued", "--preemptible"], "cannot be queued"),
        (["create", *BASE, "--accelerator", "v3-8", "--wait-timeout", "1h"], "is not a number of seconds"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(gcloud, args, message):
    run, calls = gcloud
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr
    assert calls() == []
