"""Fine-tune the student on the pseudo-labels with PyTorch (the ``distill`` extra): never from scratch.

The student's own ONNX file is the starting point: its graph is made batchable (``optimize.dynamic_batch``:
exporters bake a batch of 1 into Reshape shapes) and converted into a trainable ``torch.fx`` module by
``onnx2torch``, whose parameters are the file's weights, named after the ONNX nodes that use them (which is what
lets ``export.py`` write them back). Images go through the student's own ``PreprocessSpec`` and the same
``resize_to_input`` the Detector uses, so training sees exactly the tensors inference will.

Crash safety: after every epoch the whole state (weights, their EMA, optimizer, schedule, loss history) is
written atomically to ``checkpoint.pt``; ``resume`` continues after the last finished epoch, with the same
shuffling (each epoch's order is seeded by its number), so a killed run resumed gives the run it would have been.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from spotdet.atomic import atomic_path
from spotdet.errors import UnsupportedModelError, UsageError
from spotdet.models.card import ModelCard
from spotdet.vision.image_io import load_image
from spotdet.vision.preprocess import resize_to_input, to_tensor

CHECKPOINT_NAME = "checkpoint.pt"
#: student families that can be trained, with their head's strides key in the card's decoder parameters
TRAINABLE_FAMILIES = ("yolox",)
#: gradient-norm ceiling: pseudo-labels are noisy, and one bad batch must not undo the pretrained weights
CLIP_NORM = 50.0
FREEZE_CHOICES = ("stem", "backbone")
#: what the student learns from: the pseudo-labels' boxes (YOLOX's own loss) or the teacher's per-cell
#: responses (``dense.py``, ``loss.dense_loss``)
METHODS = ("dense", "boxes")


def require_torch() -> None:
    """Fail with the install line (MissingExtraError, exit code 2), not an ImportError, when the extra is missing."""
    from spotdet.extras import require

    require("distill", "training the student")


@dataclass(frozen=True)
class TrainSettings:
    """What defines a training run; a resumed run must have the same (its checkpoint stores them)."""

    epochs: int = 10
    batch: int = 8
    lr: float = 1e-4
    weight_decay: float = 5e-4
    ema_decay: float = 0.99
    flip: bool = True
    seed: int = 0
    imgsz: tuple[int, int] = (416, 416)
    #: BCE targets of matched cells scaled by the teacher's box score (soft) instead of 1 (hard)
    soft: bool = False
    #: what stays as pretrained: "stem" (the first convolution) or "backbone" (every layer before the neck)
    freeze: str = "backbone"
    method: str = "boxes"

    def check(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.freeze not in FREEZE_CHOICES:
            raise UsageError(f"freeze must be one of {', '.join(FREEZE_CHOICES)}, got {self.freeze!r}")
        if self.epochs < 1 or self.batch < 1:
            raise UsageError(f"epochs and batch must be >= 1, got {self.epochs} and {self.batch}")
        if not (0 < self.lr < 1) or not (0 <= self.ema_decay < 1):
            raise UsageError(f"lr must be in (0, 1) and ema_decay in [0, 1), got {self.lr} and {self.ema_decay}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "imgsz": list(self.imgsz)}


@dataclass
class EpochStats:
    epoch: int  # 1-based
    loss: float
    iou: float
    obj: float
    cls: float
    seconds: float
    images: int


@dataclass
class TrainState:
    """The trained module (the EMA of the weights: what is exported) and the loss history."""

    module: Any
    history: list[EpochStats] = field(default_factory=list)
    resumed_from: int = 0


@dataclass
class Sample:
    path: str
    boxes: np.ndarray  # (n, 4) xyxy, original pixels
    classes: np.ndarray  # (n,) student class ids
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # iscrowd regions, xyxy
    scores: np.ndarray | None = None  # (n,) teacher score per box; None: all 1 (human labels)


def read_samples(labels_dir: Path, class_names: tuple[str, ...]) -> list[Sample]:
    """The labelled images of a COCO folder (boxes by the student's class indices; ``iscrowd`` boxes as ignore
    regions), through the one annotation reader."""
    from spotdet.eval.coco import category_map, load_dataset

    dataset = load_dataset(labels_dir)
    index_of = {cat: i for i, cat in category_map(dict(enumerate(class_names)), dataset.categories).items()}
    boxes: dict[int, list[list[float]]] = {im["id"]: [] for im in dataset.images}
    classes: dict[int, list[int]] = {im["id"]: [] for im in dataset.images}
    ignore: dict[int, list[list[float]]] = {im["id"]: [] for im in dataset.images}
    scores: dict[int, list[float]] = {im["id"]: [] for im in dataset.images}
    for ann in dataset.data["annotations"]:
        if ann["category_id"] in index_of and ann["bbox"][2] > 0 and ann["bbox"][3] > 0:
            x, y, w, h = ann["bbox"]
            if ann["iscrowd"]:
                ignore[ann["image_id"]].append([x, y, x + w, y + h])
                continue
            boxes[ann["image_id"]].append([x, y, x + w, y + h])
            classes[ann["image_id"]].append(index_of[ann["category_id"]])
            scores[ann["image_id"]].append(float(ann.get("score", 1.0)))  # a box a person added has none: sure
    return [Sample(str(dataset.image_dir / im["file_name"]), _xyxy_array(boxes[im["id"]]),
                   np.array(classes[im["id"]], np.int64), _xyxy_array(ignore[im["id"]]),
                   np.array(scores[im["id"]], np.float32)) for im in dataset.images]


def _xyxy_array(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, np.float32).reshape(-1, 4)


class Batches:
    """Letterboxed, optionally flipped tensors and targets, exactly as the Detector prepares its input.

    Targets are each image's boxes, or with ``maps`` (a ``dense.TeacherMaps``) its dense teacher responses,
    stacked into one ``[B, N, 4 + C]`` tensor.
    """

    def __init__(self, samples: list[Sample], card: ModelCard, size_hw: tuple[int, int], flip: bool,
                 maps: Any = None) -> None:
        self.samples, self.card, self.size_hw, self.flip, self.maps = samples, card, size_hw, flip, maps
        self._images: dict[str, np.ndarray] = {}

    def image(self, path: str) -> np.ndarray:
        if path not in self._images:  # decoded once: a few hundred images fit in memory, and decoding is slow
            self._images[path] = load_image(path, exif_orientation=False)[0]
        return self._images[path]

    def make(self, indices: list[int], rng: random.Random):
        if self.maps is not None:
            return self._make_dense(indices, rng)
        import torch

        canvases, targets = [], []
        for i in indices:
            sample = self.samples[i]
            img, boxes, ignore = self.image(sample.path), sample.boxes.copy(), sample.ignore.copy()
            if self.flip and rng.random() < 0.5:
                img = img[:, ::-1]
                for b in (boxes, ignore):
                    b[:, [0, 2]] = img.shape[1] - b[:, [2, 0]]
            canvas, t = resize_to_input(np.ascontiguousarray(img), self.size_hw, self.card.preprocess)
            scale = np.array([t.scale_x, t.scale_y] * 2, np.float32)
            shift = np.array([t.pad_x, t.pad_y] * 2, np.float32)
            canvases.append(canvas)
            scores = sample.scores if sample.scores is not None else np.ones(len(boxes), np.float32)
            targets.append((torch.from_numpy(boxes * scale + shift), torch.from_numpy(sample.classes),
                            torch.from_numpy(ignore * scale + shift), torch.from_numpy(scores)))
        return torch.from_numpy(to_tensor(canvases, self.card.preprocess)), targets

    def _make_dense(self, indices: list[int], rng: random.Random):
        import torch

        from spotdet.distill.dense import mirror

        canvases, targets = [], []
        for i in indices:
            path = self.samples[i].path
            img, maps = self.image(path), self.maps.load(path)
            flip = self.flip and rng.random() < 0.5
            canvas, t = resize_to_input(np.ascontiguousarray(img[:, ::-1] if flip else img), self.size_hw,
                                        self.card.preprocess)
            if flip:  # the picture fills the letterbox's first scale_x * width columns
                maps = mirror(maps, round(t.scale_x * img.shape[1]), self.size_hw, self.maps.strides)
            canvases.append(canvas)
            targets.append(torch.from_numpy(maps))
        return torch.from_numpy(to_tensor(canvases, self.card.preprocess)), torch.stack(targets)


def trainable_module(onnx_path: Path):
    """The student's ONNX graph as a trainable torch module holding the file's weights."""
    from onnx2torch import convert

    from spotdet.backends.onnx_tools import load_onnx
    from spotdet.optimize.dynamic_batch import has_dynamic_batch, make_batch_dynamic

    graph = load_onnx(onnx_path)
    if not has_dynamic_batch(graph):
        graph, _ = make_batch_dynamic(graph)
    try:
        module = convert(graph)
    except Exception as exc:  # onnx2torch raises bare KeyError/NotImplementedError on graphs it cannot read
        raise UnsupportedModelError(f"{onnx_path.name}: onnx2torch cannot convert this graph into a trainable "
                                    f"module ({type(exc).__name__}: {exc})") from None
    if not any(p.numel() for p in module.parameters()):
        raise UnsupportedModelError(f"{onnx_path.name}: the converted graph has no trainable weights")
    return module


@contextlib.contextmanager
def quiet_forward() -> Iterator[None]:
    """Runs of a converted module without torch's warning about onnx2torch's Slice (it indexes with a list,
    which torch flags on every forward): nothing the user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
        yield


