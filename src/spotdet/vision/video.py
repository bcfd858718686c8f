"""Video files as images: every Nth frame, read with OpenCV's ``VideoCapture``, one frame in memory at a time.

Two ways to read, for the two callers:
- ``iter_frames`` walks a whole video from the start (``spotdet detect``): skipped frames are only grabbed
  (demuxed and decoded, never converted to BGR), so ``--vid-stride 10`` converts a tenth of the frames;
- ``read_frames`` reads given frame numbers (a batch job's shard holds a slice of a video): it seeks once to
  the first one, then reads forward, so a shard costs its own frames, not every frame before it.

A batch job stores a frame as one item string, ``frame_item(video, n)`` = ``"/abs/clip.mp4#frame=12"``: the
job database keeps its schema (a list of strings per shard) and a preempted job resumes mid-video.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

from spotdet.errors import ImageLoadError, ImageTooLargeError, UsageError

if TYPE_CHECKING:  # OpenCV is imported where a video is opened: naming sources (and `spotdet --help`) needs none
    import cv2
    import numpy as np

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".wmv", ".mpg", ".mpeg", ".ts",
                              ".flv", ".3gp", ".gif", ".asf", ".m2ts", ".mts"})
_FRAME_SUFFIX = re.compile(r"^(?P<path>.+)#frame=(?P<frame>\d+)$")


def is_video_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def check_stride(stride: int) -> int:
    if stride < 1:
        raise UsageError(f"--vid-stride must be >= 1, got {stride}")
    return stride


def frame_item(path: str, frame: int) -> str:
    """The item string of frame ``frame`` of the video at ``path`` (how a batch job stores it)."""
    return f"{path}#frame={frame}"


def parse_frame_item(item: str) -> tuple[str, int] | None:
    """(video path, frame) for an item made by ``frame_item``; None for any other item (an image path, a URL).

    Only a video's name can carry the suffix, so an image file whose name happens to end in ``#frame=3``
    stays an image path."""
    match = _FRAME_SUFFIX.match(item)
    if match is None or not is_video_name(match["path"]):
        return None
    return match["path"], int(match["frame"])


@contextmanager
def open_video(path: str, max_pixels: int | None = None) -> Iterator[cv2.VideoCapture]:
    """An opened capture of ``path``; ImageLoadError when OpenCV cannot open it, ImageTooLargeError when its
    frames have more than ``max_pixels`` pixels (each frame would be decoded at that size)."""
    import cv2

    from spotdet.vision.image_io import check_regular_file

    try:
        check_regular_file(path, os.stat(path))  # OpenCV would block on a FIFO, read /dev/zero forever
    except OSError:
        raise ImageLoadError(f"{path}: no such file") from None

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise ImageLoadError(f"{path}: not a readable video (OpenCV cannot open it)")
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLargeError(f"{path}: {width}x{height} = {width * height} pixels per frame exceeds the "
                                     f"limit of {max_pixels} (--max-pixels)")
        yield cap
    finally:
        cap.release()


def count_frames(path: str) -> int:
    """The number of frames in the video, counted by grabbing them (a container's frame count is an estimate
    for some formats; a batch job plans one item per frame and must not lose the last ones)."""
    with open_video(path) as cap:
        n = 0
        while cap.grab():
            n += 1
    return n


def iter_frames(path: str, stride: int = 1, max_pixels: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, BGR frame) for frames 0, stride, 2*stride, ... to the end of the video."""
    check_stride(stride)
    with open_video(path, max_pixels) as cap:
        n = 0
        while cap.grab():
            if n % stride == 0:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise ImageLoadError(f"{path}: frame {n} cannot be decoded")
                yield n, frame
            n += 1


def read_frames(path: str, frames: Sequence[int], max_pixels: int | None = None
                ) -> Iterator[tuple[int, np.ndarray | ImageLoadError]]:
    """(frame number, BGR frame or the reason it cannot be read) for each of ``frames`` (ascending), in order.

    Seeks once to the first frame and reads forward from there. A frame past the end of the video comes back as
    an ImageLoadError, like an unreadable image; the video not opening at all raises."""
    if list(frames) != sorted(frames):
        raise ValueError("read_frames: frame numbers must be ascending")
    if not frames:
        return
    import cv2

    with open_video(path, max_pixels) as cap:
        position = 0
        if frames[0] > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, frames[0])
            position = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            if position != frames[0]:  # the backend could not seek exactly: read forward from the start
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                position = 0
        ended = False
        for wanted in frames:
            while not ended and position < wanted:
                ended = not cap.grab()
                position += 1
            if ended or not cap.grab():
                ended = True
                yield wanted, ImageLoadError(f"{path}: frame {wanted} is past the end of the video")
                continue
            position += 1
            ok, frame = cap.retrieve()
            yield wanted, frame if ok and frame is not None else ImageLoadError(
                f"{path}: frame {wanted} cannot be decoded")
