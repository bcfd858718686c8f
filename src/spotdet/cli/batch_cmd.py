"""``spotdet batch run|resume|status``: sharded, resumable, preemption-safe bulk detection."""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from spotdet.cli.main import EXIT_IO, app, err, fail, handle_errors, out
from spotdet.cli.options import (BackendOpt, ClassesOpt, DeviceOpt, FamilyOpt, GpuOpt, ImgszOpt, IouOpt,
                                 MaxPixelsOpt, ModelOpt, TileOpt, VidStrideOpt, max_pixels_limit)
from spotdet.eval.coco import EVAL_CONF, EVAL_MAX_DET
from spotdet.jobs import EXIT_PREEMPTED, JobSpec, Reporter, RunOptions, RunSummary, job_status, run_job
from spotdet.options import DEFAULT_CONF, DEFAULT_MAX_DET, DetectOptions

batch_app = typer.Typer(no_args_is_help=True, help=(
    "Bulk detection: sharded, resumable jobs that survive preemption (local workers or Ray). "
    f"Exit codes: 0 done, 1 failure, 2 usage, {EXIT_IO} a file or the job database could not be read or written "
    f"(disk full, read-only, damaged), {EXIT_PREEMPTED} stopped by SIGTERM/Ctrl-C (resume to continue)."))
app.add_typer(batch_app, name="batch")

QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bar or messages.")
JsonOpt = typer.Option(False, "--json", help="Print the summary as JSON.")

# How a run executes (RunOptions, one flag per field): `run` and `resume` both take them, through
# ``_with_run_options``, which adds them to a command and hands it one RunOptions.
_RUN_FLAGS: dict[str, tuple[Any, Any]] = {
    "workers": (int, typer.Option(1, "--workers", "-w", min=1, help="Worker processes (local) or actors (Ray).")),
    "engine": (str, typer.Option("local", "--engine", help="local (worker processes) | ray (Ray actors).")),
    "ray_address": (Optional[str], typer.Option(None, "--ray-address", help="Ray cluster address (e.g. "
                                                "ray://head:10001, auto); default: a local Ray instance.")),
    "gpus_per_worker": (Optional[float], typer.Option(None, "--gpus-per-worker", min=0.0, help="Ray GPU request "
                                                      "per actor (default: 1 with --device cuda/tensorrt, else 0).")),
    "device": (str, DeviceOpt),
    "backend": (str, BackendOpt),
    "threads": (Optional[int], typer.Option(None, "--threads", min=1, help="ONNX Runtime threads per worker "
                                            "(default: cores / workers; 1 per Ray actor).")),
    "grace": (float, typer.Option(20.0, "--grace", min=0.0, help="Seconds the shards in flight get to finish "
                                  "after SIGTERM before they are abandoned (redone on resume).")),
}


#: flags that act through the environment, not RunOptions: ``--gpu`` exports $SPOTDET_GPU (its callback), which
#: the worker processes inherit and their backends read
_ENV_FLAGS: dict[str, tuple[Any, Any]] = {"gpu": (Optional[int], GpuOpt)}
_ALL_FLAGS = {**_RUN_FLAGS, **_ENV_FLAGS}


def _with_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Replace ``command``'s ``opts: RunOptions`` parameter by the RunOptions flags; call it with them as one
    RunOptions. (Typer reads a command's options from its signature, so the shared flags go into it here.)"""
    signature = inspect.signature(command)
    flags = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
             for name, (annotation, option) in _ALL_FLAGS.items()]
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        params.extend(flags if param.name == "opts" else [param.replace(kind=inspect.Parameter.KEYWORD_ONLY)])

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        for name in _ENV_FLAGS:
            kwargs.pop(name)
        opts = RunOptions(**{name: kwargs.pop(name) for name in _RUN_FLAGS})
        return command(opts=opts, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "opts"},
                               **{name: annotation for name, (annotation, _) in _ALL_FLAGS.items()}}
    return wrapper


