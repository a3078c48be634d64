"""storage.py's path rules, without a server: what is a bucket path, what is refused, how GsPath composes."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from bert_flax.errors import UserError
from bert_flax.storage import GsPath, is_remote, to_path


def test_a_gs_url_is_a_gspath_and_a_local_path_stays_a_path() -> None:
    assert to_path("gs://bucket/runs/x/") == GsPath("gs://bucket/runs/x")
    assert to_path(Path("gs://bucket/runs/x")) == GsPath("gs://bucket/runs/x")  # pathlib made it gs:/bucket/...
    for local in ("runs/x", "/abs/runs/x", "a:/b", "~/runs"):
        assert to_path(local) == Path(local)
    assert is_remote("gs://b/x") and is_remote(GsPath("gs://b/x")) and not is_remote(Path("runs"))


@pytest.mark.parametrize(
    "location, fragment",
    [
        ("s3://bucket/run", "s3:// is not supported (Orbax 0.12 cannot checkpoint to S3"),
        (Path("s3://bucket/run"), "s3:// is not supported"),
        ("https://example.com/run", "https:// is not supported"),
        ("gs:///run", "names no bucket"),
    ],
)
def test_other_schemes_are_refused_in_one_line(location, fragment: str) -> None:
    with pytest.raises(UserError) as refused:
        to_path(location)
    assert fragment in str(refused.value) and "\n" not in str(refused.value)


def test_gspath_composes_like_a_path() -> None:
    run = GsPath("gs://bucket/runs//x/.")
    assert str(run) == "gs://bucket/runs/x"
    assert (run / "checkpoints" / "2").url == "gs://bucket/runs/x/checkpoints/2"
    assert (run.name, run.parent.name, run.bucket) == ("x", "runs", "bucket")
    assert GsPath("gs://bucket").parent == GsPath("gs://bucket") and GsPath("gs://bucket").name == "bucket"
    assert (run / "plots" / "loss.png").relative_to(run) == PurePosixPath("plots/loss.png")
    with pytest.raises(ValueError):
        GsPath("gs://bucket/runs/xy").relative_to(run)
    assert run.expanduser() is run and run.resolve() is run
