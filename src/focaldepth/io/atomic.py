"""Atomic outputs: a killed or failing run never leaves a file or folder that looks complete.

Every writer in focaldepth goes through these helpers. A file is written under a hidden
temporary name in the same directory (``.NAME.tmp-XXXXXXXX.EXT``: same file system, so the
final ``os.replace`` is atomic; same extension, so libraries that pick a format from the
name, like PyAV, numpy or Pillow, still do the right thing) and renamed only once it is
complete and flushed to disk. A folder is built as ``DIR.tmp-XXXXXXXX`` beside ``DIR`` and
renamed at the end. On an exception the temporary is removed; after a hard kill it stays,
but under a name no loader picks up (hidden files and ``*.tmp-*`` folders are ignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from focaldepth.errors import UserError

TMP_MARKER = ".tmp-"


def _fsync_path(path: Path) -> None:
    """Flush a written file to disk so the rename cannot expose an empty file after a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_sibling(final: Path) -> Path:
    """A hidden, unique name beside ``final`` that keeps its extension(s)."""
    suffixes = "".join(final.suffixes[-1:])  # keep the last extension: np.save/PyAV key on it
    stem = final.name[: len(final.name) - len(suffixes)] if suffixes else final.name
    return final.with_name(f".{stem}{TMP_MARKER}{secrets.token_hex(4)}{suffixes}")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``final`` to; rename it into place on success.

    The parent folder is created if needed. If the body raises, the temporary file is
    deleted and ``final`` (if it existed before) is left untouched.
    """
    final_path = Path(final)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(final_path)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"atomic_path: nothing was written to {tmp}")
        _fsync_path(tmp)
        os.replace(tmp, final_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def atomic_write_text(final: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``final`` atomically."""
    return atomic_write_bytes(final, text.encode("utf-8"))


def format_json(obj: Any) -> str:
    """JSON with one top-level key per line and each value on that line (per-frame lists
    stay one readable line each). Strict: NaN/inf are refused, they are not JSON."""
    if isinstance(obj, dict) and obj:
        lines = [
            f"  {json.dumps(str(key))}: {json.dumps(value, allow_nan=False)}"
            for key, value in obj.items()
        ]
        return "{\n" + ",\n".join(lines) + "\n}\n"
    return json.dumps(obj, allow_nan=False) + "\n"


def atomic_write_json(final: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON (see :func:`format_json`) atomically."""
    return atomic_write_text(final, format_json(obj))


def is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder ``DIR.tmp-XXXXXXXX`` to fill; rename it to ``DIR`` on success.

    A non-empty existing ``DIR`` is refused with a :class:`UserError` unless ``overwrite``;
    it is checked before any work is done and replaced only after the new folder is
    complete (moved aside, the new one renamed in, then the old one deleted).
    """
    final_path = Path(final)
    if final_path.exists() and not final_path.is_dir():
        raise UserError("output exists and is not a folder", final_path)
    if is_nonempty_dir(final_path) and not overwrite:
        raise UserError("output folder is not empty (pass --overwrite to replace it)", final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_path.with_name(f"{final_path.name}{TMP_MARKER}{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        for child in tmp.rglob("*"):
            if child.is_file():
                _fsync_path(child)
        _replace_dir(tmp, final_path, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, final: Path, *, overwrite: bool) -> None:
    """Rename ``new`` to ``final``; an existing ``final`` is moved aside first, then deleted."""
    if not final.exists():
        os.rename(new, final)
        return
    if is_nonempty_dir(final) and not overwrite:  # appeared while we worked
        raise UserError("output folder is not empty (pass --overwrite to replace it)", final)
    old = final.with_name(f"{final.name}.old-{secrets.token_hex(4)}")
    os.rename(final, old)
    try:
        os.rename(new, final)
    except BaseException:
        os.rename(old, final)  # put the previous result back rather than lose it
        raise
    shutil.rmtree(old, ignore_errors=True)
