"""``spotdet optimize``: fp16 / int8-dynamic / int8-static / int4 variants, dynamic batch and input size, --auto."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from spotdet.cli.main import app, err, fail, handle_errors, out
from spotdet.cli.options import FamilyOpt, ThreadsOpt


@app.command()
@handle_errors
def optimize(
    model: str = typer.Argument(..., help="Zoo name, locally made variant, or path to an .onnx file."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p",
                                            help="fp16 | int8-dynamic | int8-static | int4, or int8 with "
                                            "--device tensorrt (an fp32 file + TensorRT calibration table)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Folder of calibration images (int8-static, --auto)."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax | entropy | percentile."),
    calib_count: int = typer.Option(100, "--calib-count", min=1, help="Calibration images sampled from --calib."),
    activation_bits: int = typer.Option(8, "--activation-bits", help="int8-static: 8 (A8W8) or 16 (A16W8: "
                                        "int8 weights, 16-bit activations; accurate, not faster on CPU)."),
    mixed: bool = typer.Option(True, "--mixed/--no-mixed", help="int8-static: keep the activations that lose most "
                               "to 8 bits in float, chosen automatically on calibration images."),
    mixed_target_db: Optional[float] = typer.Option(None, "--mixed-target-db", help="int8-static: output SQNR "
                                                    "(dB vs fp32) the mixed-precision step aims for (default 10)."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Make the batch dimension symbolic (verified)."),
    dynamic_shape: bool = typer.Option(False, "--dynamic-shape", help="Make the input height and width symbolic, so "
                                       "imgsz can change per call (verified; the variant is named ...-dyn)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output .onnx (default: the model cache)."),
    exclude_nodes: Optional[str] = typer.Option(
        None, "--exclude-nodes", help="Comma-separated node names kept in float (int8-static); replaces the "
        "automatic per-family detection-head exclusion. Pass '' to quantize everything."),
    device: Optional[str] = typer.Option(None, "--device", help="Build for this device: tensorrt with --precision "
                                         "int8 writes TensorRT's calibration table from --calib beside the variant."),
    auto: bool = typer.Option(False, "--auto", help="Build every variant, measure each, keep the fastest in budget."),
    data: Optional[Path] = typer.Option(None, "--data", help="--auto: COCO folder (instances.json + images/) for mAP."),
    max_map_drop: float = typer.Option(1.0, "--max-map-drop", min=0.0, help="--auto: largest mAP loss accepted."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="--auto: evaluate only the first N images."),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="--auto: where JSON/Markdown go (default .)."),
    threads: Optional[int] = ThreadsOpt,
    family: Optional[str] = FamilyOpt,
) -> None:
    """Write an optimized copy of MODEL (and its card) that Detector, serve and eval load like any other model."""
    if auto:
        _auto(model, calib, data, max_map_drop, output, calib_method, calib_count, limit, threads, family, report_dir)
        return
    if precision is None and not dynamic_batch and not dynamic_shape:
        fail("say what to build: --precision fp16|int8-dynamic|int8-static|int4, --dynamic-batch, --dynamic-shape, "
             "or --auto", 2)
    from spotdet.optimize.api import OptimizeRequest, optimize as run_optimize

    excluded = None if exclude_nodes is None else [n.strip() for n in exclude_nodes.split(",") if n.strip()]
    request = OptimizeRequest(precision=precision, calib=calib, calib_method=calib_method, calib_count=calib_count,
                              dynamic_batch=dynamic_batch, dynamic_shape=dynamic_shape, exclude_nodes=excluded, activation_bits=activation_bits,
                              mixed=mixed, target_db=mixed_target_db, device=device)
    result = run_optimize(model, request, out=output, family=family, progress=err.is_terminal)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    if result.excluded_nodes:
        err.print(f"kept in float: {escape(', '.join(result.excluded_nodes))}", highlight=False, soft_wrap=True)
    if result.shape_check is not None:
        rewrite = result.shape_rewrite.summary() if result.shape_rewrite else "no rewrite needed"
        out.print(f"dynamic shape: {escape(rewrite)}", highlight=False)
        for check in result.shape_check.checks:
            out.print(f"  {escape(check.summary())}", highlight=False, soft_wrap=True)
    if result.batch_check is not None:
        out.print(f"dynamic batch: {result.reshapes_rewritten} Reshape shape(s) rewritten; "
                  f"{escape(result.batch_check.summary())}", highlight=False)
    out.print(f"wrote {escape(str(result.path))} ({result.path.stat().st_size / 1e6:.2f} MB) as "
              f"[bold]{escape(result.card.name)}[/] ({result.card.precision}), card {escape(str(result.card_path))}",
              highlight=False, soft_wrap=True)


def _auto(model: str, calib: Optional[Path], data: Optional[Path], max_map_drop: float, output: Optional[Path],
          calib_method: str, calib_count: int, limit: Optional[int], threads: Optional[int], family: Optional[str],
          report_dir: Optional[Path]) -> None:
    from spotdet.optimize.auto import COLUMNS, run_auto, table_rows, write_reports

    if calib is None or data is None:
        fail("--auto needs --calib DIR (calibration images) and --data DIR (COCO folder for mAP)", 2)
    if output is not None and output.suffix == ".onnx":
        fail("--auto writes several models: give -o a folder, not an .onnx file", 2)
    from spotdet.eval.coco import load_dataset

    load_dataset(data)  # a wrong --data (or annotation file) fails now, not after every variant is built
    with err.status("optimize --auto") as status:
        report = run_auto(model, calib, data, max_map_drop, output, calib_method, calib_count, limit, threads,
                          family, on_step=lambda msg: status.update(escape(msg)))
    table = Table(title=escape(f"spotdet optimize --auto {report.parent} (mAP on {data}; timed as spotdet bench "
                               f"does, on {report.timing_input})"), title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("variant", "status") else "right")
    for row in table_rows(report):
        table.add_row(*(escape(c) for c in row))
    out.print(table)
    out.print(f"chosen: [bold]{escape(report.chosen or '-')}[/] at batch {report.chosen_batch} — "
              f"{escape(report.reason)}", soft_wrap=True)
    js, md = write_reports(report, report_dir or Path.cwd())
    out.print(f"wrote {escape(str(js))} and {escape(str(md))}", highlight=False, soft_wrap=True)
