"""Export the trained student: its weights written back into the student's own ONNX graph, plus a card.

Why not ``torch.onnx.export``: the trained module *is* the student's graph (converted by onnx2torch, every
parameter named after the ONNX node that uses it), so putting the new weights into the original file's
initializers gives a model with exactly the student's graph, input size, opsets and per-image cost, that every
spotdet tool already reads (decoder, ``optimize`` builders, batching rewrites). The file is checked before it is
kept: it must load in ONNX Runtime and give the torch module's outputs on a probe input.

The card is the student's with a new name, file and sha256. ``parent`` stays empty on purpose: spotdet reads
``parent`` as "the same weights at another precision" (``optimize`` names a variant after its parent,
``find_variant`` looks variants up by it), which a distilled model is not. What it was distilled from (student,
teacher(s), data, epochs) is recorded in the card's notes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from spotdet.atomic import atomic_path
from spotdet.errors import SpotdetError, UnsupportedModelError
from spotdet.models.card import ModelCard, card_path_for, write_card_file
from spotdet.models.store import sha256_of

MADE_BY = "made by spotdet distill"
#: where each trainable torch parameter or buffer lives among its ONNX node's inputs
INPUT_SLOT = {("Conv", "weight"): 1, ("Conv", "bias"): 2, ("ConvTranspose", "weight"): 1,
              ("ConvTranspose", "bias"): 2, ("Gemm", "weight"): 1, ("Gemm", "bias"): 2,
              ("BatchNormalization", "weight"): 1, ("BatchNormalization", "bias"): 2,
              ("BatchNormalization", "running_mean"): 3, ("BatchNormalization", "running_var"): 4}
#: the exported file must give the torch module's outputs within this (relative to the outputs' scale)
MATCH_TOLERANCE = 1e-3


def with_trained_weights(onnx_path: Path, module: Any):
    """The student's ONNX model with each initializer that ``module`` trained replaced by its trained value."""
    import onnx
    from onnx import numpy_helper

    from spotdet.backends.onnx_tools import load_onnx

    model = load_onnx(onnx_path)
    nodes = {n.name: n for n in model.graph.node}
    inits = {i.name: i for i in model.graph.initializer}
    named = dict(module.named_parameters())
    named.update((k, v) for k, v in module.named_buffers() if k.rsplit(".", 1)[-1] in ("running_mean", "running_var"))
    for name, tensor in named.items():
        node_name, _, kind = name.rpartition(".")
        node = nodes.get(node_name)
        slot = INPUT_SLOT.get((node.op_type, kind)) if node is not None else None
        if slot is None or slot >= len(node.input) or node.input[slot] not in inits:
            raise UnsupportedModelError(f"{onnx_path.name}: cannot map the trained parameter {name} back to an "
                                        "initializer of the graph")
        old = inits[node.input[slot]]
        value = tensor.detach().cpu().numpy().astype(numpy_helper.to_array(old).dtype)
        old.CopyFrom(numpy_helper.from_array(value, old.name))
    onnx.checker.check_model(model)
    return model


def max_output_difference(onnx_file: Path, module: Any, probe: np.ndarray) -> float:
    """Largest |ONNX Runtime - torch| over the first output, relative to the output's largest magnitude."""
    import torch

    from spotdet.backends.onnxruntime import ort_session
    from spotdet.distill.train import quiet_forward

    session = ort_session(onnx_file, log_level=4)
    ref = session.run(None, {session.get_inputs()[0].name: probe})[0]
    with torch.no_grad(), quiet_forward():
        got = module(torch.from_numpy(probe).to(next(module.parameters()).device))
    got = (got[0] if isinstance(got, (list, tuple)) else got).cpu().numpy()
    return float(np.abs(ref - got).max() / max(1.0, float(np.abs(ref).max())))


def export_student(student: ModelCard, student_path: Path, module: Any, out_path: Path, name: str,
                   lineage: str, probe: np.ndarray) -> tuple[ModelCard, Path]:
    """Write the distilled model and its card atomically; (card, card path). Refuses a file that does not
    reproduce the torch module's outputs. ``module`` is left in the mode (train or eval) it came in."""
    import onnx

    model = with_trained_weights(student_path, module)
    training = module.training
    module.eval()
    with atomic_path(out_path) as tmp:
        onnx.save_model(model, str(tmp))
        diff = max_output_difference(tmp, module, probe)
        module.train(training)  # a run exporting each epoch goes on training the same module
        if diff > MATCH_TOLERANCE:
            raise SpotdetError(f"the exported model differs from the trained module (relative max |diff| "
                               f"{diff:.3g} > {MATCH_TOLERANCE}); nothing was written")
        # the size it was trained at is the size it runs at by default (a variable-size student may differ)
        card = replace(student, name=name, file=str(out_path), parent=None, url=None, sha256=sha256_of(tmp),
                       input_size=(int(probe.shape[2]), int(probe.shape[3])),
                       published_map=None, published_map50=None, reference_dev_map=None,
                       notes=f"{MADE_BY}: {lineage}")
        card_path = write_card_file(card, card_path_for(out_path))
    return card, card_path
