"""``spotdet doctor``: what this machine is and what spotdet will do on it, with the reason for each choice.

One report (a dict, printed as tables or JSON): the CPU and the instruction-set features spotdet's choices
depend on, GPUs, runtimes and providers with versions, what ``backend="auto"`` and each precision resolve to
here, and the timed backend decisions cached for this and other machines (``backends/probe.py``).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from spotdet.backends import probe
from spotdet.hardware import cpu_info, describe, fingerprint
from spotdet.hardware.cpu import TRACKED


def report() -> dict[str, Any]:
    """Everything ``spotdet doctor --json`` prints."""
    cpu = cpu_info()
    fp = fingerprint()
    runtimes = _runtimes()
    return {
        "machine": {"cpu": cpu.model, "logical_cpus": cpu.logical_cpus, "isa": cpu.isa,
                    "features": {flag: flag in cpu.features for flag in TRACKED},
                    "features_overridden": cpu.overridden, "gpus": fp["gpus"],
                    "fingerprint": fp["id"], "described": describe(fp)},
        "runtimes": runtimes,
        "choices": choices(cpu, runtimes),
        "probes": _probes(fp["id"]),
    }


def _runtimes() -> dict[str, Any]:
    import onnxruntime as ort

    found: dict[str, Any] = {"onnxruntime": {"version": ort.__version__,
                                              "providers": ort.get_available_providers()}}
    try:
        import openvino as ov

        core = ov.Core()
        found["openvino"] = {"version": ov.get_version().split("-")[0],
                             "cpu": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
                             "capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))}
    except ImportError:
        found["openvino"] = None
    from spotdet.backends.tensorrt import tensorrt_runtime

    found["tensorrt"] = tensorrt_runtime()
    for dist in ("torch", "ray"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def choices(cpu, runtimes: dict[str, Any]) -> dict[str, str]:
    """What each request resolves to on this machine, and why (one line each)."""
    providers = set(runtimes["onnxruntime"]["providers"])
    gpu = "CUDAExecutionProvider" in providers
    ov = runtimes.get("openvino")
    if gpu:
        auto = "onnxruntime on the GPU (CUDA provider present)"
    elif ov is None:
        auto = "onnxruntime (OpenVINO is not installed: pip install 'spotdet[openvino]')"
    elif not probe.probe_enabled():
        auto = "openvino (SPOTDET_BACKEND_PROBE=0: the fixed rule, no measurement)"
    else:
        auto = (f"for an fp32 model: whichever of onnxruntime/openvino a 1-2 s probe on the first load measures "
                f"faster (OpenVINO only if >= {1 - probe.OPENVINO_MARGIN:.0%} faster), cached per model below")
    if cpu.native_bf16 and ov is not None and "BF16" in ov["capabilities"]:
        bf16 = "openvino bf16 (native bf16: " + ", ".join(sorted(f for f in cpu.features if "bf16" in f)) + ")"
    elif ov is None:
        bf16 = "refused: needs the openvino extra and a CPU with native bf16"
    else:
        bf16 = f"refused: {cpu.model} ({cpu.isa}) has no native bf16 (AVX-512 BF16 or AMX); it would be emulated"
    if cpu.vnni:
        int8 = "onnxruntime QDQ with VNNI (exact 32-bit sums); `optimize --auto` keeps it only if measured faster"
    else:
        int8 = ("onnxruntime QDQ without VNNI: exact-sum mode on (session.x64quantprecision; the default 16-bit "
                "sums saturate and lose accuracy, docs/hardware.md); `optimize --auto` keeps it only if measured "
                "faster and within its mAP bound here")
    return {"backend=auto": auto, "fp32": auto if not gpu else "onnxruntime CUDA fp32", "bf16": bf16,
            "int8-static": int8, "int8-dynamic": "onnxruntime (ConvInteger/MatMulInteger; CPU kernels only)",
            "fp16": ("onnxruntime CUDA fp16" if gpu else
                     "onnxruntime CPU: smaller file, slower than fp32 on CPUs (docs/optimize.md); meant for GPUs")}


def _probes(here: str) -> list[dict[str, Any]]:
    rows = []
    for key, entry in sorted(probe.load_cache().items()):
        rows.append({**entry, "key": key, "this_machine": entry.get("hardware") == here})
    return rows
