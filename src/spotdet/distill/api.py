"""``distill()``: a teacher labels unlabelled images, a student is fine-tuned on them and exported.

>>> from spotdet.distill import distill
>>> result = distill("yolo11n-int8", "yolox-nano", "images/", out="distilled/")
>>> Detector(result.model_path)          # like any zoo model; eval, optimize, serve and batch take the path too

Steps and what each leaves in ``out`` (each step can be interrupted and the same call continues it):
  1. ``jobs/<teacher>-conf<c>/``: the teacher's batch job (resumable; ``results.jsonl``);
  2. ``labels/instances.json``: the pseudo-labels as a COCO file (images referenced by path, not copied);
  3. (method "dense") ``teacher-maps/``: the teacher's per-cell responses on the student's grid, one file per
     image (``dense.py``); a teacher with a fixed input gets a variable-size copy in ``teacher/`` first;
  4. ``checkpoint.pt``: training state after each epoch (``resume=True`` continues after the last one);
  5. ``<name>.onnx`` and ``<name>.card.toml``: the distilled student.
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
#: one epoch: on both held-out halves the dense method scored best after its first epoch and lost ground after
#: (docs/distill.md); with ``val`` more epochs are safe, the best is kept
DEFAULT_EPOCHS = 1
DEFAULT_LABEL_IOU = 0.6
#: a frozen backbone is what stopped fine-tuning from costing held-out mAP (even real COCO labels cost 0.8
#: points with only the stem frozen); soft targets did not beat hard ones at conf 0.1, so they are an option
DEFAULT_SOFT = False
DEFAULT_FREEZE = "backbone"
#: dense response distillation scored above box pseudo-labels on both held-out halves (docs/distill.md)
DEFAULT_METHOD = "dense"


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
    val: Any = None  # validate.ValReport when a labelled sample was given


class DistillReporter:
    """What ``distill`` reports while it runs; the CLI draws bars from it, the defaults do nothing."""

    def labelling(self, teacher: str) -> Any:
        """A ``spotdet.jobs.Reporter`` for the teacher's batch job (None: silent)."""
        return None

    def maps(self, done: int, total: int) -> None:
        """Progress of the dense method's teacher responses (images done of total)."""

    def step(self, epoch: int, done: int, total: int, loss: float) -> None: ...
    def val(self, epoch: int, score: float, before: float) -> None:
        """The student's mAP on the labelled sample after ``epoch`` (``before``: before training)."""

    def epoch(self, stats: EpochStats) -> None: ...


def default_name(student: ModelCard, teachers: Sequence[str]) -> str:
    teacher = "+".join(Path(t).stem if t.endswith(".onnx") else t for t in teachers)
    return f"{student.name}-distill-{teacher}"


