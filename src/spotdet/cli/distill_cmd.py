"""``spotdet distill``: a teacher labels unlabelled images, a cheap student is fine-tuned on them and exported."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from spotdet.cli.main import app, err, handle_errors, out
from spotdet.cli.options import GpuOpt

DISTILL_CONF = 0.1  # spotdet.distill.api.DEFAULT_CONF, repeated so --help does not import numpy/OpenCV
DISTILL_EPOCHS = 1  # spotdet.distill.api.DEFAULT_EPOCHS
DISTILL_IGNORE_CONF = 0.0  # spotdet.distill.api.DEFAULT_IGNORE_CONF (None: 0 here)
DISTILL_METHOD = "dense"  # spotdet.distill.api.DEFAULT_METHOD


class _Bars:
    """Progress bars with ETA, one per teacher's labelling job and one per epoch (a distill ``DistillReporter``)."""

    def __init__(self, quiet: bool) -> None:
        from spotdet.progress import count_progress

        self.quiet = quiet
        self.bars = count_progress(err, disable=quiet)
        self.task = None
        self.epoch_no = 0

    def labelling(self, teacher: str) -> Any:
        from spotdet.jobs import Reporter

        bars = self

        class _Job(Reporter):
            def message(self, text: str) -> None:
                if not bars.quiet:
                    err.print(escape(text), highlight=False, soft_wrap=True)

            def start(self, total: int, done: int) -> None:
                bars.bars.start()
                bars.task = bars.bars.add_task(f"labelling with {teacher}", total=total, completed=done)

            def update(self, done: int) -> None:
                bars.bars.update(bars.task, completed=done)

            def finish(self) -> None:
                bars.bars.stop()
                bars.task = None

        return _Job()

    def maps(self, done: int, total: int) -> None:
        if self.task is None:
            self.bars.start()
            self.task = self.bars.add_task("teacher responses", total=total)
        self.bars.update(self.task, completed=done)
        if done >= total:
            self.bars.stop()
            self.bars.remove_task(self.task)
            self.task = None

    def val(self, epoch: int, score: float, before: float) -> None:
        if not self.quiet:
            err.print(f"epoch {epoch}: mAP@0.5:0.95 on --val {score:.2f} (before training {before:.2f})",
                      highlight=False)

    def step(self, epoch: int, done: int, total: int, loss: float) -> None:
        if self.epoch_no != epoch:
            self.bars.start()
            self.task = self.bars.add_task(f"epoch {epoch}", total=total)
            self.epoch_no = epoch
        self.bars.update(self.task, completed=done, description=f"epoch {epoch} loss {loss:.3f}")

    def epoch(self, stats) -> None:
        self.bars.stop()
        if self.task is not None:
            self.bars.remove_task(self.task)
            self.task = None
        if not self.quiet:
            err.print(f"epoch {stats.epoch}: loss {stats.loss:.3f} (box {stats.iou:.3f}, obj {stats.obj:.3f}, "
                      f"cls {stats.cls:.3f}), {stats.images} images in {stats.seconds:.0f} s", highlight=False)


@app.command()
@handle_errors
def distill(
    teacher: list[str] = typer.Option(..., "--teacher", "-t", help="Teacher model (zoo name or .onnx); repeat "
                                      "for an ensemble merged with weighted box fusion."),
    student: str = typer.Option(..., "--student", "-s", help="Student to fine-tune (zoo name or .onnx; YOLOX)."),
    images: str = typer.Option(..., "--images", help="Unlabelled images: a folder, a glob or a list file."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the labels, checkpoint and the model."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", min=32, help="Student input size (default: its own)."),
    method: str = typer.Option(DISTILL_METHOD, "--method", help="dense: imitate the teacher's per-cell scores and "
                               "boxes (one teacher); boxes: train on its pseudo-labels (several teachers "
                               "allowed)."),
    val: Optional[Path] = typer.Option(None, "--val", help="A labelled COCO folder of your images: the student "
                                       "is scored on it before and after each epoch, and the best epoch kept."),
    epochs: int = typer.Option(DISTILL_EPOCHS, "--epochs", min=1, help="Training epochs over the images (with --val, "
                                "try more: the best epoch is kept)."),
    conf: float = typer.Option(DISTILL_CONF, "--conf", min=0.01, max=0.99, help="Teacher score a box needs to "
                               "become a pseudo-label."),
    ignore_conf: float = typer.Option(DISTILL_IGNORE_CONF, "--ignore-conf", min=0.0, max=0.99, help="Teacher "
                                      "boxes scored from here up to --conf become ignore regions (iscrowd), not "
                                      "background; 0: none."),
    batch: int = typer.Option(8, "--batch", min=1, help="Images per training step."),
    lr: float = typer.Option(1e-4, "--lr", min=1e-7, max=0.1, help="Peak learning rate (SGD, cosine schedule)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the distilled model (default: "
                                       "<student>-distill-<teacher>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the training checkpointed in --out."),
    device: str = typer.Option("auto", "--device", help="Training device: auto | cpu | cuda."),
    gpu: Optional[int] = GpuOpt,  # exported as $SPOTDET_GPU by its callback, read when training picks cuda:N
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for the teacher's job."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or messages."),
) -> None:
    """Teach STUDENT from TEACHER on unlabelled images; writes a model Detector, eval, serve and batch load."""
    from spotdet.distill import distill as run_distill

    result = run_distill(teacher, student, images, out_dir, imgsz=imgsz, epochs=epochs, conf=conf,
                         ignore_conf=ignore_conf or None, batch=batch, method=method, val=val,
                         lr=lr, name=name, resume=resume, device=device, threads=threads, reporter=_Bars(quiet))
    state = "made" if result.labels_made_now else "kept (same settings; edit or delete it to relabel)"
    out.print(f"pseudo-labels {state}: {escape(str(result.labels_dir / 'instances.json'))} "
              f"({result.labels} boxes on {result.labelled_images} images)", highlight=False, soft_wrap=True)
    out.print(f"wrote {escape(str(result.model_path))} as [bold]{escape(result.card.name)}[/], card "
              f"{escape(str(result.card_path))}", highlight=False, soft_wrap=True)
    if result.val is not None:
        out.print(escape(result.val.note()), highlight=False, soft_wrap=True)
        if not result.val.helped:
            err.print(f"[yellow]warning:[/] no epoch scored above the student before training on {escape(str(val))}"
                      f": distillation did not help on these images; {escape(student)} as it was is as good",
                      highlight=False, soft_wrap=True)
    out.print(f"compare: spotdet eval -m {escape(str(result.model_path))} --data LABELLED_DIR", highlight=False,
              soft_wrap=True)