def freeze_stem(module) -> str | None:
    """Freeze the first convolution (the one that sees raw pixels); returns its name.

    The student takes pixels in 0-255 (YOLOX does not normalise), so its stem's weight gradient is about a
    hundred times any other layer's: one SGD step at a fine-tuning rate rewrote it and the loss jumped tenfold
    in our runs. Low-level filters are what a fine-tune needs least, so they stay as pretrained.
    """
    import torch

    for node in module.graph.nodes:
        if node.op == "call_module" and isinstance(module.get_submodule(node.target), torch.nn.Conv2d):
            for p in module.get_submodule(node.target).parameters():
                p.requires_grad_(False)
            return str(node.target)
    return None


def freeze_backbone(module) -> list[str]:
    """Freeze every convolution before the neck's first upsampling (``Resize``): the backbone, in graph order.

    The student was trained on all of COCO with real labels; a few hundred pseudo-labelled images are too few to
    improve its features, only to bend them: the backbone's gradients are 0.1-10 times its weights' norm (the
    head's 0.002-0.2), and training it lost held-out mAP even on real COCO labels and at lr 1e-5
    (docs/distill.md). Training the neck and head alone adapts what the student reports.
    """
    import torch

    frozen = []
    for node in module.graph.nodes:
        if node.op != "call_module":
            continue
        sub = module.get_submodule(node.target)
        if "Resize" in type(sub).__name__ or "Upsample" in type(sub).__name__:
            return frozen
        if isinstance(sub, torch.nn.Conv2d):
            for p in sub.parameters():
                p.requires_grad_(False)
            frozen.append(str(node.target))
    raise UnsupportedModelError("no upsampling layer found: cannot tell this student's backbone from its neck")


