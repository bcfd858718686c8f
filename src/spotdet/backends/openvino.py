"""The OpenVINO backend: the same ONNX files on Intel/AMD CPUs, with bf16 kernels where the CPU has them.

Why a second runtime: on CPUs with native bf16 (AVX-512 BF16, AMX), OpenVINO's bf16 inference is the
precision lever that pays (issue 10's measurements: picodet-s-416 14.5 ms in ONNX Runtime fp32 -> 6.9 ms in
OpenVINO bf16 at the same mAP), where fp16 and int8 do not on these CPUs.

Precision is a property of the compiled model, not of the file: ``fp32`` compiles with an explicit f32
inference precision (OpenVINO would otherwise pick bf16 by itself on AMX CPUs, and fp32 must mean exact float
results); ``bf16`` asks for bf16 and is refused where the CPU has no native bf16.

``bf16`` is mixed: the network's first convolutions stay in f32 (``BF16_F32_STEM``). OpenVINO's CPU plugin
already keeps the graph's tail (everything after the last convolution on the way to an output) in f32, so the
head was not where accuracy went: keeping the head's convolutions in f32 too changed nothing measurable. The
other end did: the stem convolutions run at full resolution on the raw input, and the rounding of their
weights and outputs to bf16's 8 significant bits is inherited by every later layer. Measured on coco-val-dev
(docs/backends.md): all-bf16 moved mAP by -0.60 (yolox-nano) and +0.55 (picodet-s-416) against fp32; with
the first convolution in f32, -0.38 and +0.15; with the first two, -0.13 and +0.02, keeping most of the
speed-up. The plugin reads the per-node ``DisablePrecisionConversion`` runtime attribute (its f16 entry, for
every lower precision), which Python cannot build: it is written into the model's IR (``_keep_in_f32``) and
read back, so OpenVINO parses it as from a model saved with it.

Compiled models are cached under spotdet's home (OpenVINO's ``CACHE_DIR``), so a service that scaled to zero
does not pay compilation again on its next cold start.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from spotdet.backends.base import is_out_of_memory
from spotdet.errors import ProviderUnavailableError, UnsupportedModelError, UsageError
from spotdet.hardware import CpuInfo, cpu_info

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # spotdet precision -> OpenVINO inference precision hint
#: how many convolutions from the input a bf16 compile keeps in f32 (see the module docstring)
BF16_F32_STEM = 2
#: OpenVINO op types that the CPU plugin runs in bf16 for speed (the ones worth keeping in f32 or not)
_CONV_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
INSTALL_HINT = "install it with `pip install 'spotdet[openvino]'`"
OV_DEVICE = "CPU"


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _core():
    try:
        import openvino as ov
    except ImportError:
        raise ProviderUnavailableError(f"backend 'openvino' needs the openvino package, which is not installed; "
                                       f"{INSTALL_HINT}, or use backend='onnxruntime'") from None
    return ov.Core()


def check_bf16(capabilities: Iterable[str], cpu: CpuInfo | None = None) -> None:
    """Refuse bf16 where the CPU has no native bf16 kernels (OpenVINO would emulate it, slower than fp32).

    Both must say yes: the CPU's features (``spotdet.hardware``, which SPOTDET_CPU_FEATURES can override) and
    OpenVINO's own ``OPTIMIZATION_CAPABILITIES`` for its CPU device.
    """
    cpu = cpu or cpu_info()
    if not cpu.native_bf16 or "BF16" not in set(capabilities):
        raise UsageError(f"precision 'bf16' needs a CPU with native bf16 (AVX-512 BF16 or AMX); {cpu.model} "
                         f"({cpu.isa}) has none, so bf16 would be emulated and slower than fp32. Use "
                         "precision='fp32' (`spotdet doctor` shows what this CPU has)")


def stem_convolutions(model, count: int = BF16_F32_STEM) -> list[str]:
    """Friendly names of the first ``count`` convolutions in ``model``'s topological order: the ones nearest
    the input, whose rounding error every later layer inherits."""
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in _CONV_TYPES]
    return convs[:count]


def _keep_in_f32(core, model, names: Iterable[str]):
    """``model`` with the nodes ``names`` marked to stay in f32 under a lower inference precision.

    The mark is the ``DisablePrecisionConversion`` runtime attribute that the CPU plugin checks per node; the
    Python API can only attach strings to a node, so the attribute goes in through the IR: save the model,
    add ``<attribute name="DisablePrecisionConversion" value="dynamic:f16"/>`` to those layers, read it back.
    (The plugin reads the f16 entry for every lower precision, bf16 included.)
    """
    import openvino as ov

    wanted = set(names)
    with tempfile.TemporaryDirectory(prefix="spotdet-ov-") as tmp:
        xml_path = Path(tmp) / "model.xml"
        ov.save_model(model, str(xml_path), compress_to_fp16=False)
        tree = ET.parse(xml_path)
        marked = set()
        for layer in tree.getroot().iter("layer"):
            if layer.get("name") in wanted:
                info = layer.find("rt_info")
                info = ET.SubElement(layer, "rt_info") if info is None else info
                ET.SubElement(info, "attribute", {"name": "DisablePrecisionConversion", "version": "0",
                                                  "value": "dynamic:f16"})
                marked.add(layer.get("name"))
        if marked != wanted:
            raise UnsupportedModelError(f"OpenVINO IR has no layers named {sorted(wanted - marked)}")
        weights = ov.Tensor(np.fromfile(xml_path.with_suffix(".bin"), dtype=np.uint8))
        return core.read_model(ET.tostring(tree.getroot(), encoding="unicode"), weights)


def conv_precisions(compiled) -> dict[str, str]:
    """The compiled model's executed convolutions and the precision each runs in (the exec graph's view):
    what tells whether a node asked to stay in f32 did."""
    runtime = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in ("Convolution", "Deconvolution", "FullyConnected", "MatMul"):
            for original in info["originalLayersNames"].astype(str).split(","):
                runtime[original] = info["runtimePrecision"].astype(str)
    return runtime


def _outputs(request, count: int) -> list[np.ndarray]:
    # copies: the request's output buffers are reused by its next call
    return [np.array(request.get_output_tensor(i).data) for i in range(count)]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def cache_dir() -> Path:
    from spotdet.models.locations import spotdet_home

    return spotdet_home() / "openvino-cache"


class OpenVinoBackend:
    """A model compiled by OpenVINO for the CPU at fp32 or bf16; one infer request per calling thread.

    Two ways to run, chosen per call by the batch size. One image runs on the latency compile: one stream
    with every core, the fastest way through a single image. A batch of several images for a batch-1 file
    (every zoo file) runs on a throughput compile (``PERFORMANCE_HINT=THROUGHPUT``, made on first use: one
    stream per core or pair of cores), each image its own request in an ``AsyncInferQueue``, so the images run
    side by side instead of failing on the file's batch dimension. ``input_shape`` still reports the file's
    batch of 1, so bench and the service batcher treat the model as the static-batch file it is;
    ``split_batches`` says that ``run`` takes a batch anyway, which ``Detector.takes_batches`` reads to hand a
    stream of images over in batches (benchmarks/openvino_split.py: 1.17-1.19x images/s on PicoDet, 0.97x on
    yolox-nano; docs/backends.md).
    """

    name = "openvino"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None,
                 precision: str = "fp32", cache: bool = True, f32_stem: int = BF16_F32_STEM) -> None:
        """``f32_stem``: under bf16, how many convolutions from the input stay in f32 (0: all bf16, as
        OpenVINO compiles it by itself; kept as a knob for benchmarks/backend_compare.py)."""
        if device not in ("auto", "cpu"):
            raise UsageError(f"backend 'openvino' runs on the CPU here; device {device!r} needs backend='onnxruntime'")
        if precision not in PRECISIONS:
            raise UsageError(f"backend 'openvino' runs fp32 or bf16 models, got precision {precision!r}")
        if threads is not None and threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        if f32_stem < 0:
            raise UsageError(f"f32_stem must be >= 0, got {f32_stem}")
        core = _core()
        if precision == "bf16":
            check_bf16(core.get_property(OV_DEVICE, "OPTIMIZATION_CAPABILITIES"))
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache:
            cache_dir().mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir())
        try:
            model = core.read_model(str(path))
            if precision == "bf16" and f32_stem > 0:
                model = _keep_in_f32(core, model, stem_convolutions(model, f32_stem))
            self.compiled = core.compile_model(model, OV_DEVICE, config)
        except Exception as exc:  # OpenVINO raises RuntimeError with the frontend's message
            raise UnsupportedModelError(f"OpenVINO could not load {path}: {_first_line(exc)}") from None
        self._core, self._model, self._config = core, model, config
        self._streams = None  # the throughput compile, made on the first batch of several images
        self._streams_lock = threading.Lock()
        self.precision = precision
        self.provider = f"OpenVINO {OV_DEVICE} {PRECISIONS[precision]}"
        self.input_shape = [d.get_length() if d.is_static else None
                            for d in self.compiled.inputs[0].get_partial_shape()]
        #: a batch-1 file takes any batch here anyway (its images split over the throughput compile's streams)
        self.split_batches = self.input_shape[0] == 1
        self._local = threading.local()
        # Touch a tensor's numpy view once, here, on one thread: pyopenvino builds a function-local static on
        # first use, and threads racing into that first use deadlock (one waits on the static's guard while
        # holding the GIL, the other holds the guard and waits for the GIL); seen with 40 concurrent requests.
        _ = self._request().get_input_tensor(0).data
        log.info("model %s on %s", Path(path).name, self.provider)

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:  # an infer request is not thread-safe: the service runs batches on several threads
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        if self.split_batches and len(tensor) > 1:
            return self._run_side_by_side(tensor)
        request = self._request()
        request.infer({0: tensor})
        return _outputs(request, len(self.compiled.outputs))

    def _queue(self):
        """This thread's queue of infer requests on the throughput compile (compiled once, on first use)."""
        queue = getattr(self._local, "queue", None)
        if queue is not None:
            return queue
        with self._streams_lock:
            if self._streams is None:
                import openvino as ov

                config = {**self._config, "PERFORMANCE_HINT": "THROUGHPUT"}
                try:
                    self._streams = self._core.compile_model(self._model, OV_DEVICE, config)
                except Exception as exc:
                    raise UnsupportedModelError(f"OpenVINO could not compile for throughput: {_first_line(exc)}") \
                        from None
                self._async_queue = ov.AsyncInferQueue
        queue = self._local.queue = self._async_queue(self._streams)  # its size: the compile's optimal requests
        n_outputs = len(self._streams.outputs)
        queue.set_callback(lambda request, slot: slot[0].__setitem__(slot[1], _outputs(request, n_outputs)))
        return queue

    def _run_side_by_side(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Each image of the batch as its own request, as many in flight as the throughput compile has
        streams; the outputs are stacked back into one batch."""
        queue = self._queue()
        per_image: list[list[np.ndarray] | None] = [None] * len(tensor)
        for i in range(len(tensor)):
            queue.start_async({0: tensor[i:i + 1]}, (per_image, i))
        queue.wait_all()
        if any(out is None for out in per_image):  # a failed request leaves its slot empty
            raise RuntimeError("OpenVINO: an infer request of the batch returned no output")
        return [np.concatenate([out[k] for out in per_image]) for k in range(len(per_image[0]))]  # type: ignore[index]

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return is_out_of_memory(exc)

    def __repr__(self) -> str:
        return f"OpenVinoBackend(provider={self.provider!r}, input_shape={self.input_shape})"
