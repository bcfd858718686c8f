"""``spotdet eval``: COCO mAP of a model on a folder with instances.json and images/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from spotdet.cli.main import app, err, fail, handle_errors, out
from spotdet.cli.options import BackendOpt, DeviceOpt, FamilyOpt, IouOpt, ThreadsOpt
from spotdet.eval.coco import EVAL_CONF, EVAL_MAX_DET, evaluate, evaluate_results_file, load_dataset
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
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    device: str = DeviceOpt,
    threads: Optional[int] = ThreadsOpt,
    family: Optional[str] = FamilyOpt,
    backend: str = BackendOpt,
) -> None:
    """Compute COCO mAP@0.5:0.95 and mAP@0.5 of MODEL (or of a results file) on DATA."""
    if (model is None) == (results is None):
        fail("give either --model (run a model on DATA) or --results (score a COCO results file)", 2)
    dataset = load_dataset(data)  # the annotations are checked before any model is loaded or run
    if results is not None:
        report = evaluate_results_file(results, dataset)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
            return
        out.print(f"{escape(str(results))} on {escape(str(data))}: {report.images} images, "
                  f"mAP@0.5:0.95 {report.map50_95:.2f}, mAP@0.5 {report.map50:.2f}", highlight=False)
        return
    from spotdet.detector import Detector

    det = Detector(model, device=device, threads=threads, family=family, backend=backend)
    progress = count_progress(err, disable=as_json)
    with progress:
        task = progress.add_task(f"eval {det.name}", total=None)
        report = evaluate(det, dataset, conf=conf, iou=iou, max_det=max_det, limit=limit,
                          on_progress=lambda n, total: progress.update(task, completed=n, total=total))
    for failure in report.failed:
        err.print(f"[yellow]skipped[/] {escape(failure)}", highlight=False)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    table = Table(title=escape(f"COCO bbox evaluation of {det.name} on {data} ({det.provider})"),
                  title_justify="left")
    for col in ("images", "mAP@0.5:0.95", "mAP@0.5", "images/s", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(str(report.images), f"{report.map50_95:.2f}", f"{report.map50:.2f}",
                  f"{report.images_per_s:.2f}", f"{report.seconds:.1f}")
    out.print(table)
    if det.card.reference_dev_map is not None or det.card.published_map is not None:
        out.print(f"reference: published mAP {det.card.published_map}, dev-set reference {det.card.reference_dev_map}")
