"""``spotdet eval``: COCO mAP of a model on a folder with instances.json and images/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from spotdet.cli.main import app, err, fail, handle_errors, out
from spotdet.cli.options import GpuOpt, BackendOpt, DeviceOpt, FamilyOpt, ImgszOpt, IouOpt, ThreadsOpt, TileOpt
from spotdet.eval.coco import EVAL_CONF, EVAL_MAX_DET, EvalReport, evaluate, evaluate_results_file, load_dataset
from spotdet.progress import count_progress


@app.command("eval")
@handle_errors
def eval_command(
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Zoo name or path to an .onnx file to run on DATA."),
    results: Optional[Path] = typer.Option(None, "--results", help="Score this COCO results JSON instead of a "
                                           "model (e.g. from `spotdet batch run --format coco`)."),
    data: Path = typer.Option(..., "--data", help="Folder holding instances.json and images/."),
    conf: float = typer.Option(EVAL_CONF, "--conf", min=0.0, max=0.999, help="Score threshold for mAP."),
    iou: float = IouOpt,
    max_det: int = typer.Option(EVAL_MAX_DET, "--max-det", min=1, help="Detections kept per image."),
    imgsz: Optional[str] = ImgszOpt,
    tile: bool = TileOpt,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the precision-recall curve (IoU 0.5 and "
                                        "0.5:0.95, all classes) to this .png; needs the 'plot' extra."),
    per_class: bool = typer.Option(False, "--per-class", help="Also print AP per class (--json always has it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON: the 12 COCO figures by name, "
                                 "AP per class, input pixels per image."),
    device: str = DeviceOpt,
    gpu: Optional[int] = GpuOpt,  # exported as $SPOTDET_GPU by its callback, read by the backend
    threads: Optional[int] = ThreadsOpt,
    family: Optional[str] = FamilyOpt,
    backend: str = BackendOpt,
) -> None:
    """Compute COCO mAP@0.5:0.95 and mAP@0.5 of MODEL (or of a results file) on DATA."""
    if (model is None) == (results is None):
        fail("give either --model (run a model on DATA) or --results (score a COCO results file)", 2)
    if results is not None and (imgsz is not None or tile):
        fail("--imgsz and --tile choose how a model runs; a results file was already made", 2)
    if plot is not None:
        from spotdet.eval.plot import check_plot_path

        check_plot_path(plot)  # a missing 'plot' extra is reported before the model runs
    dataset = load_dataset(data)  # the annotations are checked before any model is loaded or run
    if results is not None:
        report = evaluate_results_file(results, dataset)
        if report.images_without_detections:
            err.print(f"warning: {report.images_without_detections} of {report.images} images in "
                      f"{escape(dataset.ann_file.name)} have no detections in {escape(results.name)}; they count "
                      "as misses", highlight=False, soft_wrap=True)
        title = f"COCO bbox evaluation of {results} on {data}"
    else:
        from spotdet.detector import Detector

        det = Detector(model, device=device, threads=threads, family=family, backend=backend)
        progress = count_progress(err, disable=as_json)
        with progress:
            task = progress.add_task(f"eval {det.name}", total=None)
            report = evaluate(det, dataset, conf=conf, iou=iou, max_det=max_det, limit=limit, imgsz=imgsz, tile=tile,
                              on_progress=lambda n, total: progress.update(task, completed=n, total=total))
        for failure in report.failed:
            err.print(f"[yellow]skipped[/] {escape(failure)}", highlight=False)
        title = f"COCO bbox evaluation of {det.name} on {data} ({det.provider})"
    if plot is not None:
        from spotdet.eval.plot import save_pr_curve

        err.print(f"wrote {escape(str(save_pr_curve(report, plot)))}", highlight=False)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    _print_report(report, title, per_class)
    if results is None and (det.card.reference_dev_map is not None or det.card.published_map is not None):
        out.print(f"reference: published mAP {det.card.published_map}, dev-set reference {det.card.reference_dev_map}")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_report(report: EvalReport, title: str, per_class: bool) -> None:
    """The headline table (mAP next to its price: input pixels and speed), COCO's 12 figures, and per class."""
    table = Table(title=escape(title), title_justify="left")
    for col in ("images", "mAP@0.5:0.95", "mAP@0.5", "input px/image", "images/s", "seconds"):
        table.add_column(col, justify="right")
    pixels = "-" if report.input_pixels_per_image is None else f"{report.input_pixels_per_image:,.0f}"
    speed = f"{report.images_per_s:.2f}" if report.images_per_s else "-"
    table.add_row(str(report.images), f"{report.map50_95:.2f}", f"{report.map50:.2f}", pixels, speed,
                  f"{report.seconds:.1f}")
    out.print(table)
    stats = Table(title="COCO summary, points (- : no box of that size)", title_justify="left")
    stats.add_column("all box sizes", justify="left")
    for col in ("", "", "", "small", "medium", "large"):
        stats.add_column(col, justify="right")
    figures = [_figure(v) for v in report.stats.values()]
    stats.add_row("AP @0.5:0.95, @0.5, @0.75", *figures[0:3], *figures[3:6])
    stats.add_row("AR at most 1, 10, 100 boxes", *figures[6:9], *figures[9:12])
    out.print(stats)
    if per_class:
        classes = Table(title="AP per class", title_justify="left")
        for col, justify in (("class", "left"), ("category id", "right"), ("gt boxes", "right"),
                             ("AP@0.5:0.95", "right"), ("AP@0.5", "right")):
            classes.add_column(col, justify=justify)
        for c in report.per_class:
            classes.add_row(escape(c.name), str(c.category_id), str(c.gt_boxes), _figure(c.ap50_95), _figure(c.ap50))
        out.print(classes)
