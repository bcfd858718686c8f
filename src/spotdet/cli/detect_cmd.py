"""``spotdet detect``: detections per image as a table or JSON, optionally saved as annotated images and YOLO labels.

Sources are what ``yolo predict`` takes: image files, folders, globs, list files, ``http(s)://`` URLs and videos
(``vision/sources.py`` reads them all). One unreadable source is one error line; the others go on, and the
command exits 1 at the end.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from spotdet.cli.main import app, err, fail, handle_errors, out
from spotdet.cli.options import (GpuOpt, BackendOpt, ClassesOpt, ConfOpt, DeviceOpt, FamilyOpt, ImgszOpt, IouOpt, MaxDetOpt,
                                 MaxPixelsOpt, ModelOpt, PrecisionOpt, ThreadsOpt, TileOpt, VidStrideOpt,
                                 max_pixels_limit)
from spotdet.errors import ImageLoadError, SpotdetError, UsageError
from spotdet.vision.sources import (Input, Unreadable, is_url, iter_inputs, iter_sources, labelled_stream,
                                    source_kind)

@app.command()
@handle_errors
def detect(
    sources: List[str] = typer.Argument(..., metavar="SOURCES...", help="Images, folders, globs ('imgs/**/*.jpg'), "
                                        "list files (one path or URL per line), http(s) URLs or videos."),
    model: str = ModelOpt,
    precision: Optional[str] = PrecisionOpt,
    imgsz: Optional[str] = ImgszOpt,
    tile: bool = TileOpt,
    conf: float = ConfOpt,
    iou: float = IouOpt,
    max_det: int = MaxDetOpt,
    classes: Optional[str] = ClassesOpt,
    vid_stride: int = VidStrideOpt,
    save: Optional[Path] = typer.Option(None, "--save", help="Folder to write annotated images to (names made "
                                        "unique: img.jpg, img_2.jpg; video frames as clip_000012.jpg)."),
    save_txt: Optional[Path] = typer.Option(None, "--save-txt", help="Folder to write YOLO labels to: one .txt "
                                            "per image (named like --save's images), 'class cx cy w h' normalised."),
    save_conf: bool = typer.Option(False, "--save-conf", help="Append the confidence to each --save-txt line."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one array of results) instead of tables."),
    device: str = DeviceOpt,
    gpu: Optional[int] = GpuOpt,  # exported as $SPOTDET_GPU by its callback, read by the backend
    threads: Optional[int] = ThreadsOpt,
    family: Optional[str] = FamilyOpt,
    backend: str = BackendOpt,
    max_pixels: int = MaxPixelsOpt,
) -> None:
    """Detect objects in SOURCES and print what was found."""
    from spotdet.detector import Detector
    from spotdet.jobs.outputs import writable_folder
    from spotdet.options import DetectOptions

    options = DetectOptions.create(conf=conf, iou=iou, max_det=max_det, classes=classes, imgsz=imgsz,
                                   tile=tile)
    for folder in (save, save_txt):
        if folder is not None:
            writable_folder(folder)  # an unwritable folder fails now, not after the first image
    det = Detector(model, precision=precision, device=device, threads=threads, family=family, backend=backend,
                   options=options, max_pixels=max_pixels_limit(max_pixels))
    failures: list[str] = []

    def report_failure(inp: Input, exc: SpotdetError) -> None:
        failures.append(inp.label)
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)

    names = OutputNames()
    inputs = _inputs(sources, vid_stride, det.max_pixels)
    stream = functools.partial(det.stream, keep_image=save is not None)  # decoded images are kept only to draw
    collected = []
    n_ok = 0
    for inp, result in labelled_stream(stream, inputs, report_failure):
        n_ok += 1
        name = names.next(inp) if save is not None or save_txt is not None else None
        saved = str(result.save(save / f"{name}.jpg")) if save is not None else None
        labels = str(result.save_txt(save_txt / f"{name}.txt", save_conf)) if save_txt is not None else None
        if as_json:
            collected.append({**result.to_dict(), "saved": saved, **({"labels": labels} if labels else {})})
        else:
            _print_table(result, det.provider, saved, labels)
    if as_json:
        out.print_json(json.dumps(collected)) if out.is_terminal else print(json.dumps(collected))
    if failures:
        fail(f"{len(failures)} of {len(failures) + n_ok} image(s) could not be read", 1)


def _inputs(sources: Iterable[str], vid_stride: int, max_pixels: int | None) -> Iterator[tuple[Input, Any]]:
    """Every image of every source in turn (``iter_inputs``). A path that does not exist goes on as it is, so the
    image reader says why (``no such file``, ``File name too long``); a source that names nothing is one
    unreadable input saying so."""
    read = functools.partial(iter_inputs, vid_stride=vid_stride, max_pixels=max_pixels)
    for source in sources:
        try:
            kind = source_kind(source)
        except UsageError:
            yield from read([source])
            continue
        found = 0

        def entries() -> Iterator[str]:
            nonlocal found
            for entry in iter_sources(source):
                found += 1
                yield entry

        try:
            yield from read(entries())
        except UsageError as exc:  # a file named like no image that is not a text list either
            # read it as an image, as detect always did (a JPEG without an extension); the decoder says why not
            yield from read([source]) if found == 0 else [(Input(source), Unreadable(exc))]
            continue
        if found == 0 and kind == "glob" and not any(c in source for c in "*?"):
            yield from read([source])  # 'shot[1].jpg': more likely a missing file with brackets than a glob
        elif found == 0:
            why = {"folder": "no images or videos in this folder", "glob": "no file matches this pattern",
                   "list": "the list names no images"}.get(kind, "nothing to read")
            yield Input(source), Unreadable(ImageLoadError(f"{source}: {why}"))


class OutputNames:
    """Unique, deterministic file names (without extension) for what ``--save``/``--save-txt`` write.

    An image keeps its stem (``img``), a video frame gets its number (``clip_000012``), a URL the last part of its
    path; a name already given in this run gets ``_2``, ``_3``, ... So two folders each holding ``img.jpg`` give
    ``img`` and ``img_2``, in input order, and a rerun gives the same names. Names compare case-insensitively,
    as they would on a case-insensitive file system."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def next(self, inp: Input) -> str:
        base = _stem(inp.path) + ("" if inp.frame is None else f"_{inp.frame:06d}")
        name, k = base, 1
        while name.casefold() in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name.casefold())
        return name


