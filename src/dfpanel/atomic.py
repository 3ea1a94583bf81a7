"""Writing a file so that it is whole or absent: a temporary name in the same folder, fsync, os.replace.

A full disk, a kill or a crash mid-write leaves the previous file as it was (or none) and no temporary
behind. Every step that writes a small result file (reports, run records, panel.json, the synth
sidecar, the extraction report) goes through here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8", newline: str | None = None) -> Path:
    """Write `data` to `path` via a temporary file in the same folder and os.replace; on any error
    the temporary file is removed and the error raised (the target is untouched)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if isinstance(data, str):
            with open(fd, "w", encoding=encoding, newline=newline) as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            with open(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
