"""Bench test helpers: the recorded bench result and a real dynamic-batch detector (not a conftest, so the
root conftest keeps its module name)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from support.paths import MODEL_DIR

FIXTURE = Path(__file__).resolve().parents[1] / "bench" / "fixtures" / "bench_cpu_zoo.json"


def make_dynamic_batch_yolox(folder: Path) -> str:
    """Write yolox-nano with a symbolic batch dimension plus its card into ``folder``; return its name.

    The reshape constants that hard-code batch 1 are set to -1 / 0 (copy), and the copy is checked:
    each image's output in a batch of 3 must equal its batch-1 output.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from spotdet.models.card import get_card, write_card_file

    model = onnx.load(str(MODEL_DIR / "yolox_nano.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]]).copy()
            if shape.size and shape[0] == 1:
                shape[0] = -1 if -1 not in shape else 0
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
    for value in [model.graph.input[0], *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "yolox_nano_dynb.onnx"
    onnx.save(model, str(path))

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 3, 416, 416), dtype=np.float32) * 255
    batched = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    for i in range(3):
        single = sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0]
        np.testing.assert_allclose(batched[i:i + 1], single, rtol=1e-4, atol=1e-3)

    card = replace(get_card("yolox-nano"), name="yolox-nano-dynb", file=str(path), parent="yolox-nano", sha256=None,
                   url=None)
    write_card_file(card, path.with_name("yolox_nano_dynb.card.toml"))
    return card.name



def bench_row(model: str, p50_ms: float, map50_95: float | None, batch: int = 1, precision: str = "fp32",
              peak_rss_mb: float = 120.0):
    """A measured BenchRow with fixed figures (per-image p50, mAP), for picker tests."""
    from spotdet.bench.report import BenchRow

    return BenchRow(model, precision, None, "416x416", batch, "CPUExecutionProvider", None,
                    latency_p50_ms=p50_ms, latency_p95_ms=p50_ms * 1.2, images_per_s=round(1000.0 / p50_ms, 2),
                    batches_timed=20, stable=True, peak_rss_mb=peak_rss_mb, file_mb=3.5, map50_95=map50_95,
                    map50=None if map50_95 is None else map50_95 + 15)
