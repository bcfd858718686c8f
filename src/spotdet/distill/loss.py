"""The student's training loss on pseudo-boxes: YOLOX's own loss (SimOTA assignment, IoU + BCE obj/cls).

Why this loss and not dense response distillation: the default teacher (an Ultralytics model at 640) and the
student (YOLOX at 416) have different grids, strides and heads, so their outputs do not line up cell by cell;
boxes are the one thing every detector shares. And why YOLOX's *own* assignment rather than a simpler one: the
pretrained student converged under SimOTA, so fine-tuning with the same assignment moves its weights only as
far as the new labels ask, instead of first re-learning which cells should fire.

Works on the exported head as it is: ``[B, N, 5 + C]`` with x, y offsets (add the cell, times the stride),
log w, h (exp, times the stride), and obj and class scores *after* the sigmoid (the export includes it), so the
BCE terms take probabilities (clamped away from 0 and 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

EPS = 1e-6
CENTER_RADIUS = 2.5  # YOLOX: a cell within 2.5 strides of a box centre may be assigned to it
TOPK_IOU = 10  # SimOTA: dynamic k = sum of a box's 10 best IoUs
REG_WEIGHT = 5.0  # YOLOX's weight of the IoU loss


@dataclass
class LossParts:
    total: torch.Tensor
    iou: float
    obj: float
    cls: float
    num_fg: int


@lru_cache(maxsize=8)
def grid(input_hw: tuple[int, int], strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(cells (N, 2) as x, y; strides (N,)) in the export's row order: stride by stride, row-major."""
    cells, steps = [], []
    for s in strides:
        ys, xs = torch.meshgrid(torch.arange(input_hw[0] // s), torch.arange(input_hw[1] // s), indexing="ij")
        cells.append(torch.stack([xs, ys], -1).reshape(-1, 2))
        steps.append(torch.full((cells[-1].shape[0],), float(s)))
    return torch.cat(cells).float(), torch.cat(steps)


def decode_boxes(pred: torch.Tensor, cells: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """Head output ``[..., N, 5+C]`` -> boxes ``[..., N, 4]`` as cx, cy, w, h in input pixels (differentiable)."""
    xy = (pred[..., :2] + cells) * strides[:, None]
    wh = torch.exp(pred[..., 2:4].clamp(max=10.0)) * strides[:, None]
    return torch.cat([xy, wh], -1)


def xyxy(boxes: torch.Tensor) -> torch.Tensor:
    half = boxes[..., 2:] / 2
    return torch.cat([boxes[..., :2] - half, boxes[..., :2] + half], -1)


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of a[i] with b[i] (both xyxy)."""
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1) + (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area - inter + 1e-9)


def inside_any(points: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Which points (N, 2) lie inside at least one of ``regions`` (R, 4 xyxy)."""
    lt = points[None] - regions[:, None, :2]
    rb = regions[:, None, 2:] - points[None]
    return (torch.cat([lt, rb], -1).min(-1).values > 0).any(0)


@torch.no_grad()
def simota(boxes: torch.Tensor, obj: torch.Tensor, cls: torch.Tensor, cells: torch.Tensor, strides: torch.Tensor,
           gt_xyxy: torch.Tensor, gt_cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimOTA for one image: (foreground mask (N,), matched box index per foreground cell, their IoUs)."""
    from torchvision.ops import box_iou

    centers = (cells + 0.5) * strides[:, None]
    lt = centers[None] - gt_xyxy[:, None, :2]
    rb = gt_xyxy[:, None, 2:] - centers[None]
    in_box = torch.cat([lt, rb], -1).min(-1).values > 0  # (G, N)
    gt_center = (gt_xyxy[:, :2] + gt_xyxy[:, 2:]) / 2
    in_center = ((centers[None] - gt_center[:, None]).abs() < CENTER_RADIUS * strides[None, :, None]).all(-1)
    candidate = (in_box | in_center).any(0)
    if not candidate.any():
        return candidate, gt_cls.new_zeros(0), boxes.new_zeros(0)
    both = (in_box & in_center)[:, candidate]
    ious = box_iou(gt_xyxy, xyxy(boxes[candidate]))  # (G, Nc)
    p = (cls[candidate] * obj[candidate, None]).sqrt().clamp(EPS, 1 - EPS)
    # BCE summed over classes against a one-hot target, without a (G, Nc, C) tensor:
    # sum_c -log(1-p_c)  -  log(p_k) + log(1-p_k), k the box's class
    neg = -torch.log1p(-p).sum(1)
    pk = p[:, gt_cls].T  # (G, Nc)
    cls_cost = neg[None] - torch.log(pk) + torch.log1p(-pk)
    cost = cls_cost + 3.0 * -torch.log(ious + 1e-8) + 1e5 * (~both)
    dynamic_k = ious.topk(min(TOPK_IOU, ious.shape[1]), dim=1).values.sum(1).int().clamp(min=1)
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(len(gt_xyxy)):
        matching[g, cost[g].topk(int(dynamic_k[g]), largest=False).indices] = True
    shared = matching.sum(0) > 1  # a cell two boxes want goes to the one it costs least
    if shared.any():
        matching[:, shared] = False
        matching[cost[:, shared].argmin(0), shared.nonzero().squeeze(1)] = True
    fg_candidate = matching.any(0)
    matched = matching[:, fg_candidate].float().argmax(0)
    fg = candidate.clone()
    fg[candidate] = fg_candidate
    return fg, matched, ious[matched, fg_candidate.nonzero().squeeze(1)]


def yolox_loss(pred: torch.Tensor, targets: list[tuple[torch.Tensor, ...]], input_hw: tuple[int, int],
               strides: tuple[int, ...], soft: bool = False) -> LossParts:
    """YOLOX's loss for a batch: ``targets`` holds per image (boxes xyxy in input pixels, class ids), optionally
    followed by ignore regions (xyxy): cells centred in one, and not assigned to a box, get no objectness loss;
    and by the boxes' teacher scores. ``soft``: a matched cell's objectness and class targets are scaled by its
    box's score instead of being 1, so a box the teacher was unsure of does not teach certainty (COCO mAP
    integrates over low-confidence detections too, which hard targets would push to 0 or 1)."""
    cells, steps = grid(tuple(input_hw), tuple(strides))
    cells, steps = cells.to(pred.device), steps.to(pred.device)
    if pred.shape[1] != len(cells):
        raise ValueError(f"head has {pred.shape[1]} cells, expected {len(cells)} for input {input_hw}")
    boxes = decode_boxes(pred, cells, steps)
    obj = pred[..., 4].clamp(EPS, 1 - EPS)
    cls = pred[..., 5:].clamp(EPS, 1 - EPS)
    obj_target = torch.zeros_like(obj)
    obj_weight = torch.ones_like(obj)
    centers = (cells + 0.5) * steps[:, None]
    iou_sum = cls_sum = pred.new_zeros(())
    num_fg = 0
    for i, (gt_boxes, gt_cls, *rest) in enumerate(targets):
        if rest and len(rest[0]):
            obj_weight[i, inside_any(centers, rest[0])] = 0.0
        if len(gt_boxes) == 0:
            continue
        fg, matched, ious = simota(boxes[i].detach(), obj[i].detach(), cls[i].detach(), cells, steps, gt_boxes,
                                   gt_cls)
        if not fg.any():
            continue
        weight = rest[1][matched] if soft and len(rest) > 1 else ious.new_ones(len(matched))
        obj_target[i, fg] = weight
        obj_weight[i, fg] = 1.0
        num_fg += int(fg.sum())
        iou = paired_iou(xyxy(boxes[i, fg]), gt_boxes[matched])
        iou_sum = iou_sum + (1 - iou**2).sum()
        cls_target = F.one_hot(gt_cls[matched], cls.shape[-1]).float() * (ious * weight)[:, None]
        cls_sum = cls_sum + F.binary_cross_entropy(cls[i, fg], cls_target, reduction="sum")
    obj_sum = F.binary_cross_entropy(obj, obj_target, weight=obj_weight, reduction="sum")
    denom = max(num_fg, 1)
    total = (REG_WEIGHT * iou_sum + obj_sum + cls_sum) / denom
    return LossParts(total, float(iou_sum.detach()) / denom, float(obj_sum.detach()) / denom,
                     float(cls_sum.detach()) / denom, num_fg)


#: quality focal loss exponent (GFL): a cell whose score already matches the teacher's costs almost nothing,
#: so the thousands of background cells where both say ~0 do not drown the few that disagree
DENSE_GAMMA = 2.0
#: teacher score a cell needs for its box to be imitated (below it the box is the teacher's guess at nothing)
DENSE_BOX_MIN_SCORE = 0.05
DENSE_BOX_WEIGHT = 2.0  # GFL's weight of the box term


def dense_loss(pred: torch.Tensor, targets: torch.Tensor, input_hw: tuple[int, int], strides: tuple[int, ...],
               gamma: float = DENSE_GAMMA, box_weight: float = DENSE_BOX_WEIGHT) -> LossParts:
    """Response distillation on every cell: the student's scores (obj x cls, what YOLOX ranks detections by)
    learn the teacher's per-class scores with a quality focal loss, normalised by the teacher's total score
    mass; where the teacher scores a cell, the student's box there learns the teacher's box (1 - IoU, weighted
    by that score). ``targets``: ``[B, N, 4 + C]`` from ``dense.TeacherMaps`` (cx, cy, w, h in input pixels).
    """
    cells, steps = grid(tuple(input_hw), tuple(strides))
    cells, steps = cells.to(pred.device), steps.to(pred.device)
    if pred.shape[1] != len(cells) or targets.shape[:2] != pred.shape[:2]:
        raise ValueError(f"head has {pred.shape[1]} cells and targets {targets.shape[1]}, expected {len(cells)} "
                         f"for input {input_hw}")
    scores = (pred[..., 4:5] * pred[..., 5:]).clamp(EPS, 1 - EPS)
    teacher = targets[..., 4:]
    focal = F.binary_cross_entropy(scores, teacher, reduction="none") * (teacher - scores).abs().pow(gamma)
    strength = teacher.max(-1).values
    cls_loss = focal.sum() / strength.sum().clamp(min=1.0)
    scored = strength > DENSE_BOX_MIN_SCORE
    weight = strength[scored]
    iou = paired_iou(xyxy(decode_boxes(pred, cells, steps)[scored]), xyxy(targets[..., :4][scored]))
    box_loss = ((1 - iou) * weight).sum() / weight.sum().clamp(min=EPS)
    total = cls_loss + box_weight * box_loss
    return LossParts(total, float(box_loss.detach()), 0.0, float(cls_loss.detach()), int(scored.sum()))
