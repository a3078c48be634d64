"""Where a run's files live: a local path, or a Cloud Storage object prefix (`gs://bucket/prefix`).

`to_path` turns what a user typed into a `pathlib.Path` or a `GsPath`; both answer the same reading
questions (`exists`, `is_file`, `is_dir`, `iterdir`, `glob`, `read_text`, `open("rb")`, `stat`), so code
that reads a run, a model or a corpus does not care where it is. Writing goes through `write_file` and
`write_dir`: on a local path they are disk.py's atomic writes, unchanged; on gs:// a file becomes one
object, uploaded whole (GCS shows an object only once it is complete, and cannot append to or rename one),
and a directory is built locally, then uploaded file by file, the files named in `last` at the end.

gcsfs and google-cloud-storage are the `gcs` extra, imported on first use. Credentials are the user's
Application Default Credentials, looked up once before the first request; with `STORAGE_EMULATOR_HOST`
set (a local GCS emulator, as in the tests) none are needed, as google-cloud-storage itself decides.
Listings are never cached (fsspec's default would hide objects another process wrote), for Orbax's
gcsfs instance too. s3:// and other schemes are refused: Orbax 0.12 checkpoints only to gs:// or a local path.
"""

from __future__ import annotations

import atexit
import calendar
import contextlib
import dataclasses
import functools
import glob
import io
import logging
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, BinaryIO, NamedTuple, TypeVar

from bert_flax.disk import check_writable_dir
from bert_flax.disk import write_dir as write_local_dir
from bert_flax.disk import write_file as write_local_file
from bert_flax.errors import StorageFailed, UserError, first_line

T = TypeVar("T")
SCHEME = "gs://"
EXTRA = 'pip install "bert_flax[gcs]" (from a checkout: pip install -e ".[gcs]")'
LOGIN = "gcloud auth application-default login"


@dataclasses.dataclass(frozen=True)
class GsPath:
    """An object or object prefix `gs://bucket/key`: the reading half of pathlib's interface."""

    url: str

    def __post_init__(self) -> None:
        bucket, _, key = self.url[len(SCHEME) :].partition("/")
        key = posixpath.normpath(key).lstrip("/") if key.strip("/") else ""
        object.__setattr__(self, "url", SCHEME + bucket + (f"/{key}" if key and key != "." else ""))

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, name: str | PurePosixPath) -> GsPath:
        return GsPath(f"{self.url}/{name}")

    @property
    def bucket(self) -> str:
        return self.url[len(SCHEME) :].partition("/")[0]

    @property
    def name(self) -> str:
        return posixpath.basename(self.url[len(SCHEME) :]) if "/" in self.url[len(SCHEME) :] else self.bucket

    @property
    def parent(self) -> GsPath:
        rest = self.url[len(SCHEME) :]
        return GsPath(SCHEME + posixpath.dirname(rest)) if "/" in rest else self

    def relative_to(self, other: GsPath) -> PurePosixPath:
        if not (self.url + "/").startswith(other.url + "/"):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.url[len(other.url) + 1 :])

    def expanduser(self) -> GsPath:
        return self

    absolute = resolve = expanduser

    def exists(self) -> bool:
        return _fs().exists(self.url)

    def is_file(self) -> bool:
        return _fs().isfile(self.url)

    def is_dir(self) -> bool:
        return _fs().isdir(self.url)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a GCS prefix exists once an object is under it."""

    def iterdir(self) -> Iterator[GsPath]:
        for name in sorted(_fs().ls(self.url, detail=False)):
            child = GsPath(SCHEME + name.rstrip("/"))
            if child != self:
                yield child

    def read_bytes(self) -> bytes:
        return _fs().cat_file(self.url)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def open(self, mode: str = "rb") -> BinaryIO:
        if mode != "rb":
            raise ValueError(f"{self}: GsPath.open reads only ('rb'); write with storage.write_file")
        return _fs().open(self.url, "rb")

    def stat(self) -> ObjectStat:
        """Size and modification time (the object's `updated`, which every new version changes)."""
        info = _fs().info(self.url)
        updated = info["mtime"]
        mtime_ns = calendar.timegm(updated.utctimetuple()) * 10**9 + updated.microsecond * 1000
        return ObjectStat(int(info["size"]), mtime_ns)


class ObjectStat(NamedTuple):
    """What `GsPath.stat` knows, under os.stat_result's names."""

    st_size: int
    st_mtime_ns: int


AnyPath = Path | GsPath


def to_path(location: str | os.PathLike) -> AnyPath:
    """A GsPath for gs://, a Path for a local path; another URL scheme (s3://) is a UserError."""
    if isinstance(location, GsPath):
        return location
    text = os.fspath(location)
    first, _, rest = text.partition(":/")
    if isinstance(location, PurePath) and first in ("gs", "s3") and rest and not rest.startswith("/"):
        text = f"{first}://{rest}"  # Path("gs://b/run") is gs:/b/run: the URL it was
    if text.startswith(SCHEME):
        if not text[len(SCHEME) :].partition("/")[0]:
            raise UserError(f"{text} names no bucket; write gs://BUCKET/PREFIX")
        return GsPath(text)
    scheme, separator, _ = text.partition("://")
    if separator and scheme.isalnum():
        if scheme.lower() in ("s3", "s3a"):
            raise UserError(
                f"{text}: s3:// is not supported (Orbax 0.12 cannot checkpoint to S3, google/orbax PR #2739); "
                "use a gs:// bucket or a local path"
            )
        raise UserError(f"{text}: {scheme}:// is not supported; use a gs://BUCKET/PREFIX or a local path")
    return Path(text)


def is_remote(location: Any) -> bool:
    return isinstance(location, GsPath) or (isinstance(location, str) and location.startswith(SCHEME))


@functools.cache
def _fs() -> Any:
    """The process' gcsfs file system, once the extra is there and credentials are found."""
    try:
        import fsspec
        import gcsfs
        import google.cloud.storage  # noqa: F401  (Orbax's gs:// path needs it without declaring it)
    except ImportError:
        raise UserError(f"gs:// paths need the gcs extra: {EXTRA}") from None
    emulator = bool(os.environ.get("STORAGE_EMULATOR_HOST"))
    if not emulator:
        _check_credentials()
    # gcsfs logs each request that ran out of retries with its traceback, then raises: the error reaches
    # the user once, as one line (UserError or StorageFailed; --debug shows the traceback).
    logging.getLogger("gcsfs").setLevel(logging.CRITICAL)
    # Every gcsfs instance created from here on (Orbax's through etils too) lists afresh each time.
    fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)
    return gcsfs.GCSFileSystem(token="anon" if emulator else "google_default", use_listings_cache=False)