def distill(teacher: str | Sequence[str], student: str | Path, images: str | Path, out: str | Path, *,
            imgsz: int | None = None, epochs: int = DEFAULT_EPOCHS, conf: float = DEFAULT_CONF,
            ignore_conf: float | None = DEFAULT_IGNORE_CONF,
            batch: int = 8, lr: float = 1e-4, soft: bool = DEFAULT_SOFT, freeze: str = DEFAULT_FREEZE,
            method: str = DEFAULT_METHOD, val: str | Path | None = None,
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
    ``method``: "dense" (the student imitates the teacher's per-cell class scores and boxes; one teacher, of a
    family whose head ``dense.py`` reads) or "boxes" (YOLOX's own loss on the pseudo-labels).
    ``val``: a labelled COCO folder; the student is scored on it before training and after every epoch, and
    the best epoch's weights are exported (``validate.py``).
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
    train_settings = TrainSettings(epochs=epochs, batch=batch, lr=lr, imgsz=size, soft=soft, freeze=freeze,
                                   method=method)
    train_settings.check()
    for t in teachers:
        _check_teacher(t, ref.card)
    if method == "dense":
        _check_dense(teachers)
    val_data = None
    if val is not None:
        from spotdet.eval.coco import load_dataset

        val_data = load_dataset(val)  # a wrong --val fails now, not after labelling and the first epoch
    require_torch()
    torch_device = _torch_device(device)
    out = Path(out).expanduser().absolute()
    settings = LabelSettings(teachers, str(Path(images).expanduser().absolute()) if Path(images).exists()
                             else str(images), conf, DEFAULT_LABEL_IOU,
                             tuple(teacher_weights) if teacher_weights else None, ignore_conf)
    labels_dir, made_now = make_labels(settings, ref.card.names, out, reporter.labelling, threads)
    from spotdet.distill.train import read_samples, train

    samples = read_samples(labels_dir, ref.card.names)
    maps = (teacher_maps(teachers[0], ref.card, size, samples, out, threads, reporter.maps)
            if method == "dense" else None)
    probe = probe_tensor(samples, ref.card, size)
    picker = None
    if val is not None:
        from spotdet.distill.validate import EpochPicker

        picker = EpochPicker(val_data, str(val), ref, out, probe, threads)

    def after_epoch(stats: EpochStats, module: Any) -> None:
        reporter.epoch(stats)
        if picker is not None:
            reporter.val(stats.epoch, picker.after_epoch(stats.epoch, module), picker.report.before)
        if on_epoch:
            on_epoch(stats, module)

    state = train(ref.card, ref.path, samples, train_settings, out, resume=resume, device=torch_device,
                  maps=maps, on_step=reporter.step, on_epoch=after_epoch)
    if picker is not None and (best := picker.best_weights()) is not None:
        state.module.load_state_dict(best)
    name = name or default_name(ref.card, teachers)
    lineage = (f"distilled from {ref.card.name}; teacher(s) {', '.join(teachers)} at conf {conf:g}; "
               f"{len(samples)} pseudo-labelled image(s) from {settings.source}; {epochs} epoch(s) at "
               f"{size[1]}x{size[0]}, {_method_note(method, soft, maps)}, {freeze} frozen"
               + (f"; {picker.report.note()}" if picker is not None else ""))
    from spotdet.distill.export import export_student

    card, card_path = export_student(ref.card, ref.path, state.module.cpu(), out / f"{name}.onnx", name, lineage,
                                     probe)
    return DistillResult(out / f"{name}.onnx", card, card_path, labels_dir, len(samples),
                         sum(len(s.boxes) for s in samples), made_now, state.history, state.resumed_from,
                         picker.report if picker is not None else None)


def _method_note(method: str, soft: bool, maps) -> str:
    if maps is not None:
        return f"dense responses of the teacher at {maps.k}x the student's input"
    return "pseudo-box labels" + (" with soft targets" if soft else "")


def _check_dense(teachers: tuple[str, ...]) -> None:
    from spotdet.distill.dense import check_dense_teacher
    from spotdet.models.ref import resolve_card

    if len(teachers) != 1:
        raise UsageError(f"the dense method learns one teacher's responses; {len(teachers)} teachers given (use "
                         "method 'boxes' to merge several with weighted box fusion)")
    check_dense_teacher(resolve_card(teachers[0])[0])


def teacher_maps(teacher: str, student: ModelCard, size: tuple[int, int], samples, out: Path,
                 threads: int | None, on_progress: Callable[[int, int], None]):
    """The dense targets of every training image (computed now for images that have none stored)."""
    from spotdet.distill.dense import MAPS_DIR, TeacherMaps, scale_factor
    from spotdet.distill.labels import folder_name
    from spotdet.models.ref import resolve_model
    from spotdet.vision.image_io import load_image

    ref = resolve_model(teacher)
    k = scale_factor(tuple(ref.card.input_size), size)
    path = _variable_size_teacher(ref, (size[0] * k, size[1] * k), out)
    folder = out / MAPS_DIR / f"{folder_name(ref.card.name)}-{size[1] * k}x{size[0] * k}"
    maps = TeacherMaps(ref.card, path, student, size, k, folder, threads)
    maps.ensure([s.path for s in samples], lambda p: load_image(p, exif_orientation=False)[0], on_progress)
    return maps


def _variable_size_teacher(ref, size: tuple[int, int], out: Path) -> Path:
    """A teacher file that runs at ``size``: its own when it does (natively or with a symbolic input), else a
    variable-size copy made (and proven) once by ``spotdet optimize --dynamic-shape``."""
    from spotdet.backends.onnx_tools import load_onnx
    from spotdet.optimize import OptimizeRequest, optimize
    from spotdet.optimize.dynamic_shape import has_dynamic_shape

    if tuple(ref.card.input_size) == size or has_dynamic_shape(load_onnx(ref.path, check=False, weights=False)):
        return ref.path
    target = out / "teacher" / f"{Path(ref.path).stem}-dynshape.onnx"
    if not target.is_file():
        optimize(ref.path, OptimizeRequest(dynamic_shape=True), out=target, progress=False)
    return target


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
    """The torch device to train on: ``cuda:N`` (N from ``--gpu`` / $SPOTDET_GPU, as for inference) or cpu."""
    import torch

    from spotdet.backends.onnxruntime import default_gpu

    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"device must be auto, cpu or cuda for training, got {device!r}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise UsageError("device cuda asked for, but PyTorch sees no CUDA GPU")
    index = default_gpu()
    if index >= torch.cuda.device_count():
        raise UsageError(f"GPU {index} asked for, but PyTorch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return f"cuda:{index}"
