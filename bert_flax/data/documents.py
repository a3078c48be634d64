"""Where documents end, the one rule for text and for raw bytes: `line` documents end at every newline,
`blank_line` documents at a blank line (one holding only whitespace). A leading UTF-8 byte-order mark
is not text.

The reader cuts files into chunks at the bytes' boundaries and splits each chunk's text with the same
rule, so a chunk never ends inside a document.
"""

from __future__ import annotations

import re

BOM = b"\xef\xbb\xbf"
_BLANK_LINE = r"\n[ \t\r\f\v]*\n"
_BLANK_LINE_TEXT = re.compile(_BLANK_LINE)
_BLANK_LINE_BYTES = re.compile(_BLANK_LINE.encode())


def split_documents(text: str, mode: str) -> list[str]:
    """Documents of `text`: each non-empty line (`line`) or blank-line-separated blocks (`blank_line`),
    whitespace runs collapsed to one space."""
    if mode == "line":
        pieces = text.splitlines()
    else:
        pieces = _BLANK_LINE_TEXT.split(text.replace("\r\n", "\n"))
    return [" ".join(piece.split()) for piece in pieces if piece.strip()]


def first_document_end(buffer: bytes, mode: str) -> int:
    """Where the first document boundary of `buffer` ends (len(buffer): none in it)."""
    match = re.search(rb"\n", buffer) if mode == "line" else _BLANK_LINE_BYTES.search(buffer)
    return match.end() if match else len(buffer)


def last_document_end(buffer: bytes, mode: str) -> int:
    """Where the last complete document of `buffer` ends (0: no document ends in it yet)."""
    if mode == "line":
        return buffer.rfind(b"\n") + 1
    end = 0
    for match in _BLANK_LINE_BYTES.finditer(buffer):
        end = match.end()
    return end


def strip_bom(head: bytes) -> tuple[bytes, int]:
    """The first bytes of a file without a leading byte-order mark, and how many bytes were dropped."""
    return (head[len(BOM):], len(BOM)) if head.startswith(BOM) else (head, 0)
