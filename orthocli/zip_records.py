"""What a torch.save zip archive's records may be before anything reads them, torch or orthocli's own
reader alike (zip_checkpoint.py for `score`, checkpoint.py's torch.load for the other commands):

- every name once: a record stored twice holds two byte strings, torch reads one and Python's
  zipfile the other, so the gate could be shown other weights than torch loads; refused as ambiguous;
- every record under one folder, the first record's (torch finds `data.pkl` there, nowhere else);
- stored or deflated, the two methods torch's reader knows;
- deflated records inflating, all together, to at most MAX_RATIO times the file's size (MIN_INFLATED
  at least): deflate reaches 1000:1 on zeros, real weights reach 2:1, so a few kilobytes can never
  ask for gigabytes.

`Records.stored` says whether every record is stored as it is: only then does torch's
`mmap=True` return the stored values (on a deflated record it returns the compressed bytes).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from orthocli.errors import InputFileError

MAX_RATIO = 64
MIN_INFLATED = 1 << 20  # bytes


@dataclass(frozen=True)
class Records:
    prefix: str  # the folder every record sits in, with its "/"
    stored: bool  # every record uncompressed: torch.load(mmap=True) reads the values themselves


def check(path: Path, archive: zipfile.ZipFile) -> Records:
    """The archive's records checked as above; InputFileError (exit 3) naming what is wrong."""
    infos = archive.infolist()
    if not infos:
        raise InputFileError(f"{path}: an empty zip archive; not a torch.save file")
    seen: set[str] = set()
    prefix = infos[0].filename.split("/")[0] + "/"
    inflated, size = 0, path.stat().st_size
    for info in infos:
        name = info.filename
        if name in seen:
            raise InputFileError(
                f"{path}: the zip archive holds the record '{name[:80]}' twice; torch reads one copy, other tools "
                "the other, so it is refused as ambiguous; re-save it with torch.save"
            )
        seen.add(name)
        if not name.startswith(prefix):
            raise InputFileError(
                f"{path}: the zip record '{name[:80]}' is outside the archive's folder '{prefix}', where torch looks"
            )
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InputFileError(
                f"{path}: the zip record '{name[:80]}' is compressed by method {info.compress_type}, which torch does "
                "not read; re-save it with torch.save"
            )
        if info.compress_type == zipfile.ZIP_DEFLATED:
            inflated += info.file_size
    if inflated > max(MIN_INFLATED, MAX_RATIO * size):
        raise InputFileError(
            f"{path}: its compressed records would inflate to {inflated} bytes from a file of {size} (more than "
            f"{MAX_RATIO} times); refused as a zip bomb. Re-save it with torch.save, which does not compress"
        )
    return Records(prefix, all(i.compress_type == zipfile.ZIP_STORED for i in infos))