def _stem(path: str) -> str:
    if is_url(path):
        path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
    stem = Path(path.rstrip("/")).stem
    return "".join(c if c not in '/\\:*?"<>|' and c.isprintable() else "_" for c in stem) or "image"


def _print_table(result, provider: str, saved: str | None, labels: str | None) -> None:
    t = result.timings
    where = result.path if result.frame is None else f"{result.path} frame {result.frame}"
    title = (f"{where}  {result.orig_shape[1]}x{result.orig_shape[0]}  {len(result)} detection(s)  "
             f"[{result.model} on {provider}, {t['total_ms']:.1f} ms: decode {t['decode_ms']:.1f}, "
             f"pre {t['preprocess_ms']:.1f}, infer {t['infer_ms']:.1f}, post {t['postprocess_ms']:.1f}]")
    table = Table(title=escape(title), title_justify="left")
    for col in ("class", "conf", "x1", "y1", "x2", "y2"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for d in result.detections():
        b = d["box"]
        table.add_row(d["class_name"], f"{d['confidence']:.3f}", f"{b['x1']:.0f}", f"{b['y1']:.0f}",
                      f"{b['x2']:.0f}", f"{b['y2']:.0f}")
    out.print(table)
    for what, path in (("saved", saved), ("labels", labels)):
        if path:
            out.print(f"{what} {escape(path)}", highlight=False)
