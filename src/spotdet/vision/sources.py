"""Where images come from: a folder (recursive), a glob pattern, a text file listing paths, one image file.

The one list of image suffixes and the one folder walk: batch jobs, calibration, bench and detect all read
their sources here.

Every form is enumerated lazily, one path at a time, so planning a job over millions of files never holds
the whole list in memory. Paths come back absolute, so a job can be resumed from another working directory.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterator

from spotdet.errors import UsageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pbm",
                              ".pgm", ".ppm", ".pnm", ".sr", ".ras", ".exr", ".hdr", ".pic"})
GLOB_CHARS = frozenset("*?[")


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def source_kind(source: str) -> str:
    """'folder', 'glob', 'list' or 'image': how ``source`` will be read (raises UsageError if it cannot be)."""
    if any(c in source for c in GLOB_CHARS) and not os.path.exists(source):
        return "glob"
    path = Path(source).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "image" if is_image_name(path.name) else "list"
    raise UsageError(f"{source}: no such folder, file or glob match")


def iter_sources(source: str) -> Iterator[str]:
    """Yield the absolute path of every image ``source`` names, in a stable order.

    - a folder: every file with an image extension below it, recursively, sorted by name per directory;
    - a glob (``data/**/*.jpg``; ``**`` recurses): the matches, sorted per directory;
    - a text file: one path per line; blank lines and lines starting with ``#`` are skipped; relative
      paths are relative to the list file's folder. Listed paths are taken as they are (a missing file
      becomes a failed item of the job, not an error here), and may repeat;
    - an image file: that one image.
    """
    kind = source_kind(source)
    if kind == "folder":
        yield from _walk(Path(source).expanduser())
    elif kind == "glob":
        yield from _glob(os.path.expanduser(source))
    elif kind == "image":
        yield os.path.abspath(os.path.expanduser(source))
    else:
        yield from _read_list(Path(source).expanduser())


def list_images(folder: str | Path) -> list[Path]:
    """Every image file below ``folder`` (recursively), in the same stable order as a folder source."""
    return [Path(p) for p in _walk(Path(folder).expanduser())]


def _walk(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(os.path.abspath(root)):
        dirnames.sort()
        for name in sorted(filenames):
            if is_image_name(name):
                yield os.path.join(dirpath, name)


def _glob(pattern: str) -> Iterator[str]:
    # iglob is lazy; it yields in directory order, which is not stable across file systems, so matches
    # are sorted one directory at a time (memory bounded by the largest directory, not the whole tree).
    current: str | None = None
    pending: list[str] = []
    for match in glob.iglob(pattern, recursive=True):
        if not os.path.isfile(match):
            continue
        directory = os.path.dirname(os.path.abspath(match))
        if directory != current and pending:
            yield from sorted(pending)
            pending = []
        current = directory
        pending.append(os.path.abspath(match))
    yield from sorted(pending)


def _read_list(list_file: Path) -> Iterator[str]:
    base = list_file.resolve().parent
    try:
        with open(list_file, encoding="utf-8") as fh:
            for line in fh:
                entry = line.strip()
                if not entry or entry.startswith("#"):
                    continue
                path = Path(entry).expanduser()
                yield os.path.abspath(path if path.is_absolute() else base / path)
    except UnicodeDecodeError:
        raise UsageError(f"{list_file}: not a text file listing image paths (nor an image by its extension)") from None
    except OSError as exc:
        raise UsageError(f"{list_file}: cannot read ({exc.strerror or exc})") from None
