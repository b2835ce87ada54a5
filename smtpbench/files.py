"""Files a command leaves behind are whole or absent: output folders are checked before
any work starts, and every file is written under a temporary name in its folder, then
renamed into place (a rename within a folder is atomic), so a full disk or a kill
never leaves half a ``summary.json`` or half a recording where a reader looks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


class OutputError(Exception):
    """A folder or file that cannot be written: ``path: what is wrong``."""


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def check_output_folder(folder: Path) -> None:
    """Creates ``folder`` (and its parents) if needed and checks a file can be made in it;
    ``OutputError`` saying why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: exists and is not a folder") from None
    except OSError as err:
        raise OutputError(f"{folder}: cannot create the folder: {_reason(err)}") from None
    if not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder")
    probe = folder / f".smtpbench-write-check-{os.getpid()}"
    try:
        with probe.open("wb") as stream:
            stream.write(b"\n")
    except OSError as err:
        raise OutputError(f"{folder}: cannot write in it: {_reason(err)}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def check_new_file(path: Path, *, force: bool) -> None:
    """A file about to be written: its folder exists, and it does not unless ``force``."""
    if not path.parent.is_dir():
        raise OutputError(f"{path}: no such folder: {path.parent}")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder")
    if path.exists() and not force:
        raise OutputError(f"{path}: exists; give --force to replace it")


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: the same folder, a name
    no reader looks for."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


@contextmanager
def replacing(path: Path, mode: str = "wb") -> Iterator[IO]:  # type: ignore[type-arg]
    """``with replacing(path) as stream:`` writes a temporary file and renames it to
    ``path`` when the block ends without an error; on an error the temporary file is
    removed and ``path`` is left as it was. ``OutputError`` names the file."""
    temporary = temporary_name(path)
    try:
        with temporary.open(mode, **({} if "b" in mode else {"encoding": "utf-8"})) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise OutputError(f"{path}: could not be written: {_reason(err)}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_atomically(path: Path, data: bytes | str) -> None:
    """The whole of ``data`` at ``path``, or ``path`` untouched (``OutputError``)."""
    with replacing(path, "wb") as stream:
        stream.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_with(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """``write(stream)`` fills ``path`` atomically (for writers that take a stream)."""
    with replacing(path, "wb") as stream:
        write(stream)
