"""Automatic mixed precision for static INT8: keep the activations that 8-bit quantization destroys in float.

Why this exists: in YOLOX-nano and PicoDet the activations right after the early convolutions (BN folded
into the weights) hold channels whose ranges differ by two orders of magnitude (YOLOX-nano's first conv:
per-channel max |x| from 0.8 to 133). ONNX Runtime quantizes an activation with ONE scale per tensor, so the
small channels round to zero; the depthwise convolution that follows rescales each channel on its own and
turns that rounding into noise larger than the signal (ORT's qdq_loss_debug: the network output's SQNR
falls to ~5 dB for YOLOX-nano, ~0 dB for PicoDet). The overall SQNR of such a tensor looks fine (~24 dB)
because the big channels dominate it; the per-channel SQNR does not.

The selection:
1. rank every quantized activation tensor by its *per-channel* SQNR under its calibrated scale, measured
   on float activations of a few calibration images (worst first);
2. keep the worst ones in float by removing their QuantizeLinear/DequantizeLinear pair (ONNX Runtime then
   runs their producer/consumers in float: a valid mixed-precision QDQ model), in growing steps,
3. until the quantized model's outputs on those images agree with fp32 to ``target_db`` (output SQNR,
   the worst output), or a cap on the number of float tensors is hit.
Everything is measured on calibration images; nothing is tuned per model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from spotdet.backends.onnx_tools import toposort

DEFAULT_TARGET_DB = 10.0  # worst-output SQNR vs fp32 on the calibration images; see docs/optimize.md
#: the target is lowered to (weight-only SQNR - this) when int8 weights alone already cost more than that
CEILING_MARGIN_DB = 3.0
DEFAULT_MAX_FLOAT_FRACTION = 0.5  # never keep more than this share of the quantized activations in float
SELECTION_IMAGES = 4
CHANNEL_PERCENTILE = 10  # rank a tensor by its worst channels (10th percentile of per-channel SQNR)


@dataclass
class MixedInfo:
    float_tensors: list[str] = field(default_factory=list)
    candidates: int = 0  # quantized activation tensors
    start_db: float = 0.0  # output SQNR of the fully quantized model
    final_db: float = 0.0
    target_db: float = DEFAULT_TARGET_DB
    reached: bool = False
    ceiling_db: float | None = None  # output SQNR with every activation in float (int8 weights only)
    steps: list[tuple[int, float]] = field(default_factory=list)  # (float tensors, output SQNR dB)


def _qdq_pairs(model: onnx.ModelProto) -> dict[str, tuple[onnx.NodeProto, list[onnx.NodeProto]]]:
    """activation tensor -> (its QuantizeLinear, the DequantizeLinear nodes reading that Q's output)."""
    inits = {i.name for i in model.graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            readers.setdefault(node.input[0], []).append(node)
    pairs = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits and node.output[0] in readers:
            pairs[node.input[0]] = (node, readers[node.output[0]])
    return pairs


def activation_params(model: onnx.ModelProto) -> dict[str, tuple[float, int, int, int]]:
    """activation tensor -> (scale, zero point, qmin, qmax) of its per-tensor QuantizeLinear."""
    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for tensor, (q, _) in _qdq_pairs(model).items():
        if len(q.input) < 3 or q.input[1] not in inits or q.input[2] not in inits:
            continue
        scale = numpy_helper.to_array(inits[q.input[1]])
        zp = numpy_helper.to_array(inits[q.input[2]])
        if scale.size != 1:
            continue
        info = np.iinfo(zp.dtype)
        out[tensor] = (float(scale.reshape(())), int(zp.reshape(())), int(info.min), int(info.max))
    return out


def keep_float(model: onnx.ModelProto, tensors: list[str] | set[str]) -> onnx.ModelProto:
    """A copy of the QDQ ``model`` in which the given activation tensors are not quantized."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    wanted = set(tensors)
    rename: dict[str, str] = {}
    drop: set[int] = set()
    pairs = _qdq_pairs(model)
    for tensor in wanted & pairs.keys():
        q, dqs = pairs[tensor]
        drop.add(id(q))
        for dq in dqs:
            drop.add(id(dq))
            rename[dq.output[0]] = tensor
    keep = [n for n in model.graph.node if id(n) not in drop]
    # a Q output read by something other than the removed DQs must stay: then keep the Q
    still_read = {i for n in keep for i in n.input}
    for tensor in wanted & pairs.keys():
        q, _ = pairs[tensor]
        if q.output[0] in still_read:
            keep.append(q)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for out in model.graph.output:
        if out.name in rename:  # a graph output that was a DQ output: keep the name via Identity
            keep.append(onnx.helper.make_node("Identity", [rename[out.name]], [out.name]))
    del model.graph.node[:]
    model.graph.node.extend(keep)
    toposort(model.graph)  # the Identity nodes were appended last; a failure is left for the checker to name
    return model


def _session(model: onnx.ModelProto):
    from spotdet.backends.onnxruntime import ort_session

    return ort_session(model)


def float_activations(model: onnx.ModelProto, tensors: list[str], feeds: list[dict]) -> dict[str, list[np.ndarray]]:
    """Run the float ``model`` with ``tensors`` added as outputs; per tensor, one array per feed."""
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in have)
    sess = _session(probe)
    names = [o.name for o in sess.get_outputs()]
    wanted = set(tensors)
    acts: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    for feed in feeds:
        for name, value in zip(names, sess.run(None, feed)):
            if name in wanted:
                acts[name].append(value)
    return acts


def channel_sqnr(arrays: list[np.ndarray], scale: float, zp: int, qmin: int, qmax: int) -> float:
    """10th percentile over channels of each channel's SQNR (dB) after quantize-dequantize with one tensor scale.

    The channel axis is 1 for 3-D and 4-D tensors (NCHW, N·C·L); other tensors count as one channel.
    Channels without signal are left out.
    """
    x = np.concatenate([a.astype(np.float32) for a in arrays], axis=0)
    deq = (np.clip(np.round(x / scale) + zp, qmin, qmax) - zp) * scale
    if x.ndim >= 3:
        axes = tuple(i for i in range(x.ndim) if i != 1)
        sig, err = (x ** 2).sum(axis=axes), ((x - deq) ** 2).sum(axis=axes)
    else:
        sig, err = np.array([(x ** 2).sum()]), np.array([((x - deq) ** 2).sum()])
    live = sig > 1e-12 * max(float(sig.max()), 1e-30)
    if not live.any():
        return 99.0
    with np.errstate(divide="ignore", over="ignore"):
        db = 10.0 * np.log10(np.maximum(sig[live], 1e-30) / np.maximum(err[live], 1e-30))
    return float(np.percentile(np.minimum(db, 99.0), CHANNEL_PERCENTILE))


def output_sqnr(reference: list[list[np.ndarray]], sess, feeds: list[dict]) -> float:
    """Worst output's SQNR (dB) of ``sess`` against the float ``reference`` outputs over all feeds."""
    sig: np.ndarray | None = None
    err: np.ndarray | None = None
    for ref, feed in zip(reference, feeds):
        got = sess.run(None, feed)
        s = np.array([float((r.astype(np.float64) ** 2).sum()) for r in ref])
        e = np.array([float(((r.astype(np.float64) - g) ** 2).sum()) for r, g in zip(ref, got)])
        sig, err = (s, e) if sig is None else (sig + s, err + e)
    return float(np.min(10.0 * np.log10(sig / np.maximum(err, 1e-30))))


def select_float_tensors(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto, feeds: list[dict],
                         target_db: float = DEFAULT_TARGET_DB,
                         max_fraction: float = DEFAULT_MAX_FLOAT_FRACTION) -> MixedInfo:
    """The fewest worst-ranked activation tensors to keep in float so that outputs reach ``target_db``."""
    params = activation_params(qdq_model)
    # tensors the float graph has (ORT renames a quantized graph output's producer; those are skipped)
    known = {o for n in float_model.graph.node for o in n.output} | {i.name for i in float_model.graph.input}
    order = [t for t in params if t in known]
    acts = float_activations(float_model, order, feeds)
    ranked = sorted((channel_sqnr(acts[t], *params[t]), t) for t in order if acts.get(t))
    del acts
    ranked_names = [t for _, t in ranked]
    fsess = _session(float_model)
    reference = [fsess.run(None, feed) for feed in feeds]
    info = MixedInfo(candidates=len(ranked_names))
    cap = int(len(ranked_names) * max_fraction)

    def score(k: int) -> float:
        db = output_sqnr(reference, _session(keep_float(qdq_model, ranked_names[:k])), feeds)
        info.steps.append((k, round(db, 2)))
        return db

    k, db = 0, score(0)
    info.start_db = db
    if db < target_db:  # what int8 weights alone allow (every activation in float)
        info.ceiling_db = output_sqnr(reference, _session(keep_float(qdq_model, ranked_names)), feeds)
        target_db = min(target_db, info.ceiling_db - CEILING_MARGIN_DB)
    info.target_db = target_db
    prev, step = 0, 1
    while db < target_db and k < cap:
        prev, k = k, min(cap, k + step)
        db = score(k)
        step = min(step * 2, max(1, len(ranked_names) // 16))
    if db >= target_db and k - prev > 1:  # the growing step may have overshot: bisect back
        lo, hi = prev, k  # lo misses the target, hi meets it
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if score(mid) >= target_db:
                hi = mid
            else:
                lo = mid
        k = hi
        db = next(d for kk, d in reversed(info.steps) if kk == k)
    info.float_tensors = ranked_names[:k]
    info.final_db, info.reached = db, db >= target_db
    return info
