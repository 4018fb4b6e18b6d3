"""Reading a user's text file, with errors that say what is wrong and what to do."""

from __future__ import annotations

from pathlib import Path


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file; raise ``ValueError`` with a one-line reason if it can't be used.

    Rejects a missing path, a directory, an empty file and bytes that are not UTF-8 (naming
    the offset of the first bad byte). A UTF-8 byte-order mark is dropped; Windows line ends
    are kept as they are.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"text file not found: {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"expected a text file, got a directory: {str(p)!r}")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {str(p)!r}: {e.strerror or e}") from None
    if not raw:
        raise ValueError(f"text file is empty: {str(p)!r}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{str(p)!r} is not UTF-8 text (invalid byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text:
        raise ValueError(f"text file is empty: {str(p)!r}")
    return text
