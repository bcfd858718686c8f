"""Keep the best epoch by a labelled sample, and say whether distillation helped at all.

Distillation can cost accuracy: a teacher's mistakes become lessons, and a few hundred images can pull a
student away from what it learnt on a large labelled set (docs/distill.md measures both). A user with even a
small labelled sample of their own images (``--val DIR``, a COCO folder) should not have to guess: the student
is scored on it before training and after every epoch, the best epoch's weights are what gets exported, and
the scores go into the result and the card, so "it did not help" is a number, not a surprise in production.

State lives in ``--out`` like the rest of a run: ``val.json`` (the scores) and ``best.pt`` (the best epoch's
weights), both written atomically, so a resumed run keeps what it measured before the interruption.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spotdet.atomic import atomic_path, atomic_write_text
from spotdet.eval.coco import CocoDataset
from spotdet.models.ref import ModelRef

SCORES_NAME = "val.json"
BEST_NAME = "best.pt"
EPOCHS_DIR = "epochs"


@dataclass
class ValReport:
    """mAP@0.5:0.95 (points) on the labelled sample: before training and after each epoch."""

    data: str
    images: int
    before: float
    epochs: dict[int, float] = field(default_factory=dict)

    @property
    def best_epoch(self) -> int | None:
        return max(self.epochs, key=lambda e: (self.epochs[e], -e)) if self.epochs else None

    @property
    def helped(self) -> bool:
        best = self.best_epoch
        return best is not None and self.epochs[best] > self.before

    def note(self) -> str:
        if self.best_epoch is None:
            return f"mAP@0.5:0.95 on {self.data}: {self.before:.2f} before; no epoch scored"
        return (f"mAP@0.5:0.95 on {self.data} ({self.images} images): {self.before:.2f} before, "
                f"{self.epochs[self.best_epoch]:.2f} after epoch {self.best_epoch} (the weights kept)")

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "images": self.images, "before": self.before,
                "epochs": {str(e): m for e, m in self.epochs.items()}}


class EpochPicker:
    """Scores the student on ``val_dir`` before training and after every epoch; keeps the best weights."""

    def __init__(self, dataset: CocoDataset, label: str, student: ModelRef, out: Path, probe: np.ndarray,
                 threads: int | None = None) -> None:
        """``dataset``: the labelled sample (``load_dataset``, read by the caller before any work), ``label``
        what to call it. ``probe``: a training input; its size is the size every score is taken at, before and
        after."""
        self.dataset = dataset
        self.student, self.student_path = student.card, student.path
        self.out, self.probe, self.threads = out, probe, threads
        stored = self._stored()
        self.report = stored or ValReport(label, len(self.dataset.images), self._score(student))
        self._save()

    def _stored(self) -> ValReport | None:
        try:
            data = json.loads((self.out / SCORES_NAME).read_text(encoding="utf-8"))
            report = ValReport(data["data"], int(data["images"]), float(data["before"]),
                               {int(e): float(m) for e, m in data["epochs"].items()})
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return report if report.images == len(self.dataset.images) else None

    def _save(self) -> None:
        atomic_write_text(self.out / SCORES_NAME, json.dumps(self.report.to_dict(), indent=2))

    def _score(self, model: Path | ModelRef) -> float:
        from spotdet import Detector
        from spotdet.eval.coco import evaluate

        size = (int(self.probe.shape[2]), int(self.probe.shape[3]))
        return round(evaluate(Detector(model, threads=self.threads), self.dataset, imgsz=size).map50_95, 2)

    def after_epoch(self, epoch: int, module: Any) -> float:
        """Export this epoch's weights, score them, and keep them when they are the best so far."""
        import torch

        from spotdet.distill.export import export_student

        path = self.out / EPOCHS_DIR / f"epoch-{epoch}.onnx"
        export_student(self.student, self.student_path, module, path, f"{self.student.name}-epoch{epoch}",
                       f"epoch {epoch} of a distill run", self.probe)
        score = self._score(path)
        best = self.report.best_epoch
        self.report.epochs[epoch] = score
        if best is None or self.report.best_epoch == epoch:
            with atomic_path(self.out / BEST_NAME) as tmp:
                torch.save(module.state_dict(), tmp)
        self._save()
        return score

    def best_weights(self) -> dict[str, Any] | None:
        import torch

        path = self.out / BEST_NAME
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
