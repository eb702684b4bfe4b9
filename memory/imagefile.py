"""The living-image file format: a magic line, a SHA-256 of the payload, then the dill payload.

Written atomically (temp file in the same directory, fsync, rename, fsync of the directory), so a
crash mid-save leaves the previous image untouched and never a half-written newest one.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dill

MAGIC = b"A4PS-LIVING-IMAGE 1\n"
SUFFIX = ".a4img"
_NAME = re.compile(r"^image-(\d{8}T\d{6}\.\d{6}Z)" + re.escape(SUFFIX) + "$")


class CorruptImage(ValueError):
    """An image file that cannot be read back: wrong magic, checksum mismatch or undecodable payload."""


@dataclass(frozen=True)
class ImageFile:
    path: Path
    created: datetime
    size: int

    @property
    def name(self) -> str:
        return self.path.name


def dumps(contents: Any) -> bytes:
    return dill.dumps(contents, protocol=dill.HIGHEST_PROTOCOL)


def write_image(directory: Path, payload: bytes | Iterable[bytes], *, now: datetime | None = None) -> ImageFile:
    """Write one image atomically; `payload` may be bytes or an iterable of byte chunks."""
    directory.mkdir(parents=True, exist_ok=True)
    now = now or datetime.now(UTC)
    name = f"image-{now.strftime('%Y%m%dT%H%M%S.%fZ')}{SUFFIX}"
    final = directory / name
    tmp = directory / f".{name}.partial-{os.getpid()}"
    chunks = [payload] if isinstance(payload, (bytes, bytearray)) else payload
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC)
            fh.write(b"0" * 64 + b"\n")  # the checksum goes here once the payload is written
            for chunk in chunks:
                digest.update(chunk)
                fh.write(chunk)
            fh.seek(len(MAGIC))
            fh.write(digest.hexdigest().encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)
    return ImageFile(path=final, created=now, size=final.stat().st_size)


def read_image(path: Path) -> Any:
    """Verify and decode one image; CorruptImage says what is wrong."""
    try:
        with open(path, "rb") as fh:
            if fh.readline() != MAGIC:
                raise CorruptImage(f"{path.name}: not an A4PS living image (bad header)")
            expected = fh.readline().strip().decode("ascii", "replace")
            payload = fh.read()
    except OSError as exc:
        raise CorruptImage(f"{path.name}: unreadable ({exc.strerror})") from None
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise CorruptImage(f"{path.name}: checksum mismatch (stored {expected[:12]}…, content {actual[:12]}…)")
    try:
        return dill.loads(payload)
    except Exception as exc:  # dill raises many types for a payload it cannot rebuild
        raise CorruptImage(f"{path.name}: payload could not be decoded ({type(exc).__name__}: {exc})") from None


def list_images(directory: Path) -> list[ImageFile]:
    """Complete image files, newest first (temp files of interrupted saves are not images)."""
    found = []
    if directory.exists():
        for path in directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                created = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
                found.append(ImageFile(path=path, created=created, size=path.stat().st_size))
    return sorted(found, key=lambda f: f.created, reverse=True)


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` images, and leftovers of interrupted saves."""
    removed = []
    for old in list_images(directory)[keep:]:
        old.path.unlink(missing_ok=True)
        removed.append(old.path)
    for leftover in directory.glob(".image-*"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def latest_good(directory: Path) -> tuple[ImageFile | None, Any, list[str]]:
    """The newest image that reads back, its contents, and a warning per newer one that did not."""
    warnings = []
    for image in list_images(directory):
        try:
            return image, read_image(image.path), warnings
        except CorruptImage as exc:
            warnings.append(str(exc))
    return None, None, warnings
