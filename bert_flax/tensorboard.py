"""TensorBoard event files without TensorFlow: TFRecord framing around hand-encoded `Event` protos.

Only what scalars need: an `Event` (wall_time = 1, step = 2, file_version = 3, summary = 5) whose
`Summary` holds repeated `Value`s (tag = 1, simple_value = 2). Each record on disk is
`length (uint64 LE) | masked CRC32C of length | payload | masked CRC32C of payload`; TensorBoard
drops a record whose CRC does not match, so tests read our files back with TensorBoard itself.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from pathlib import Path
from typing import Callable, Mapping

FILE_VERSION = "brain.Event:2"
EVENT_FILE_MARKER = "tfevents"  # TensorBoard reads only files whose name contains it


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli polynomial, reflected
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c_python(data: bytes) -> int:
    """CRC32C (Castagnoli) of `data`, a table per byte: plenty for events of a few hundred bytes."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _fast_crc32c() -> Callable[[bytes], int] | None:
    try:
        import google_crc32c

        return google_crc32c.value
    except ImportError:
        pass
    try:
        import crc32c

        return crc32c.crc32c
    except ImportError:
        return None


crc32c: Callable[[bytes], int] = _fast_crc32c() or crc32c_python


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC: a CRC of data that holds CRCs is rotated and offset."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc(length)) + payload + struct.pack("<I", masked_crc(payload))


# Protobuf wire format: a field is a varint key (number << 3 | wire type) followed by its value.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64: a negative value takes ten bytes, as protobuf writes it
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _key(number, _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    try:
        return struct.pack("<f", value)
    except OverflowError:  # finite but beyond float32 (a huge perplexity): TensorBoard shows ±inf
        return struct.pack("<f", math.copysign(math.inf, value))


def scalar_value(tag: str, value: float) -> bytes:
    """A `Summary.Value` with `simple_value`."""
    return _bytes_field(1, tag.encode("utf-8")) + _key(2, _FIXED32) + _float32(value)


def event(wall_time: float, step: int = 0, scalars: Mapping[str, float] | None = None, file_version: str = "") -> bytes:
    """An `Event` proto: scalars become one `Summary` holding a `Value` per tag."""
    out = _key(1, _FIXED64) + struct.pack("<d", wall_time)
    if step:
        out += _key(2, _VARINT) + _varint(step)
    if file_version:
        out += _bytes_field(3, file_version.encode("utf-8"))
    if scalars:
        summary = b"".join(_bytes_field(1, scalar_value(tag, value)) for tag, value in scalars.items())
        out += _bytes_field(5, summary)
    return out


class EventFileWriter:
    """One new `events.out.tfevents.<time>.<host>` file in `directory`, flushed after every event."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = directory / f"events.out.{EVENT_FILE_MARKER}.{int(now)}.{socket.gethostname()}"
        self._file = self.path.open("wb")
        self._write(event(now, file_version=FILE_VERSION))

    def _write(self, payload: bytes) -> None:
        self._file.write(tfrecord(payload))
        self._file.flush()

    def add_scalars(self, step: int, scalars: Mapping[str, float], wall_time: float | None = None) -> None:
        self._write(event(time.time() if wall_time is None else wall_time, step, scalars))

    def close(self) -> None:
        self._file.close()


class TensorBoardLog:
    """The run's `tensorboard/` directory, started afresh: old event files are deleted, because the
    caller replays metrics.jsonl's kept events into the new file (no duplicated or orphan points)."""

    fresh = True  # starts empty: give it the kept history

    def __init__(self, directory: Path) -> None:
        if directory.is_dir():
            for old in directory.iterdir():
                if EVENT_FILE_MARKER in old.name and old.is_file():
                    old.unlink()
        self.writer = EventFileWriter(directory)

    def log(self, step: int, scalars: Mapping[str, float], wall_time: float) -> None:
        self.writer.add_scalars(step, scalars, wall_time)

    def close(self, failed: bool = False) -> None:
        self.writer.close()
