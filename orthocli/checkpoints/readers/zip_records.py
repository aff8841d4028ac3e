"""What a torch.save zip archive's records may be before anything reads them, torch or orthocli's own
reader alike (zip_checkpoint.py for `score`, checkpoint.py's torch.load for the other commands):

- every name once: a record stored twice holds two byte strings, torch reads one and Python's
  zipfile the other, so the gate could be shown other weights than torch loads; refused as ambiguous;
- every record under one folder, the first record's (torch finds `data.pkl` there, nowhere else);
- stored or deflated, the two methods torch's reader knows, with the sizes its reader (miniz)
  checks: a stored record's two sizes equal, every record inside the file;
- deflated records inflating, all together, to at most MAX_RATIO times the file's size (MIN_INFLATED
  at least): deflate reaches 1000:1 on zeros, real weights reach 2:1, so a few kilobytes can never
  ask for gigabytes.

`Records.stored` says whether every record is stored as it is: only then does torch's
`mmap=True` return the stored values (on a deflated record it returns the compressed bytes).
"""

from __future__ import annotations

import struct
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
    with open(path, "rb") as f:
        _directory(path, f, archive, size)
        for info in infos:  # torch's reader finds each record by its local header; Python's zipfile only on opening
            f.seek(info.header_offset)
            if f.read(4) != b"PK\x03\x04":
                raise InputFileError(f"{path}: the zip record '{info.filename[:80]}' has no local header; damaged")
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
        # what torch's zip reader (miniz) checks of each central-directory entry, and Python's does not
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise InputFileError(f"{path}: the zip record '{name[:80]}' is stored with two different sizes; damaged")
        if info.volume not in (0, 1):  # miniz: a record on another disk of a multi-disk archive
            raise InputFileError(f"{path}: the zip record '{name[:80]}' is on disk {info.volume}; damaged")
        if info.header_offset + 30 + info.compress_size > size:
            raise InputFileError(f"{path}: the zip record '{name[:80]}' runs past the end of the file; truncated")
        if info.compress_type == zipfile.ZIP_DEFLATED:
            inflated += info.file_size
    if inflated > max(MIN_INFLATED, MAX_RATIO * size):
        raise InputFileError(
            f"{path}: its compressed records would inflate to {inflated} bytes from a file of {size} (more than "
            f"{MAX_RATIO} times); refused as a zip bomb. Re-save it with torch.save, which does not compress"
        )
    return Records(prefix, all(i.compress_type == zipfile.ZIP_STORED for i in infos))


def _directory(path: Path, f, archive: zipfile.ZipFile, size: int) -> None:
    """What miniz checks of the end records and Python's zipfile does not: one disk (all entries on
    it), and central directory entries that fit the directory (an entry whose comment length was
    damaged runs past it)."""
    tail_len = min(size, 22 + 0xFFFF + 56 + 20)
    f.seek(size - tail_len)
    tail = f.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + 22 > len(tail):
        return  # zipfile found it where this does not: its own checks stand
    disk, cd_disk, here, total, cd_size = struct.unpack_from("<HHHHI", tail, end + 4)
    z64 = tail.rfind(b"PK\x06\x06", 0, end)
    if z64 >= 0 and z64 + 56 <= end:
        disk, cd_disk, here, total, cd_size = struct.unpack_from("<IIQQQ", tail, z64 + 16)
        if end >= 20 and tail[end - 20 : end - 16] == b"PK\x06\x07":  # the locator: miniz follows its offset
            at_disk, offset, disks = struct.unpack_from("<IQI", tail, end - 16)
            if offset != size - tail_len + z64 or at_disk != 0 or disks > 1:
                raise InputFileError(f"{path}: its zip64 end locator points elsewhere; damaged")
    if disk != 0 or cd_disk != 0 or here != total:
        raise InputFileError(f"{path}: a zip archive spanning several disks, which torch does not read; damaged")
    f.seek(archive.start_dir)
    directory = f.read(min(cd_size, size))
    at = 0
    for _ in archive.infolist():
        if directory[at : at + 4] != b"PK\x01\x02" or at + 46 > len(directory):
            raise InputFileError(f"{path}: its zip directory is damaged")
        names, extra, comment = struct.unpack_from("<HHH", directory, at + 28)
        at += 46 + names + extra + comment
        if at > len(directory):
            raise InputFileError(f"{path}: its zip directory's entries overrun the directory; damaged")
