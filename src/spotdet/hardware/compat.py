"""Which CPU a quantized variant was built and checked on, and the one warning when it runs on a CPU whose INT8
arithmetic differs.

Why: ONNX Runtime's INT8 convolutions take a different path with and without VNNI. With VNNI (AVX-512 VNNI,
AVX-VNNI, AMX) u8 x s8 products are summed in 32 bits; on AVX2 alone ``vpmaddubsw`` adds pairs of them in 16 bits
and saturates. The mixed-precision selection of int8-static (optimize/mixed.py) measures the quantized model on
the machine that builds it, so its accuracy check holds for CPUs of that class. A card records the class
(``built_on``); a Detector that loads the variant on the other class says so once.
"""

from __future__ import annotations

import logging
from typing import Any

from spotdet.hardware.cpu import CpuInfo, cpu_info
from spotdet.hardware.fingerprint import fingerprint

log = logging.getLogger(__name__)
#: precisions whose results depend on the CPU's integer dot-product instructions
INT8_PRECISIONS = ("int8-static", "int8-dynamic")
_warned: set[tuple[str, str]] = set()


def built_on_record() -> dict[str, Any]:
    """What a card stores about the machine that built and checked a variant."""
    fp = fingerprint()
    cpu = cpu_info()
    return {"cpu": fp["cpu"], "isa": fp["isa"], "vnni": cpu.vnni, "features": fp["features"],
            "fingerprint": fp["id"]}


def int8_mismatch(name: str, precision: str, built_on: dict[str, Any] | None,
                  cpu: CpuInfo | None = None) -> str | None:
    """Why an INT8 variant's checked accuracy may not hold on this CPU, or None (not INT8, no record, same class)."""
    if precision not in INT8_PRECISIONS or not built_on or "vnni" not in built_on:
        return None
    cpu = cpu or cpu_info()
    if bool(built_on["vnni"]) == cpu.vnni:
        return None
    here = "has VNNI" if cpu.vnni else "has no VNNI (its INT8 kernels sum u8 x s8 pairs in 16 bits, saturating)"
    return (f"{name} was built and checked on {built_on.get('cpu', '?')} ({built_on.get('isa', '?')}); this CPU, "
            f"{cpu.model} ({cpu.isa}), {here}: its accuracy and speed may differ from that check. Rebuild it here "
            "(spotdet optimize) or run the fp32 model; `spotdet doctor` shows this CPU")


def warn_if_built_elsewhere(name: str, precision: str, built_on: dict[str, Any] | None) -> str | None:
    """Log the mismatch once per model and process; return it (for callers that show it themselves)."""
    reason = int8_mismatch(name, precision, built_on)
    if reason and (name, reason) not in _warned:
        _warned.add((name, reason))
        log.warning("%s", reason)
    return reason
