"""``distill()``: a teacher labels unlabelled images, a student is fine-tuned on them and exported.

>>> from spotdet.distill import distill
>>> result = distill("yolo11n-int8", "yolox-nano", "images/", out="distilled/")
>>> Detector(result.model_path)          # like any zoo model; eval, optimize, serve and batch take the path too

Steps and what each leaves in ``out`` (each step can be interrupted and the same call continues it):
  1. ``jobs/<teacher>-conf<c>/``: the teacher's batch job (resumable; ``results.jsonl``);
  2. ``labels/instances.json``: the pseudo-labels as a COCO file (images referenced by path, not copied);
  3. ``checkpoint.pt``: training state after each epoch (``resume=True`` continues after the last one);
  4. ``<name>.onnx`` and ``<name>.card.toml``: the distilled student.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from spotdet.distill.labels import LabelSettings, make_labels
from spotdet.distill.train import EpochStats, TrainSettings, check_student, require_torch
from spotdet.errors import UsageError
from spotdet.models.card import ModelCard

#: teacher confidence for a pseudo-label: low, to keep the objects the student scores low now (COCO mAP
#: integrates over low-confidence detections too); 0.1 scored above 0.3-with-ignore-regions in the paired run
#: (docs/distill.md, "Measuring it")
DEFAULT_CONF = 0.1
#: teacher boxes scored from here up to the confidence become ignore regions (None: none)
DEFAULT_IGNORE_CONF: float | None = None
DEFAULT_EPOCHS = 10
DEFAULT_LABEL_IOU = 0.6
#: a frozen backbone is what stopped fine-tuning from costing held-out mAP (even real COCO labels cost 0.8
#: points with only the stem frozen); soft targets did not beat hard ones at conf 0.1, so they are an option
DEFAULT_SOFT = False
DEFAULT_FREEZE = "backbone"


@dataclass
class DistillResult:
    model_path: Path
    card: ModelCard
    card_path: Path
    labels_dir: Path
    labelled_images: int
    labels: int
    labels_made_now: bool
    history: list[EpochStats] = field(default_factory=list)
    resumed_from: int = 0


class DistillReporter:
    """What ``distill`` reports while it runs; the CLI draws bars from it, the defaults do nothing."""

    def labelling(self, teacher: str) -> Any:
        """A ``spotdet.jobs.Reporter`` for the teacher's batch job (None: silent)."""
        return None

    def step(self, epoch: int, done: int, total: int, loss: float) -> None: ...
    def epoch(self, stats: EpochStats) -> None: ...


def default_name(student: ModelCard, teachers: Sequence[str]) -> str:
    teacher = "+".join(Path(t).stem if t.endswith(".onnx") else t for t in teachers)
    return f"{student.name}-distill-{teacher}"


