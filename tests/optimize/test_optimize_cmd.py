"""`spotdet optimize` as a real process: output and exit codes, and Ctrl-C mid-calibration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from support.paths import COCO128, MODEL_DIR


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "SPOTDET_MODEL_DIR": str(MODEL_DIR), "SPOTDET_CACHE_DIR": str(tmp_path / "c"),
            "NO_COLOR": "1"}


def test_ctrl_c_during_calibration_leaves_no_partial_file(tmp_path):
    """SIGINT to a real `spotdet optimize` process mid-calibration: exit 130, no model, no temp file."""
    out_dir = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "spotdet.cli.main", "optimize", "yolox-nano", "-p", "int8-static",
                             "--calib", str(COCO128), "--calib-count", "128", "-o", str(out_dir / "m.onnx")],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # imports + graph preparation; calibrating 128 images takes far longer
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not (out_dir / "m.onnx").exists()
    assert not out_dir.exists() or not list(out_dir.glob("*.part"))


def test_cli_optimize_and_errors(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "spotdet.cli.main", "optimize", *args], env=_env(tmp_path),
                              capture_output=True, text=True, timeout=300)

    ok = run("yolox-nano", "-p", "fp16", "-o", str(tmp_path / "y16.onnx"))
    assert ok.returncode == 0, ok.stderr
    assert "yolox-nano-fp16" in ok.stdout and (tmp_path / "y16.card.toml").is_file()
    assert "faster" in ok.stderr  # the fp16-on-CPU note
    batched = run("yolox-nano", "--dynamic-batch", "-o", str(tmp_path / "b.onnx"))
    assert batched.returncode == 0, batched.stderr
    assert "Reshape shape(s) rewritten; batch-4 outputs match" in batched.stdout
    for args, code, text in [
        (("yolox-nano", "-p", "int4"), 2, "int4 is not applicable"),
        (("yolox-nano", "-p", "int8-static", "--calib", str(tmp_path / "nope")), 2, "no such directory"),
        (("yolox-nano", "-p", "fp16", "--activation-bits", "4"), 2, "activation bits must be 8 or 16"),
        (("yolox-nano",), 2, "say what to build"),
        (("yolox-nano", "--auto", "--calib", str(COCO128), "--data", str(tmp_path)), 2, "instances.json"),
        (("fastestdet", "--dynamic-batch", "-o", str(tmp_path / "f.onnx")), 1, "refused"),
    ]:
        r = run(*args)
        assert r.returncode == code, (args, r.stderr)
        assert text in r.stderr and "Traceback" not in r.stderr, r.stderr
