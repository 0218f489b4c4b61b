"""Reading a dataset's text files (LFW/RFW pairs, RFW landmarks, the RecordIO `.idx`) and the file
names they hold, with one `DataError` for what a hostile or broken file can contain: bytes that are
not UTF-8, and names that would lead outside the dataset folder."""
from __future__ import annotations

import os
from pathlib import Path

from rgsyn.errors import DataError


def read_utf8(path: str | os.PathLike, what: str) -> str:
    """The text of `path`; bytes that are not UTF-8 are a DataError naming the file, the line and
    the byte offset (a UTF-8 byte-order mark is dropped, as Windows editors write one)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{what} {path} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
                        f"(line {line}); expected a UTF-8 (or ASCII) text file") from None


def check_name(name: str, where: str) -> str:
    """`name` as one plain path component (a person or identity folder name); a name that is
    absolute, holds a separator, or is `.`/`..` would lead outside the dataset folder: DataError."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or os.path.isabs(name) or Path(name).drive):
        raise DataError(f"{where} names {name!r}, which is not a plain folder name; names must stay "
                        "inside the dataset folder (no '/', '\\', '..' or absolute paths)")
    return name
