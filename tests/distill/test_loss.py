"""The YOLOX loss on pseudo-boxes: SimOTA picks cells at the box, and the loss prefers the right prediction."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision", reason="the distill extra (torch, torchvision, onnx2torch) is not installed")

from spotdet.distill.loss import decode_boxes, grid, simota, xyxy, yolox_loss  # noqa: E402

SIZE = (64, 64)
STRIDES = (8, 16, 32)


def _head(box_cxcywh=None, cls=0, score=0.9) -> torch.Tensor:
    """A head output with every cell predicting a tiny low-score box, and optionally the cells near the box
    centre predicting ``box_cxcywh`` with class ``cls``."""
    cells, steps = grid(SIZE, STRIDES)
    pred = torch.zeros(1, len(cells), 5 + 3)
    pred[..., 2:4] = -3.0
    pred[..., 4:] = 0.01
    if box_cxcywh is not None:
        cx, cy, w, h = box_cxcywh
        centres = (cells + 0.5) * steps[:, None]
        near = ((centres[:, 0] - cx).abs() < 8) & ((centres[:, 1] - cy).abs() < 8)
        pred[0, near, 0] = cx / steps[near] - cells[near, 0]
        pred[0, near, 1] = cy / steps[near] - cells[near, 1]
        pred[0, near, 2] = torch.log(w / steps[near])
        pred[0, near, 3] = torch.log(h / steps[near])
        pred[0, near, 4] = score
        pred[0, near, 5 + cls] = score
    return pred


def test_decode_inverts_the_head_encoding():
    pred = _head((30.0, 26.0, 20.0, 12.0))
    boxes = decode_boxes(pred, *grid(SIZE, STRIDES))[0]
    near = pred[0, :, 4] > 0.5
    assert torch.allclose(boxes[near], torch.tensor([30.0, 26.0, 20.0, 12.0]).expand(int(near.sum()), 4), atol=1e-4)


def test_simota_assigns_only_cells_at_the_box():
    gt = torch.tensor([[20.0, 20.0, 40.0, 36.0]])
    pred = _head((30.0, 28.0, 20.0, 16.0))
    cells, steps = grid(SIZE, STRIDES)
    fg, matched, ious = simota(decode_boxes(pred, cells, steps)[0], pred[0, :, 4], pred[0, :, 5:], cells, steps,
                               gt, torch.tensor([0]))
    centres = (cells[fg] + 0.5) * steps[fg, None]
    assert fg.sum() >= 1 and (matched == 0).all() and (ious > 0.9).all()
    assert ((centres - torch.tensor([30.0, 28.0])).abs() < 2.5 * steps[fg, None]).all()


def test_loss_is_lower_for_the_right_box_and_class_and_has_gradients():
    target = [(torch.tensor([[20.0, 20.0, 40.0, 36.0]]), torch.tensor([1]))]
    right = yolox_loss(_head((30.0, 28.0, 20.0, 16.0), cls=1), target, SIZE, STRIDES)
    wrong_class = yolox_loss(_head((30.0, 28.0, 20.0, 16.0), cls=2), target, SIZE, STRIDES)
    wrong_place = yolox_loss(_head((12.0, 50.0, 20.0, 16.0), cls=1), target, SIZE, STRIDES)
    assert right.total < wrong_class.total and right.total < wrong_place.total
    assert right.iou < wrong_place.iou and right.cls < wrong_class.cls
    pred = _head((30.0, 28.0, 20.0, 16.0), cls=1).requires_grad_(True)
    yolox_loss(pred, target, SIZE, STRIDES).total.backward()
    assert pred.grad.abs().sum() > 0


def test_an_image_without_labels_only_teaches_background():
    parts = yolox_loss(_head((30.0, 28.0, 20.0, 16.0)), [(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))],
                       SIZE, STRIDES)
    assert parts.num_fg == 0 and parts.iou == 0 and parts.obj > 0
    assert torch.allclose(xyxy(torch.tensor([[10.0, 10.0, 4.0, 2.0]])), torch.tensor([[8.0, 9.0, 12.0, 11.0]]))


def test_an_ignore_region_removes_the_objectness_penalty_there_only():
    pred = _head((30.0, 28.0, 20.0, 16.0), cls=1)  # fires at (30, 28) where the teacher was unsure
    empty = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    plain = yolox_loss(pred, [empty], SIZE, STRIDES)
    ignored = yolox_loss(pred, [(*empty, torch.tensor([[20.0, 20.0, 40.0, 36.0]]))], SIZE, STRIDES)
    elsewhere = yolox_loss(pred, [(*empty, torch.tensor([[0.0, 48.0, 16.0, 64.0]]))], SIZE, STRIDES)
    assert ignored.obj < plain.obj and elsewhere.obj == pytest.approx(plain.obj, rel=0.05)


def test_soft_targets_teach_the_teachers_confidence_not_certainty():
    """A box the teacher scored 0.4: a student firing at 0.4 is right under soft targets, too unsure under hard."""
    box = (torch.tensor([[20.0, 20.0, 40.0, 36.0]]), torch.tensor([1]), torch.zeros(0, 4), torch.tensor([0.4]))
    unsure, sure = _head((30.0, 28.0, 20.0, 16.0), cls=1, score=0.4), _head((30.0, 28.0, 20.0, 16.0), cls=1, score=0.95)
    soft_unsure, soft_sure = (yolox_loss(p, [box], SIZE, STRIDES, soft=True) for p in (unsure, sure))
    hard_unsure, hard_sure = (yolox_loss(p, [box], SIZE, STRIDES) for p in (unsure, sure))
    assert soft_unsure.obj < soft_sure.obj and hard_sure.obj < hard_unsure.obj
    assert yolox_loss(sure, [box[:3]], SIZE, STRIDES, soft=True).obj == pytest.approx(hard_sure.obj)  # no scores: 1


def test_dense_loss_is_zero_when_the_student_already_answers_like_the_teacher():
    from spotdet.distill.loss import dense_loss

    cells, steps = grid(SIZE, STRIDES)
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(2, len(cells), 5 + 3, generator=gen)
    pred[..., 2:4] = torch.rand(2, len(cells), 2, generator=gen) * 2 - 1  # log sizes
    targets = torch.cat([decode_boxes(pred, cells, steps), pred[..., 4:5] * pred[..., 5:]], -1)
    same = dense_loss(pred, targets, SIZE, STRIDES)
    assert float(same.total) < 1e-4 and same.num_fg > 0
    wrong = pred.clone().requires_grad_(True)
    with torch.no_grad():
        wrong[..., 5] = 1 - wrong[..., 5]  # another answer for the first class
        wrong[..., 0] += 0.5  # and boxes shifted by half a cell
    parts = dense_loss(wrong, targets, SIZE, STRIDES)
    assert parts.total.item() > 100 * same.total.item() and parts.iou > 0 and parts.cls > 0
    parts.total.backward()
    assert wrong.grad[..., 0].abs().sum() > 0 and wrong.grad[..., 5].abs().sum() > 0


def test_dense_loss_refuses_targets_of_another_grid():
    from spotdet.distill.loss import dense_loss

    cells, _ = grid(SIZE, STRIDES)
    with pytest.raises(ValueError, match="targets"):
        dense_loss(torch.rand(1, len(cells), 8), torch.rand(1, len(cells) - 1, 7), SIZE, STRIDES)