def check_student(card: ModelCard) -> None:
    if card.family not in TRAINABLE_FAMILIES:
        raise UnsupportedModelError(f"{card.name}: students of family {card.family!r} cannot be trained yet; "
                                    f"supported: {', '.join(TRAINABLE_FAMILIES)} (e.g. yolox-nano)")
    if card.precision != "fp32":
        raise UsageError(f"{card.name} is {card.precision}; train an fp32 student (quantize the result afterwards "
                         "with spotdet optimize)")


def ema_update(decay: float):
    """The weights' moving average, with TensorFlow's warm-up: decay ``min(decay, (1 + n) / (10 + n))`` at update n.

    A fixed decay of 0.99 over a short fine-tune (a few hundred steps) would keep a large share of the
    pretrained weights in the average however far training moved; the warm-up lets the first steps count.
    """
    def update(averaged, current, num_averaged):
        n = float(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        return averaged * d + current * (1 - d)

    return update


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% (YOLOX's schedule, shortened to a fine-tune)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(module, settings: TrainSettings):
    import torch

    trained = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in trained if p.ndim > 1]
    no_decay = [p for p in trained if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": settings.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr, momentum=0.9, nesterov=True)


def train(student: ModelCard, student_path: Path, samples: list[Sample], settings: TrainSettings, out_dir: Path,
          resume: bool = False, device: str = "cpu", maps: Any = None,
          on_step: Callable[[int, int, int, float], None] | None = None,
          on_epoch: Callable[[EpochStats, Any], None] | None = None) -> TrainState:
    """Fine-tune ``student`` on ``samples``; a checkpoint after each epoch in ``out_dir`` (see module doc).

    ``maps`` (a ``dense.TeacherMaps`` holding every sample's targets) is required by the dense method.

    ``on_step(epoch, done, total, loss)`` reports progress inside an epoch; ``on_epoch(stats, ema_module)``
    after each (the benchmark evaluates the module there).
    """
    import torch
    from torch.optim.swa_utils import AveragedModel

    settings.check()
    check_student(student)
    if not samples:
        raise UsageError("no labelled images to train on")
    if (settings.method == "dense") != (maps is not None):
        raise UsageError("the dense method trains on teacher maps, and only it does")
    module = trainable_module(student_path).to(device)
    module.train()
    freeze_backbone(module) if settings.freeze == "backbone" else freeze_stem(module)
    ema = AveragedModel(module, avg_fn=ema_update(settings.ema_decay), use_buffers=False)
    opt = _optimizer(module, settings)
    steps_per_epoch = math.ceil(len(samples) / settings.batch)
    total = steps_per_epoch * settings.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total, min(steps_per_epoch, total // 4 or 1)))
    state = TrainState(ema.module)
    ckpt = out_dir / CHECKPOINT_NAME
    if ckpt.is_file():
        if not resume:
            raise UsageError(f"{ckpt} holds an earlier training run: pass --resume to continue it, or use "
                             "another --out")
        state.resumed_from = _load_checkpoint(ckpt, settings, module, ema, opt, sched, state)
    strides = tuple(student.decoder.get("strides", (8, 16, 32)))
    batches = Batches(samples, student, settings.imgsz, settings.flip, maps)
    from spotdet.distill.loss import dense_loss, yolox_loss

    with quiet_forward():
        for epoch in range(state.resumed_from, settings.epochs):
            rng = random.Random(settings.seed * 1000 + epoch)
            order = list(range(len(samples)))
            rng.shuffle(order)
            sums = np.zeros(4)
            started = time.monotonic()
            for step in range(steps_per_epoch):
                x, targets = batches.make(order[step * settings.batch:(step + 1) * settings.batch], rng)
                if maps is not None:
                    parts = dense_loss(module(x.to(device)), targets.to(device), settings.imgsz, strides)
                else:
                    targets = [tuple(t.to(device) for t in target) for target in targets]
                    parts = yolox_loss(module(x.to(device)), targets, settings.imgsz, strides, soft=settings.soft)
                opt.zero_grad(set_to_none=True)
                parts.total.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), CLIP_NORM)
                opt.step()
                sched.step()
                ema.update_parameters(module)
                loss = float(parts.total.detach())
                sums += [loss, parts.iou, parts.obj, parts.cls]
                if on_step:
                    on_step(epoch + 1, step + 1, steps_per_epoch, loss)
            mean = sums / steps_per_epoch
            stats = EpochStats(epoch + 1, *map(float, mean), seconds=time.monotonic() - started, images=len(samples))
            state.history.append(stats)
            _save_checkpoint(ckpt, settings, module, ema, opt, sched, state)
            if on_epoch:
                on_epoch(stats, ema.module)
    return state


def _save_checkpoint(path: Path, settings: TrainSettings, module, ema, opt, sched, state: TrainState) -> None:
    import torch

    data = {"settings": settings.to_dict(), "epoch": state.history[-1].epoch, "model": module.state_dict(),
            "ema": ema.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "history": [asdict(h) for h in state.history]}
    with atomic_path(path, durable=True) as tmp:
        torch.save(data, tmp)


def _load_checkpoint(path: Path, settings: TrainSettings, module, ema, opt, sched, state: TrainState) -> int:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UsageError(f"{path}: not a readable distill checkpoint ({exc}); delete it to start over") from None
    if data.get("settings") != settings.to_dict():
        raise UsageError(f"{path} was made with other training settings ({data.get('settings')}); continue it "
                         "with the same ones, or use another --out")
    module.load_state_dict(data["model"])
    ema.load_state_dict(data["ema"])
    opt.load_state_dict(data["optimizer"])
    sched.load_state_dict(data["scheduler"])
    state.history = [EpochStats(**h) for h in data["history"]]
    return int(data["epoch"])


def load_trained(student_path: Path, out_dir: Path):
    """The EMA module stored in ``out_dir``'s checkpoint (to export a finished run again)."""
    import torch
    from torch.optim.swa_utils import AveragedModel

    module = trainable_module(student_path)
    ema = AveragedModel(module, use_buffers=False)
    ema.load_state_dict(torch.load(out_dir / CHECKPOINT_NAME, map_location="cpu", weights_only=False)["ema"])
    return ema.module
