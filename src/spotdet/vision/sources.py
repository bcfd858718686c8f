"""Where images come from: folders (recursive), glob patterns, text files listing paths or URLs, image files,
``http(s)://`` URLs and video files (every Nth frame).

The one list of image suffixes and the one folder walk: batch jobs, calibration, bench and detect all read
their sources here.

Every form is enumerated lazily, one entry at a time, so planning a job over millions of files never holds
the whole list in memory. Paths come back absolute, so a job can be resumed from another working directory.

Two layers: ``iter_sources`` names the *entries* of a source (image paths, video paths, URLs); ``iter_inputs``
turns entries into what ``Detector.stream`` reads (a path, downloaded bytes, a decoded video frame), each
with its ``Input`` label, and ``labelled_stream`` gives every Result back its label (the URL, or the video
and frame number), which the Detector cannot know for bytes and arrays.
"""

from __future__ import annotations

import glob
import http.client
import os
import socket
import threading
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from spotdet.errors import ImageLoadError, SpotdetError, UsageError
from spotdet.vision.video import is_video_name, iter_frames, parse_frame_item, read_frames

if TYPE_CHECKING:
    from spotdet.results import Result

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pbm",
                              ".pgm", ".ppm", ".pnm", ".sr", ".ras", ".exr", ".hdr", ".pic"})
GLOB_CHARS = frozenset("*?[")
URL_SCHEMES = ("http://", "https://")
URL_TIMEOUT_S = 30.0  # for the whole download: connecting, the headers and the body
URL_MAX_BYTES = 50 * 2**20  # a larger download is refused (by its Content-Length before reading, or at this size)
_READ_CHUNK = 1 << 20


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_url(source: str) -> bool:
    return source[:8].lower().startswith(URL_SCHEMES)


def source_kind(source: str) -> str:
    """'url', 'folder', 'glob', 'list', 'video' or 'image': how ``source`` will be read (raises UsageError if it
    cannot be). A file is an image or a video by its extension, and otherwise a list of paths."""
    if is_url(source):
        return "url"
    if any(c in source for c in GLOB_CHARS) and not os.path.exists(source):
        return "glob"
    path = Path(source).expanduser()
    try:
        if path.is_dir():
            return "folder"
        if path.is_file():
            return "image" if is_image_name(path.name) else "video" if is_video_name(path.name) else "list"
    except OSError as exc:  # a name too long, a path through a file without permission, ...
        raise UsageError(f"{source}: cannot read ({exc.strerror or exc})") from None
    raise UsageError(f"{source}: no such folder, file or glob match")


def iter_sources(source: str) -> Iterator[str]:
    """Yield every entry ``source`` names, in a stable order: absolute paths of images and videos, and URLs.

    - a folder: every file with an image or video extension below it, recursively, sorted by name per
      directory;
    - a glob (``data/**/*.jpg``; ``**`` recurses): the matches, sorted per directory;
    - a text file: one path or ``http(s)://`` URL per line; blank lines and lines starting with ``#`` are
      skipped; relative paths are relative to the list file's folder. Listed paths are taken as they are (a
      missing file becomes a failed item of the job, not an error here), and may repeat;
    - an image file, a video file or a URL: that one entry.
    """
    kind = source_kind(source)
    if kind == "url":
        yield source
    elif kind == "folder":
        yield from _walk(Path(source).expanduser(), _is_media_name)
    elif kind == "glob":
        yield from _glob(os.path.expanduser(source))
    elif kind in ("image", "video"):
        yield os.path.abspath(os.path.expanduser(source))
    else:
        yield from _read_list(Path(source).expanduser())


def list_images(folder: str | Path) -> list[Path]:
    """Every image file below ``folder`` (recursively), in the same stable order as a folder source."""
    return [Path(p) for p in _walk(Path(folder).expanduser(), is_image_name)]


def _is_media_name(name: str) -> bool:
    return is_image_name(name) or is_video_name(name)


def _walk(root: Path, wanted: Callable[[str], bool]) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(os.path.abspath(root)):
        dirnames.sort()
        for name in sorted(filenames):
            if wanted(name):
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
                if is_url(entry):
                    yield entry
                    continue
                path = Path(entry).expanduser()
                yield os.path.abspath(path if path.is_absolute() else base / path)
    except UnicodeDecodeError:
        raise UsageError(f"{list_file}: not a text file listing image paths (nor an image or a video by its "
                         "extension)") from None
    except OSError as exc:
        raise UsageError(f"{list_file}: cannot read ({exc.strerror or exc})") from None