def _check_credentials() -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    auth_log = logging.getLogger("google.auth")
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)  # each way it tried is a warning; the one line below says what to do
    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise UserError(
            f"gs:// paths need Google Cloud credentials and none were found; run `{LOGIN}` "
            "(on a TPU VM, its service account is found by itself)"
        ) from None
    finally:
        auth_log.setLevel(level)


def check_bucket(path: GsPath, what: str, fix: str) -> None:
    """A UserError unless the extra is installed, credentials are found and `path`'s bucket can be read
    (storage.buckets.get, which Orbax's checkpoints need besides the object permissions)."""
    _fs()
    from google.api_core import exceptions
    from google.cloud import storage

    try:
        storage.Client().get_bucket(path.bucket)
    except exceptions.NotFound:
        raise UserError(f"{what} {path}: bucket gs://{path.bucket} does not exist; create it or {fix}") from None
    except exceptions.Forbidden:
        raise UserError(
            f"{what} {path}: no permission to read bucket gs://{path.bucket} (storage.buckets.get); "
            f"grant it (e.g. roles/storage.admin on the bucket) or {fix}"
        ) from None
    except Exception as err:  # credentials refused, the service unreachable: google's many error types
        raise UserError(
            f"{what} {path}: cannot reach bucket gs://{path.bucket} ({first_line(err, 200)}); {fix}"
        ) from None


def check_writable(path: AnyPath, what: str, fix: str) -> None:
    """disk.check_writable_dir for a local path; `check_bucket` for gs://."""
    if isinstance(path, GsPath):
        check_bucket(path, what, fix)
    else:
        check_writable_dir(path, what, fix)


# --- writing -------------------------------------------------------------------------------------


def write_file(path: AnyPath, content: str | bytes | Callable[[BinaryIO], object]) -> AnyPath:
    """disk.write_file locally; on gs:// one object, uploaded once `content` is complete."""
    if not isinstance(path, GsPath):
        return write_local_file(path, content)
    if callable(content):
        buffer = io.BytesIO()
        content(buffer)
        content = buffer.getvalue()
    _fs().pipe_file(path.url, content.encode("utf-8") if isinstance(content, str) else content)
    return path


def write_dir(path: AnyPath, fill: Callable[[Path], T], last: tuple[str, ...] = ()) -> T:
    """disk.write_dir locally; on gs:// `fill` builds the directory in a local temporary one, which then
    replaces the prefix: files uploaded (those named in `last` at the end), stale objects deleted."""
    if not isinstance(path, GsPath):
        return write_local_dir(path, fill)
    local = Path(tempfile.mkdtemp(prefix="bert_flax-upload-"))
    try:
        filled = fill(local)
        upload_dir(local, path, last)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return filled