class _RateColumn(ProgressColumn):
    """Images per second over rich's recent-speed window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} img/s" if speed else "   -- img/s", style="progress.data.speed")


class _RichReporter(Reporter):
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=err, disable=quiet, transient=False)
        self.task = None

    def message(self, text: str) -> None:
        if not self.quiet:
            err.print(escape(text), highlight=False, soft_wrap=True)

    def warning(self, text: str) -> None:  # shown with --quiet and --json too
        err.print(f"[bold yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)

    def start(self, total: int, done: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("batch", total=total, completed=done)

    def update(self, done: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done)

    def finish(self) -> None:
        self.progress.stop()


def _report(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "state": summary.state, "out_dir": str(summary.out_dir), "images_total": summary.images_total,
            "images_done": summary.images_done, "images_ok": summary.images_ok,
            "images_failed": summary.images_failed, "run_images": summary.run_images,
            "run_seconds": round(summary.run_seconds, 3), "images_per_s": round(summary.images_per_s, 2),
            "outputs": [str(p) for p in summary.outputs], "shard_errors": summary.shard_errors}))
    else:
        out.print(f"{summary.state}: {summary.images_done}/{summary.images_total} image(s) done "
                  f"({summary.images_ok} ok, {summary.images_failed} failed); this run {summary.run_images} "
                  f"image(s) in {summary.run_seconds:.1f} s ({summary.images_per_s:.1f} img/s)", highlight=False)
        for path in summary.outputs:
            out.print(f"wrote {escape(str(path))}", highlight=False)
        if summary.images_failed:
            out.print(f"failed images are listed by `spotdet batch status {escape(str(summary.out_dir))}`",
                      highlight=False)
    if summary.state == "preempted":
        err.print(f"stopped on signal after committing the shards in flight; continue with "
                  f"`spotdet batch resume {escape(str(summary.out_dir))}`", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_PREEMPTED)
    if summary.state == "incomplete":
        first = summary.shard_errors[0] if summary.shard_errors else (None, "unknown")
        fail(f"{len(summary.shard_errors)} shard(s) failed (first: shard {first[0]}: {first[1]}); "
             f"`spotdet batch resume {summary.out_dir}` retries them")


@batch_app.command("run")
@handle_errors
@_with_run_options
def run_command(
    source: str = typer.Argument(..., help="A folder (recursive), a glob ('imgs/**/*.jpg'), a text file "
                                           "listing image paths or URLs, a URL, or a video (one item per frame)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="RESULTS_DIR: job database, shard files, outputs."),
    model: str = ModelOpt,
    shard_size: int = typer.Option(64, "--shard-size", min=1, help="Images per shard (unit of commit/redo)."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (one line per image) | coco (COCO results JSON)."),
    save_annotated: bool = typer.Option(False, "--save-annotated", help="Also write annotated images to "
                                                                        "RESULTS_DIR/annotated."),
    conf: Optional[float] = typer.Option(None, "--conf", min=0.0, max=0.999, help="Minimum confidence (default "
                                         f"{DEFAULT_CONF}; with --format coco {EVAL_CONF}, the low threshold "
                                         "COCO mAP needs: a higher one drops the low-score tail and lowers mAP)."),
    iou: float = IouOpt,
    max_det: Optional[int] = typer.Option(None, "--max-det", min=1, help="Most detections kept per image (default "
                                          f"{DEFAULT_MAX_DET}; with --format coco {EVAL_MAX_DET}, all COCO scores)."),
    classes: Optional[str] = ClassesOpt,
    imgsz: Optional[str] = ImgszOpt,
    tile: bool = TileOpt,
    vid_stride: int = VidStrideOpt,
    max_pixels: int = MaxPixelsOpt,
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="COCO instances.json giving image "
                                               "and category ids (coco format; found beside SOURCE if omitted)."),
    exif_orientation: Optional[bool] = typer.Option(None, "--exif-orientation/--no-exif-orientation",
                                                    help="Apply EXIF rotation (default: yes for jsonl, no for "
                                                         "coco, whose boxes refer to stored pixels)."),
    family: Optional[str] = FamilyOpt,
    opts: RunOptions = ...,  # --workers --engine ... --grace, added by _with_run_options
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Detect objects in every image of SOURCE as a sharded job in RESULTS_DIR.

    Running the same command again on an unfinished job continues it.
    """
    if fmt == "coco":  # a results file is for scoring: keep what `spotdet eval` keeps
        conf = EVAL_CONF if conf is None else conf
        max_det = EVAL_MAX_DET if max_det is None else max_det
    options = DetectOptions.create(conf=conf, iou=iou, max_det=max_det, classes=classes, imgsz=imgsz, tile=tile)
    spec = JobSpec(source=source, model=model, family=family, options=options, shard_size=shard_size, fmt=fmt,
                   annotations=str(annotations) if annotations else None, exif_orientation=exif_orientation,
                   save_annotated=save_annotated, max_pixels=max_pixels_limit(max_pixels), vid_stride=vid_stride)
    _report(run_job(out_dir, spec, opts, _RichReporter(quiet or as_json)), as_json)