# -- URLs ----------------------------------------------------------------------------------------------------
def fetch_url(url: str, timeout: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES) -> bytes:
    """The body of ``url`` (http or https), read into memory; ImageLoadError naming the URL when it cannot be,
    a malformed one (``http://[::1``) included.

    A body over ``max_bytes`` is refused: by its Content-Length before any of it is read, else as soon as
    more than ``max_bytes`` have arrived. ``timeout`` is a deadline for the whole download (``_Deadline``)."""
    if not is_url(url):
        raise ImageLoadError(f"{url}: not an http(s) URL")
    with _Deadline(timeout) as deadline:
        try:
            request = _request(url)
            with deadline.opener().open(request, timeout=timeout) as response:
                return _read_body(response, url, deadline, max_bytes)
        except urllib.error.HTTPError as exc:
            raise ImageLoadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise ImageLoadError(f"{url}: cannot download ({_reason(exc.reason, deadline)})") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # no answer in time, a broken connection
            raise ImageLoadError(f"{url}: cannot download ({_reason(exc, deadline)})") from None


def _request(url: str) -> urllib.request.Request:
    try:
        return urllib.request.Request(url, headers={"User-Agent": f"spotdet/{_version()}"})
    except ValueError as exc:  # urllib's parser: 'Invalid IPv6 URL', ...
        raise ImageLoadError(f"{url}: not a valid URL ({exc})") from None