def upload_file(local: Path, target: GsPath) -> None:
    _fs().put_file(str(local), target.url)


def upload_dir(local: Path, target: GsPath, last: tuple[str, ...] = ()) -> None:
    """Make `target` hold exactly `local`'s files: each uploaded whole, those named in `last` after the
    others (in that order), then objects that `local` lacks deleted."""
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    ordered = [f for f in files if f not in last] + [f for f in last if f in files]
    for name in ordered:
        upload_file(local / name, target / name)
    _delete_all_but(target, set(files))


def _delete_all_but(target: GsPath, kept: set[str]) -> None:
    """Delete the objects under `target` whose names (relative to it) are not in `kept`."""
    fs = _fs()
    others = [name for name in fs.find(target.url) if GsPath(SCHEME + name).relative_to(target).as_posix() not in kept]
    if others:
        fs.rm(others)


def remove(path: AnyPath) -> None:
    """Delete a file or a whole directory (every object under a prefix)."""
    if isinstance(path, GsPath):
        if path.exists():
            _fs().rm(path.url, recursive=True)
    elif path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def move(source: AnyPath, target: AnyPath) -> None:
    """shutil.move locally; on gs:// a server-side copy of every object, then their deletion."""
    if isinstance(source, GsPath) and isinstance(target, GsPath):
        _fs().mv(source.url, target.url, recursive=True)
    else:
        shutil.move(str(source), str(target))


# --- local copies of remote files -----------------------------------------------------------------


@functools.cache
def _scratch_root() -> Path:
    """A per-process temporary directory for local copies, removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="bert_flax-"))
    atexit.register(shutil.rmtree, root, True)
    return root


def download(source: GsPath, target: Path) -> Path:
    """Copy a file, or every object under a prefix, to `target`."""
    fs = _fs()
    if fs.isfile(source.url):
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(source.url, str(target))
        return target
    for name in fs.find(source.url):  # the listing holds only objects: each is fetched, none asked about again
        local = target / GsPath(SCHEME + name).relative_to(source)
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(SCHEME + name, str(local))
    return target


def local_copy(path: AnyPath) -> Path:
    """`path` itself when it is local; a gs:// file or directory is downloaded into a temporary
    directory of this process (for readers that need a local path: tokenizers, `from_pretrained`)."""
    if not isinstance(path, GsPath):
        return path
    return download(path, Path(tempfile.mkdtemp(dir=_scratch_root())) / path.name)


class WorkingCopy:
    """A local file or directory that a writer appends to, standing for `target`: `target` itself when it
    is local (then `publish` has nothing to do); for gs:// a fresh one in a temporary directory, which
    `publish` uploads whole (a directory: its changed files, then the objects it lacks deleted)."""

    def __init__(self, target: AnyPath) -> None:
        self.target = target
        self._scratch = Path(tempfile.mkdtemp(prefix="bert_flax-")) if isinstance(target, GsPath) else None
        self.path = target if self._scratch is None else self._scratch / target.name
        self._published: dict[str, tuple[int, int]] = {}

    def publish(self) -> None:
        if self._scratch is None or not self.path.exists():
            return
        if self.path.is_file():
            upload_file(self.path, self.target)
            return
        for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
            name, stat = file.relative_to(self.path).as_posix(), file.stat()
            if self._published.get(name) != (stat.st_size, stat.st_mtime_ns):
                upload_file(file, self.target / name)
                self._published[name] = (stat.st_size, stat.st_mtime_ns)
        _delete_all_but(self.target, set(self._published))

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


@contextlib.contextmanager
def failures_stop_the_run(path: AnyPath, doing: str) -> Iterator[None]:
    """Inside it, any error of gs:// storage becomes one StorageFailed (exit 75: rerun to resume); a
    local path's errors pass unchanged."""
    if not isinstance(path, GsPath):
        yield
        return
    try:
        yield
    except (UserError, StorageFailed, KeyboardInterrupt):
        raise
    except Exception as err:  # gcsfs, aiohttp, TensorStore and Orbax raise many types
        raise StorageFailed(
            f"{doing} {path} failed ({type(err).__name__}: {first_line(err, 200)}); the last finished checkpoint "
            "is kept: rerun the same command to resume once the bucket can be reached"
        ) from err


def glob_paths(pattern: str) -> list[AnyPath]:
    """The paths a glob pattern matches, local or gs://, sorted."""
    path = to_path(pattern)
    if isinstance(path, GsPath):
        return sorted(GsPath(SCHEME + name) for name in _fs().glob(path.url))
    return [Path(match) for match in sorted(glob.glob(str(path), recursive=True))]