def distill(teacher: str | Sequence[str], student: str | Path, images: str | Path, out: str | Path, *,
            imgsz: int | None = None, epochs: int = DEFAULT_EPOCHS, conf: float = DEFAULT_CONF,
            ignore_conf: float | None = DEFAULT_IGNORE_CONF,
            batch: int = 8, lr: float = 1e-4, soft: bool = DEFAULT_SOFT, freeze: str = DEFAULT_FREEZE,
            teacher_weights: Sequence[float] | None = None,
            name: str | None = None, resume: bool = False, device: str = "auto", threads: int | None = None,
            reporter: DistillReporter | None = None,
            on_epoch: Callable[[EpochStats, Any], None] | None = None) -> DistillResult:
    """Distil ``teacher`` (one model, or several merged with weighted box fusion) into ``student``.

    ``images``: anything a batch job reads (a folder, a glob, a text file listing paths). ``imgsz``: the
    student's training and export size (default and, for a fixed-shape student, only choice: its own).
    ``conf``: the teacher score a box needs to become a label; boxes scored from ``ignore_conf`` up to it become
    ignore regions (``iscrowd``: the student is not taught they are background; None: no ignore regions).
    ``soft``: matched cells learn the teacher's score as their objectness and class target, not 1. ``freeze``:
    "stem" (the first convolution) or "backbone" (every layer before the neck) keeps its pretrained weights.
    ``on_epoch(stats, module)`` runs after each
    epoch with the current (EMA) weights.
    """
    from spotdet.models.ref import resolve_model

    reporter = reporter or DistillReporter()
    teachers = (teacher,) if isinstance(teacher, (str, Path)) else tuple(teacher)
    teachers = tuple(str(t) for t in teachers)
    if not teachers:
        raise UsageError("give at least one teacher")
    if not 0 < conf < 1:
        raise UsageError(f"conf must be in (0, 1), got {conf}")
    if ignore_conf is not None and not 0 < ignore_conf < conf:
        raise UsageError(f"ignore_conf must be in (0, conf={conf}), got {ignore_conf}")
    if teacher_weights is not None and len(teacher_weights) != len(teachers):
        raise UsageError(f"{len(teacher_weights)} teacher weight(s) for {len(teachers)} teacher(s)")
    ref = resolve_model(student)
    check_student(ref.card)
    size = _student_size(ref.card, ref.path, imgsz)
    train_settings = TrainSettings(epochs=epochs, batch=batch, lr=lr, imgsz=size, soft=soft, freeze=freeze)
    train_settings.check()
    for t in teachers:
        _check_teacher(t, ref.card)
    require_torch()
    out = Path(out).expanduser().absolute()
    settings = LabelSettings(teachers, str(Path(images).expanduser().absolute()) if Path(images).exists()
                             else str(images), conf, DEFAULT_LABEL_IOU,
                             tuple(teacher_weights) if teacher_weights else None, ignore_conf)
    labels_dir, made_now = make_labels(settings, ref.card.names, out, reporter.labelling, threads)
    from spotdet.distill.train import read_samples, train

    samples = read_samples(labels_dir, ref.card.names)
    state = train(ref.card, ref.path, samples, train_settings, out, resume=resume, device=_torch_device(device),
                  on_step=reporter.step,
                  on_epoch=lambda stats, module: (reporter.epoch(stats), on_epoch and on_epoch(stats, module)))
    name = name or default_name(ref.card, teachers)
    lineage = (f"distilled from {ref.card.name}; teacher(s) {', '.join(teachers)} at conf {conf:g}; "
               f"{len(samples)} pseudo-labelled image(s) from {settings.source}; {epochs} epoch(s) at "
               f"{size[1]}x{size[0]}{', soft targets' if soft else ''}, {freeze} frozen")
    from spotdet.distill.export import export_student

    card, card_path = export_student(ref.card, ref.path, state.module.cpu(), out / f"{name}.onnx", name, lineage,
                                     probe_tensor(samples, ref.card, size))
    return DistillResult(out / f"{name}.onnx", card, card_path, labels_dir, len(samples),
                         sum(len(s.boxes) for s in samples), made_now, state.history, state.resumed_from)


def probe_tensor(samples, card: ModelCard, size: tuple[int, int]):
    """One real training image as the network sees it: what the exported file is checked on."""
    from spotdet.vision.image_io import load_image
    from spotdet.vision.preprocess import preprocess

    return preprocess(load_image(samples[0].path, exif_orientation=False)[0], size, card.preprocess)[0]


def _student_size(card: ModelCard, path: Path, imgsz: int | None) -> tuple[int, int]:
    """The training size: the student's own, or ``imgsz`` when its graph takes other sizes."""
    from spotdet.backends.onnx_tools import dims, load_onnx, real_inputs

    native = tuple(card.input_size)
    if imgsz is None or (imgsz, imgsz) == native:
        return native
    stride = max(card.decoder.get("strides", (32,)))
    if imgsz < stride or imgsz % stride:
        raise UsageError(f"--imgsz must be a multiple of {stride} (the student's largest stride), got {imgsz}")
    in_dims = dims(real_inputs(load_onnx(path, check=False, weights=False))[0])
    if all(isinstance(d, int) for d in in_dims[2:]):
        raise UsageError(f"{card.name} has a fixed input of {native[1]}x{native[0]}; --imgsz {imgsz} would train "
                         f"a model that cannot run at that size (use --imgsz {native[1]}, or a variable-size student)")
    return (imgsz, imgsz)


def _check_teacher(teacher: str, student: ModelCard) -> None:
    """The teacher must exist and speak the student's classes (matched by name), before any work."""
    from spotdet.models.ref import resolve_card

    card, _ = resolve_card(teacher)
    shared = set(card.names) & set(student.names)
    if not shared:
        raise UsageError(f"teacher {card.name} and student {student.name} share no class names; the student can "
                         "only learn classes it has")


def _torch_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise UsageError(f"device must be auto, cpu or cuda for training, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda asked for, but PyTorch sees no CUDA GPU")
    return device