def _read_body(response: http.client.HTTPResponse, url: str, deadline: "_Deadline", max_bytes: int) -> bytes:
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise ImageLoadError(f"{url}: {int(length)} bytes exceeds the download limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := response.read(_READ_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise ImageLoadError(f"{url}: more than {max_bytes} bytes, the download limit")
            chunks.append(chunk)
    except (OSError, ValueError, http.client.HTTPException):
        if not deadline.expired:
            raise
    if deadline.expired:  # its socket was shut down under the read: the body ended early, or the read failed
        raise ImageLoadError(f"{url}: download took longer than {deadline.timeout:g} s")
    return b"".join(chunks)


def _reason(exc: object, deadline: "_Deadline") -> str:
    if deadline.expired or isinstance(exc, TimeoutError):
        return f"no answer within {deadline.timeout:g} s"
    return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__


class _Deadline:
    """``timeout`` as a deadline for a whole download. A socket timeout bounds each wait, not their sum: a server
    sending a byte now and then, in its headers or its body, would never time out. So every socket the
    download connects is recorded, and shut down when the time is up, which ends a read blocked on it at once.
    (A TLS handshake still has only the socket timeout: its socket is recorded once it is done.)"""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def opener(self) -> urllib.request.OpenerDirector:
        """urlopen's opener (proxies and redirects included), whose connections report their sockets here."""
        return urllib.request.build_opener(_WatchedHTTP(self), _WatchedHTTPS(self))

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: an SSLSocket's drops its TLS state
    except OSError:  # closed already
        pass


class _Watched:
    """Mixin for urllib's HTTP and HTTPS handlers: each connection they open reports its socket to a deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def do_open(self, http_class: type, req: urllib.request.Request, **kwargs: Any) -> http.client.HTTPResponse:
        deadline = self.deadline

        class Connection(http_class):  # type: ignore[misc, valid-type]
            def connect(self) -> None:
                super().connect()
                deadline.watch(self.sock)

        return super().do_open(Connection, req, **kwargs)  # type: ignore[misc]


class _WatchedHTTP(_Watched, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_Watched, urllib.request.HTTPSHandler):
    pass


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spotdet")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "dev"


# -- entries -> what the Detector reads, and results back to their inputs -----------------------------------
@dataclass(frozen=True)
class Input:
    """Where one image came from: ``path`` (a file, a URL or a video), ``frame`` (its number in a video) and
    ``entry`` (the position, in the entries given to ``iter_inputs``, of the entry it came from)."""

    path: str
    frame: int | None = None
    entry: int = 0

    @property
    def label(self) -> str:
        """How messages name it: the path or URL, and the frame of a video."""
        return self.path if self.frame is None else f"{self.path} frame {self.frame}"


OnError = Callable[[Input, SpotdetError], None]


@dataclass(frozen=True)
class Unreadable:
    """In place of an image source: why an entry could not be read before the Detector saw it (a download that
    failed, a video that did not open). ``labelled_stream`` reports it in its turn, in input order."""

    error: SpotdetError


def iter_inputs(entries: Iterable[str], vid_stride: int = 1, videos: bool = True, max_pixels: int | None = None,
                url_timeout: float = URL_TIMEOUT_S, url_max_bytes: int = URL_MAX_BYTES
                ) -> Iterator[tuple[Input, Any]]:
    """(Input, image source for ``Detector.stream``) for each image the ``entries`` hold, lazily, in order.

    - an image path: the path (the Detector reads and decodes it, and reports it when it cannot);
    - a URL: its downloaded bytes (decoded by the Detector under its pixel limit);
    - a video path: every ``vid_stride``-th frame as a BGR array; with ``videos=False`` a video path is one
      image like any other path (a batch job's items are single frames already);
    - a frame item (``video.frame_item``): that frame; consecutive frames of one video share one reader.

    An entry that cannot be read here comes as an ``Unreadable`` in place of its source, and the others go on.
    """
    for key, group in groupby(enumerate(entries), key=_video_of):
        if key[0] == "frames":
            yield from _frames_of(key[1], list(group), max_pixels)
            continue
        for k, entry in group:
            if is_url(entry):
                try:
                    yield Input(entry, None, k), fetch_url(entry, url_timeout, url_max_bytes)
                except ImageLoadError as exc:
                    yield Input(entry, None, k), Unreadable(exc)
            elif videos and is_video_name(entry):
                try:
                    for n, frame in iter_frames(entry, vid_stride, max_pixels):
                        yield Input(entry, n, k), frame
                except ImageLoadError as exc:
                    yield Input(entry, None, k), Unreadable(exc)
            else:
                yield Input(entry, None, k), entry


def _video_of(pair: tuple[int, str]) -> tuple[str, Any]:
    """groupby key: consecutive frame items of one video group together; any other entry stands alone."""
    parsed = parse_frame_item(pair[1])
    return ("frames", parsed[0]) if parsed else ("entry", pair[0])


def _frames_of(video: str, group: list[tuple[int, str]], max_pixels: int | None) -> Iterator[tuple[Input, Any]]:
    wanted = [(k, parse_frame_item(entry)[1]) for k, entry in group]
    frames = [n for _, n in wanted]
    if len(group) > 1 and frames != sorted(frames):  # planned ascending; anything else is read one by one
        for pair in group:
            yield from _frames_of(video, [pair], max_pixels)
        return
    try:
        for (k, _), (n, frame) in zip(wanted, read_frames(video, frames, max_pixels)):
            yield Input(video, n, k), Unreadable(frame) if isinstance(frame, ImageLoadError) else frame
    except ImageLoadError as exc:  # the video does not open: every frame asked for fails, each naming its frame
        reason = str(exc).removeprefix(f"{video}: ")
        for k, n in wanted:
            yield Input(video, n, k), Unreadable(ImageLoadError(f"{video} frame {n}: {reason}"))


def labelled_stream(stream: Callable[..., Iterator["Result"]], inputs: Iterable[tuple[Input, Any]],
                    on_error: OnError) -> Iterator[tuple[Input, "Result"]]:
    """Run ``stream`` (``Detector.stream`` with its options bound) over ``inputs`` and yield (Input, Result)
    pairs; each Result gets its Input's path and frame (the Detector sees only bytes or an array for a URL or
    a frame). Inputs that cannot be read (``Unreadable``, or reported by the Detector) go to ``on_error``.
    Results and errors both come in input order.

    ``stream`` yields results in source order and reports an unreadable source before any later source's
    result, so the Input of each result is the oldest one still in flight once the failures before it are out.
    """
    in_flight: deque[list[Any]] = deque()  # [Input, source given to the Detector, error or None], input order

    def sources() -> Iterator[Any]:
        for inp, src in inputs:
            if isinstance(src, Unreadable):
                in_flight.append([inp, None, src.error])
                continue
            in_flight.append([inp, src, None])
            yield src

    def flush() -> None:
        while in_flight and in_flight[0][2] is not None:
            inp, _, exc = in_flight.popleft()
            on_error(inp, exc)

    def unreadable(src: Any, exc: SpotdetError) -> None:
        for entry in in_flight:
            if entry[1] is src and entry[2] is None:
                inp = entry[0]
                entry[1], entry[2] = None, exc if isinstance(src, str) else ImageLoadError(f"{inp.label}: {exc}")
                flush()
                return
        raise AssertionError("labelled_stream: the Detector reported a source it was not given")

    results = stream(sources(), on_error=unreadable)
    try:
        for result in results:
            flush()
            inp, _, _ = in_flight.popleft()
            result.path, result.frame = inp.path, inp.frame
            yield inp, result
        flush()
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
