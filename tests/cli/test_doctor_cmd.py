"""``spotdet doctor``: tables, --json, --clear-probes, from a real process."""

from __future__ import annotations

import json
import subprocess
import sys

from support.batch import cli_env


def _doctor(tmp_path, *args, env_extra=None):
    env = {**cli_env(tmp_path / "cache"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "spotdet", "doctor", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_json_names_the_cpu_and_the_choices(tmp_path):
    proc = _doctor(tmp_path, "--json", env_extra={"SPOTDET_CPU_FEATURES": "avx2,fma"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["machine"]["isa"] == "avx2" and data["machine"]["features"]["avx512_vnni"] is False
    assert data["choices"]["bf16"].startswith("refused")


def test_tables_and_clearing_the_probe_cache(tmp_path):
    proc = _doctor(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "this machine" in proc.stdout and "what spotdet does here" in proc.stdout and "int8-static" in proc.stdout
    cleared = _doctor(tmp_path, "--clear-probes")
    assert cleared.returncode == 0 and "cleared 0 cached backend measurement(s)" in cleared.stdout
