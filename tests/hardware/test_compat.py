"""The CPU class an INT8 variant was built on, and the one warning when it runs on the other class."""

from __future__ import annotations

import logging

from spotdet.hardware import CpuInfo
from spotdet.hardware.compat import built_on_record, int8_mismatch, warn_if_built_elsewhere

VNNI_CPU = CpuInfo("Intel Xeon 8481C", 4, frozenset({"avx2", "avx512f", "avx512_vnni", "amx_int8"}))
AVX2_CPU = CpuInfo("AMD EPYC 7B13", 2, frozenset({"avx2", "fma"}))


def test_a_card_records_the_cpu_class_it_was_built_on(avx2_only_cpu):
    rec = built_on_record()
    assert rec["isa"] == "avx2" and rec["vnni"] is False and rec["features"] == ["avx2", "fma"]
    assert len(rec["fingerprint"]) == 12


def test_int8_built_with_vnni_and_run_without_names_the_cause():
    built = {"cpu": VNNI_CPU.model, "isa": VNNI_CPU.isa, "vnni": True}
    reason = int8_mismatch("yolox-nano-int8-static", "int8-static", built, AVX2_CPU)
    assert "8481C (amx)" in reason and "7B13 (avx2)" in reason and "no VNNI" in reason and "16 bits" in reason
    assert "has VNNI" in int8_mismatch("m", "int8-static", {**built, "vnni": False}, VNNI_CPU)
    assert int8_mismatch("m", "int8-static", built, VNNI_CPU) is None  # same class
    assert int8_mismatch("m", "fp32", built, AVX2_CPU) is None  # float: same kernels class
    assert int8_mismatch("m", "int8-static", None, AVX2_CPU) is None  # the zoo's own files: no record


def test_the_warning_is_logged_once_per_model(avx2_only_cpu, caplog):
    built = {"cpu": "Xeon", "isa": "avx512-vnni", "vnni": True}
    with caplog.at_level(logging.WARNING, logger="spotdet.hardware.compat"):
        for _ in range(3):
            assert warn_if_built_elsewhere("once-model", "int8-static", built)
    assert sum("once-model" in r.message for r in caplog.records) == 1
