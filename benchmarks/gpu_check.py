"""Every GPU path of spotdet in one command: a table per zoo model, then the service under load on the GPU.

    python benchmarks/gpu_check.py [--models yolox-nano,picodet-s-416] [--data ../shared/data/coco-val-dev]
                                   [--calib ../shared/data/coco128-train] [--batches 1,8,32] [--limit N]
                                   [--gpu 0] [--no-serve]

On a machine with an NVIDIA GPU and onnxruntime-gpu (``pip install 'spotdet[gpu]'``), for each zoo model:
CUDA fp32, CUDA fp16 (the fp16 variant), TensorRT fp32 / fp16 / int8 (int8: the fp32 file with the calibration
table of ``spotdet optimize --precision int8 --device tensorrt``), each with ms/img at batch 1 and at the best of
``--batches`` (dynamic-batch variants), mAP on ``--data`` (``spotdet.eval.coco.evaluate``), GPU memory (NVML, this
process, after the largest batch), and the cold start (load + first inference) with an empty and then a warm
TensorRT engine cache. Every configuration runs in its own process, so memory and cold starts are its own.
Then ``benchmarks/serve_load.py`` runs the HTTP service on the GPU.

Without a GPU it says so, checks what a CPU can (TensorRT options and engine keys for every precision, the shape
profile of a real dynamic-batch variant, a calibration table written from real images with the CPU provider and
read back, I/O binding equal to a plain run) and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
#: (label, device, precision asked of TensorRT, the variant file to load)
CONFIGS = [("CUDA fp32", "cuda", None, "fp32"), ("CUDA fp16", "cuda", None, "fp16"),
           ("CUDA int8d", "cuda", None, "int8-dynamic"),  # the zoo's int8-dynamic files as they are
           ("TRT fp32", "tensorrt", "fp32", "fp32"), ("TRT fp16", "tensorrt", "fp16", "fp32"),
           ("TRT int8", "tensorrt", "int8", "int8")]


def gpu_missing() -> str | None:
    import onnxruntime as ort

    from spotdet.cost.utilization.nvml import Nvml, NvmlUnavailable

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"ONNX Runtime has no CUDA provider here ({', '.join(ort.get_available_providers())})"
    try:
        Nvml().close()
    except NvmlUnavailable as exc:
        return str(exc)
    return None


# -- without a GPU -------------------------------------------------------------------------------------------------
def cpu_checks(calib: Path) -> None:
    """What needs no GPU: options, keys, profiles, a real calibration table, I/O binding."""
    import numpy as np
    import onnx
    from skimage import data as photos

    from spotdet.backends.onnx_tools import dims, real_inputs, runtime_bytes
    from spotdet.backends.onnxruntime import OrtBackend
    from spotdet.backends.tensorrt import TRT_PRECISIONS, trt_plan
    from spotdet.models.card import get_card
    from spotdet.models.ref import resolve_model
    from spotdet.optimize.api import OptimizeRequest, optimize
    from spotdet.optimize.trt_calibration import read_table
    from spotdet.vision.preprocess import preprocess

    ref = resolve_model("yolox-nano")
    data = runtime_bytes(ref.path)
    inputs = [(i.name, dims(i)) for i in real_inputs(onnx.load_from_string(data))]
    root = Path(tempfile.mkdtemp(prefix="spotdet-gpucheck-"))
    os.environ["SPOTDET_CACHE_DIR"] = str(root / "cache")
    print("TensorRT options per precision (yolox-nano; GPU name and TensorRT version as on an H100 with TRT 10.3):")
    kw = dict(gpu="NVIDIA H100 80GB HBM3", trt_version="tensorrt 10.3.0")
    table = root / "t.flatbuffers"
    table.write_bytes(b"placeholder table: only its hash enters the key")
    digests = {}
    for precision in TRT_PRECISIONS:
        plan = trt_plan(data, precision, inputs, table=table if precision == "int8" else None, **kw)
        digests[precision] = plan.key.digest
        flags = {k: v for k, v in plan.options.items() if k.startswith(("trt_fp16", "trt_int8"))}
        print(f"  {precision:<12} key {plan.key.digest}  {flags}")
    again = trt_plan(data, "fp16", inputs, **kw).key.digest
    other_gpu = trt_plan(data, "fp16", inputs, gpu="NVIDIA L4", trt_version=kw["trt_version"]).key.digest
    other_trt = trt_plan(data, "fp16", inputs, gpu=kw["gpu"], trt_version="tensorrt 10.4.0").key.digest
    assert again == digests["fp16"] and len({again, other_gpu, other_trt}) == 3 and len(set(digests.values())) == 4
    print("  engine keys: stable across calls; differ by precision, GPU and TensorRT version: ok")

    dynb = optimize("yolox-nano", OptimizeRequest(dynamic_batch=True), progress=False).path
    dyn_inputs = [(i.name, dims(i)) for i in real_inputs(onnx.load(str(dynb)))]
    plan = trt_plan(runtime_bytes(dynb), "fp16", dyn_inputs, **kw)
    print(f"  profile of the dynamic-batch variant: {plan.key.profile}")

    start = time.perf_counter()
    int8 = optimize("yolox-nano", OptimizeRequest(precision="int8", calib=calib, calib_count=16, device="tensorrt"),
                    progress=False)
    ranges = read_table(int8.path.with_name(int8.path.stem + ".trt-calibration.flatbuffers"))
    print(f"calibration table from 16 images of {calib.name} (CPU provider, {time.perf_counter() - start:.1f} s): "
          f"{len(ranges)} tensors, input range {ranges[inputs[0][0]]:.1f}")

    card = get_card("yolox-nano")
    tensor = preprocess(np.ascontiguousarray(photos.chelsea()[:, :, ::-1]), tuple(card.input_size), card.preprocess)[0]
    plain = OrtBackend(ref.path, device="cpu", io_binding=False).run(tensor)
    bound = OrtBackend(ref.path, device="cpu", io_binding=True).run(tensor)
    assert all(np.array_equal(a, b) for a, b in zip(plain, bound))
    print("I/O binding on the CPU provider: outputs equal to a plain run: ok")
    shutil.rmtree(root, ignore_errors=True)


# -- one configuration, in its own process -------------------------------------------------------------------------
def child(spec: dict) -> dict:
    """Load, time, evaluate one configuration; returns its figures (printed as JSON by ``--child``)."""
    from spotdet.backends.onnxruntime import OrtBackend
    from spotdet.bench.inputs import timing_images
    from spotdet.bench.measure import measure
    from spotdet.bench.memory import GpuMemory
    from spotdet.detector import Detector
    from spotdet.eval.coco import evaluate

    def load(name: str):
        if not spec["trt_precision"]:
            return Detector(name, device=spec["device"], backend="onnxruntime")
        # Detector takes no TensorRT precision: it loads on the CPU (cheap) and gets a TensorRT backend made with it
        det = Detector(name, device="cpu", backend="onnxruntime")
        det.backend = OrtBackend(det.model_path, device=spec["device"], precision=spec["trt_precision"])
        det.precision = spec["trt_precision"]
        return det

    start = time.perf_counter()
    det = load(spec["variant"])
    images, _ = timing_images(spec["data"], None)
    det.infer([det.prepare(images[0])], det.options)  # TensorRT may build at the first run: part of the cold start
    out = {"cold_s": time.perf_counter() - start, "provider": det.provider}
    if spec["cold_only"]:
        return out
    row = measure(det, None, 1, images, max_seconds=spec["max_seconds"])
    out["ms_b1"] = row.latency_p50_ms
    out["map"] = evaluate(det, spec["data"], limit=spec["limit"]).map50_95
    best = None
    if spec["dynbatch"]:
        det = load(spec["dynbatch"])
        for batch in spec["batches"]:
            r = measure(det, None, batch, images, max_seconds=spec["max_seconds"])
            if r.ok and (best is None or r.latency_p50_ms < best[1]):
                best = (batch, r.latency_p50_ms)
    out["best"] = best
    gpu = GpuMemory()
    out["vram_mb"] = gpu.used_mb()
    gpu.close()
    return out


def run_child(spec: dict) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                       env=os.environ.copy())
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def variants(model: str, calib: Path, tensorrt: bool) -> dict[str, tuple[str | None, str | None]]:
    """precision -> (batch-1 variant, dynamic-batch variant) names, built once with spotdet optimize (the int8
    calibration table only where TensorRT can use it)."""
    from spotdet.models.card import get_card
    from spotdet.optimize.api import OptimizeRequest, optimize

    card = get_card(model)
    out: dict[str, tuple[str | None, str | None]] = {}
    wanted = {"fp32": {}, "fp16": {"precision": "fp16"},
              "int8": {"precision": "int8", "calib": calib, "calib_count": 64, "device": "tensorrt"}}
    if not tensorrt:
        del wanted["int8"]
    if card.precision != "fp32":  # a file already quantized or halved (the zoo's int8-dynamic ones): itself only
        wanted = {card.precision: wanted.get(card.precision, {})}
    for precision, settings in wanted.items():
        try:
            single = model if precision == card.precision else optimize(model, OptimizeRequest(**settings),
                                                                        progress=False).card.name
        except Exception as exc:  # a precision the model cannot be built at: reported in the table
            print(f"  {model} {precision}: not built ({exc})")
            continue
        try:
            batched = optimize(model, OptimizeRequest(dynamic_batch=True, **settings), progress=False).card.name
        except Exception as exc:
            print(f"  {model} {precision} dynamic batch: not built ({exc})")
            batched = None
        out[precision] = (single, batched)
    return out


def gpu_table(model: str, args) -> None:
    from spotdet.backends.tensorrt import engine_root, tensorrt_runtime

    tensorrt = tensorrt_runtime()
    built = variants(model, args.calib, tensorrt is not None)
    print(f"\n{model}  (mAP on {args.data.name}{f', first {args.limit} images' if args.limit else ''}; "
          f"ms/img = p50 per image as spotdet bench times it)")
    print(f"{'path':<11}{'provider':<28}{'b1 ms/img':>10}{'best':>16}{'mAP':>7}{'VRAM MB':>9}"
          f"{'cold empty s':>14}{'cold warm s':>13}")
    for label, device, trt_precision, file_precision in CONFIGS:
        if device == "tensorrt" and tensorrt is None:
            print(f"{label:<11}-- TensorRT does not load here (no libnvinfer): unverified")
            continue
        if file_precision not in built:
            if file_precision in ("fp32", "fp16", "int8"):
                print(f"{label:<11}-- no {file_precision} variant")
            continue
        single, batched = built[file_precision]
        spec = {"variant": single, "dynbatch": batched, "device": device, "trt_precision": trt_precision,
                "data": str(args.data), "limit": args.limit,
                "batches": args.batches, "max_seconds": args.max_seconds, "cold_only": False}
        shutil.rmtree(engine_root(), ignore_errors=True)  # the first run builds every engine it needs
        full = run_child(spec)
        warm = run_child({**spec, "cold_only": True}) if "error" not in full else {}
        if "error" in full:
            print(f"{label:<11}failed: {full['error']}")
            continue
        best = f"{full['best'][1]:.2f} @b{full['best'][0]}" if full.get("best") else "-"
        vram = f"{full['vram_mb']:.0f}" if full.get("vram_mb") is not None else "-"
        print(f"{label:<11}{full['provider']:<28}{full['ms_b1']:>10.2f}{best:>16}{full['map']:>7.1f}{vram:>9}"
              f"{full['cold_s']:>14.1f}{warm.get('cold_s', float('nan')):>13.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: the whole zoo)")
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "coco-val-dev")
    ap.add_argument("--calib", type=Path, default=SHARED / "data" / "coco128-train")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    ap.add_argument("--max-seconds", type=float, default=5.0, help="timing budget per batch size")
    ap.add_argument("--gpu", type=int, default=None, help="GPU index (sets SPOTDET_GPU)")
    ap.add_argument("--no-serve", action="store_true", help="skip benchmarks/serve_load.py")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("SPOTDET_MODEL_DIR", str(SHARED / "models"))
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.gpu is not None:
        os.environ["SPOTDET_GPU"] = str(args.gpu)
    reason = gpu_missing()
    if reason:
        print(f"no GPU here: {reason}. Checking what a CPU can check; the GPU table needs an NVIDIA GPU with "
              "onnxruntime-gpu (pip install 'spotdet[gpu]').")
        cpu_checks(args.calib)
        return 0
    args.batches = [int(b) for b in args.batches.split(",")]
    import onnxruntime as ort

    from spotdet.backends.tensorrt import tensorrt_runtime
    from spotdet.cost.utilization.nvml import Nvml
    from spotdet.models.card import zoo

    with Nvml() as nvml:
        print(f"GPU: {nvml.description}")
    print(f"ONNX Runtime {ort.__version__} ({', '.join(ort.get_available_providers())}); "
          f"TensorRT: {tensorrt_runtime() or 'does not load (no libnvinfer)'}")
    # its own cache: the variants it builds, and engine caches it empties to time a cold start, never the user's
    os.environ["SPOTDET_CACHE_DIR"] = tempfile.mkdtemp(prefix="spotdet-gpucheck-")
    for model in [m for m in args.models.split(",") if m] or list(zoo()):
        gpu_table(model, args)
    if not args.no_serve:
        print("\nservice under load on the GPU (benchmarks/serve_load.py, ONNX Runtime on its best GPU provider):")
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "serve_load.py"), "--backends", "onnxruntime"],
                       check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
