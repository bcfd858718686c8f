"""What ``backend="auto"`` measures on this machine: ONNX Runtime vs OpenVINO fp32, side by side, per zoo model.

Runs the same probe as the first auto load (spotdet/backends/probe.py: both runtimes loaded, one image
timed through each in turn, median ms), without using or writing the cache, and prints one row per model with
the runtime auto would keep. The machine is named in the title (`spotdet doctor` for the details).

    python benchmarks/backend_probe.py [--threads N] [--repeat 3]
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from spotdet.backends.probe import OPENVINO_MARGIN, choose, measure_candidates
from spotdet.hardware import describe, fingerprint
from spotdet.models.card import zoo
from spotdet.models.ref import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="probes per model (each a fresh load)")
    args = parser.parse_args()
    fp = fingerprint()
    table = Table(title=f"backend=auto probe on {describe(fp)} [{fp['id']}], threads={args.threads or 'all'} "
                        f"(OpenVINO kept when <= {OPENVINO_MARGIN:.2f}x ONNX Runtime's time)")
    for col in ("model", "onnxruntime ms", "openvino ms", "ov/ort", "auto keeps", "all probes agree"):
        table.add_column(col)
    for name, card in zoo().items():
        if card.precision != "fp32":
            continue
        path = resolve_model(name).path
        runs = [measure_candidates(path, args.threads, tuple(card.input_size))[0] for _ in range(args.repeat)]
        ort_ms = sorted(r.ms["onnxruntime"] for r in runs)[len(runs) // 2]
        ov_ms = sorted(r.ms["openvino"] for r in runs)[len(runs) // 2]
        picks = {r.chosen for r in runs}
        table.add_row(name, f"{ort_ms:.2f}", f"{ov_ms:.2f}", f"{ov_ms / ort_ms:.2f}",
                      choose({"onnxruntime": ort_ms, "openvino": ov_ms}), "yes" if len(picks) == 1 else
                      "no: " + "/".join(sorted(picks)))
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
