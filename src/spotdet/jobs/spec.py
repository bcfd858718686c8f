"""What a job is (``JobSpec``: stored, defines the results) and how one run of it executes (``RunOptions``).

A JobSpec is stored in the job database when the job is planned and every resume uses the stored one, so the
results cannot depend on which command continued the job. Its detection settings are one ``DetectOptions``
(the object the Detector, the service and the CLI use), stored with ``DetectOptions.to_dict``.

Jobs planned before that (job database schema 1) stored conf, iou, max_det and imgsz as flat fields of the
spec; ``JobSpec.from_dict`` still reads them, so such a job resumes (and ``batch status`` reads it) unchanged.
Jobs planned before ``max_pixels`` existed get the default limit when resumed, like the same command run now
(an image over it in a shard not done yet becomes a failed item instead of a result).

``vid_stride`` (every Nth frame of a video source) is stored with every job planned since videos became items;
a spotdet from before refuses such a job ("written by a newer spotdet") rather than failing its frame items.
Jobs planned before it read as ``vid_stride=1``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from spotdet.errors import UsageError
from spotdet.options import DEFAULT_MAX_PIXELS, DetectOptions
from spotdet.vision.sources import is_url, source_kind
from spotdet.vision.video import check_stride

FORMATS = ("jsonl", "coco")
ENGINES = ("local", "ray")
LEGACY_OPTION_KEYS = ("conf", "iou", "max_det", "imgsz")  # flat spec fields of schema-1 job databases


@dataclass(frozen=True)
class JobSpec:
    """What defines a job's results. Stored in the job database; a resume always uses the stored one."""

    source: str
    model: str
    family: str | None = None
    options: DetectOptions = field(default_factory=DetectOptions)
    shard_size: int = 64
    fmt: str = "jsonl"
    annotations: str | None = None
    exif_orientation: bool | None = None  # None: on for jsonl, off for coco (COCO boxes use stored pixels)
    save_annotated: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # images with more pixels fail (header read before decoding)
    vid_stride: int = 1  # video sources: one item per Nth frame (planned as frame items, see vision/video.py)

    def normalised(self) -> "JobSpec":
        """Checked, with absolute paths and the format's EXIF default filled in (what gets stored)."""
        if self.fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.shard_size < 1:
            raise UsageError(f"--shard-size must be >= 1, got {self.shard_size}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise UsageError(f"--max-pixels must be >= 1 (or None: no limit), got {self.max_pixels}")
        if not isinstance(self.options, DetectOptions):
            raise UsageError(f"JobSpec.options must be a DetectOptions, got {type(self.options).__name__}")
        check_stride(self.vid_stride)
        source_kind(self.source)  # raises UsageError when the source does not exist
        annotations = self.annotations
        if annotations is not None:
            annotations = os.path.abspath(os.path.expanduser(annotations))
            if not os.path.isfile(annotations):
                raise UsageError(f"{self.annotations}: no such annotation file")
        exif = self.exif_orientation if self.exif_orientation is not None else self.fmt == "jsonl"
        source = self.source if is_url(self.source) else os.path.abspath(os.path.expanduser(self.source))
        return replace(self, source=source, annotations=annotations, exif_orientation=exif)

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form."""
        return {**asdict(self), "options": self.options.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JobSpec":
        """The inverse of ``to_dict``; also reads the flat conf/iou/max_det/imgsz of schema-1 job databases."""
        data = dict(data)
        legacy = {k: data.pop(k) for k in LEGACY_OPTION_KEYS if k in data}
        if "options" in data and legacy:
            raise UsageError(f"stored job spec has both options and flat {', '.join(legacy)}: not a spotdet job")
        options = DetectOptions.from_dict(data.pop("options")) if "options" in data else DetectOptions.create(**legacy)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise UsageError(f"stored job spec has unknown field(s) {', '.join(unknown)}: it was written by a "
                             "newer spotdet; resume it with that version")
        return cls(options=options, **data)

    def differences(self, other: "JobSpec") -> list[str]:
        """``"field: mine -> other's"`` for each setting that differs (detection options by their own names)."""
        mine, theirs = self._flat(), other._flat()
        return [f"{k}: {mine[k]!r} -> {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]

    def _flat(self) -> dict[str, Any]:
        flat = {k: v for k, v in asdict(self).items() if k != "options"}
        flat.update(self.options.to_dict())
        return flat


@dataclass(frozen=True)
class RunOptions:
    """How this run executes; may change between resumes without changing the results."""

    workers: int = 1
    engine: str = "local"
    device: str = "auto"
    backend: str = "auto"
    threads: int | None = None
    ray_address: str | None = None
    gpus_per_worker: float | None = None
    grace: float = 20.0

    def check(self) -> None:
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
