"""``spotdet detect``: detections per image as a table or JSON, optionally saved as annotated images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from spotdet.cli.main import app, err, fail, handle_errors, out
from spotdet.cli.options import (BackendOpt, ClassesOpt, ConfOpt, DeviceOpt, FamilyOpt, ImgszOpt, IouOpt, MaxDetOpt,
                                 MaxPixelsOpt, ModelOpt, ThreadsOpt, TileOpt, max_pixels_limit)


@app.command()
@handle_errors
def detect(
    images: List[str] = typer.Argument(..., help="Image files to run on."),
    model: str = ModelOpt,
    imgsz: Optional[str] = ImgszOpt,
    tile: bool = TileOpt,
    conf: float = ConfOpt,
    iou: float = IouOpt,
    max_det: int = MaxDetOpt,
    classes: Optional[str] = ClassesOpt,
    save: Optional[Path] = typer.Option(None, "--save", help="Folder to write annotated images to."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one array of results) instead of tables."),
    device: str = DeviceOpt,
    threads: Optional[int] = ThreadsOpt,
    family: Optional[str] = FamilyOpt,
    backend: str = BackendOpt,
    max_pixels: int = MaxPixelsOpt,
) -> None:
    """Detect objects in IMAGES and print what was found."""
    from spotdet.detector import Detector
    from spotdet.jobs.outputs import writable_folder
    from spotdet.options import DetectOptions

    options = DetectOptions.create(conf=conf, iou=iou, max_det=max_det, classes=classes, imgsz=imgsz,
                                   tile=tile)
    if save is not None:
        writable_folder(save)  # an unwritable --save fails now, not after the first image
    det = Detector(model, device=device, threads=threads, family=family, backend=backend, options=options,
                   max_pixels=max_pixels_limit(max_pixels))
    failures: list[str] = []

    def report_failure(source, exc) -> None:
        failures.append(str(source))
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)

    collected = []
    for result in det.stream(images, on_error=report_failure):
        saved = str(result.save(save / f"{Path(result.path).stem}.jpg")) if save is not None else None
        if as_json:
            collected.append({**result.to_dict(), "saved": saved})
        else:
            _print_table(result, det.provider, saved)
    if as_json:
        out.print_json(json.dumps(collected)) if out.is_terminal else print(json.dumps(collected))
    if failures:
        fail(f"{len(failures)} of {len(images)} image(s) could not be read", 1)


def _print_table(result, provider: str, saved: str | None) -> None:
    t = result.timings
    title = (f"{result.path}  {result.orig_shape[1]}x{result.orig_shape[0]}  {len(result)} detection(s)  "
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
    if saved:
        out.print(f"saved {escape(saved)}", highlight=False)