@batch_app.command("resume")
@handle_errors
@_with_run_options
def resume_command(
    out_dir: Path = typer.Argument(..., help="RESULTS_DIR of an interrupted job."),
    opts: RunOptions = ...,  # --workers --engine ... --grace, added by _with_run_options
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Continue the job in RESULTS_DIR: redo shards not committed, retry failed shards, then merge."""
    _report(run_job(out_dir, None, opts, _RichReporter(quiet or as_json)), as_json)


@batch_app.command("status")
@handle_errors
def status_command(
    out_dir: Path = typer.Argument(..., help="RESULTS_DIR of a job."),
    failures: int = typer.Option(20, "--failures", min=0, help="How many failed images to list (0: all)."),
    as_json: bool = JsonOpt,
) -> None:
    """Print a job's progress, throughput and failed images (safe while it runs)."""
    st = job_status(out_dir, failures_limit=failures or None)
    if as_json:
        print(json.dumps(st.to_dict(), indent=2))
        return
    spec = st.spec
    out.print(f"job {escape(str(st.out_dir))}: [bold]{st.state}[/]" + (f" (pid {st.pid})" if st.pid else ""),
              highlight=False)
    out.print(f"  {escape(str(spec.get('model')))} on {escape(str(spec.get('source')))}, format "
              f"{spec.get('fmt')}, {spec.get('shard_size')} image(s) per shard", highlight=False)
    if st.fingerprint:
        out.print(f"  model file {escape(str(st.fingerprint['model']['path']))}, sha256 {st.fingerprint['sha256']}",
                  highlight=False)
    table = Table(show_header=True, header_style="bold")
    for col in ("images", "done", "ok", "failed", "shards done", "runs", "run time", "img/s", "ETA"):
        table.add_column(col, justify="right")
    total_shards = sum(st.shards.values())
    table.add_row(str(st.images_total), str(st.images_done), str(st.images_ok), str(st.images_failed),
                  f"{st.shards.get('done', 0)}/{total_shards}", str(st.runs), f"{st.seconds:.1f} s",
                  f"{st.images_per_s:.1f}", "-" if st.eta_s is None else f"{st.eta_s:.0f} s")
    out.print(table)
    for path in st.outputs:
        out.print(f"output: {escape(path)}", highlight=False)
    for shard_id, message in st.shard_errors:
        out.print(f"[red]shard {shard_id} failed:[/] {escape(message or '')}", highlight=False)
    if st.images_failed:
        shown = len(st.failures)
        out.print(f"failed images ({st.images_failed}" + (f", first {shown}" if shown < st.images_failed else "")
                  + "):", highlight=False)
        for f in st.failures:
            line = f.reason if f.reason.startswith(f.path) else f"{f.path}: {f.reason}"
            out.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    if st.state == "incomplete":
        out.print(f"continue with `spotdet batch resume {escape(str(st.out_dir))}`", highlight=False)
