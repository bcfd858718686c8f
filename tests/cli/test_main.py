"""The command line's entry: ``--help`` without the heavy libraries, and missing extras as one-line errors.

Absence of an extra is simulated in a fresh interpreter by ``sys.modules[name] = None`` before spotdet
starts (Python then fails ``import name`` with ModuleNotFoundError, as when the package is not installed).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.batch import cli_env, one_line_error

HEAVY = ("numpy", "cv2", "onnx", "onnxruntime", "PIL", "matplotlib", "fastapi", "pycocotools")


def run_cli(tmp_path, *args, hidden: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess:
    """``spotdet ARGS`` in a fresh interpreter with the modules in ``hidden`` made unimportable."""
    code = (f"import sys\nfor name in {list(hidden)!r}:\n    sys.modules[name] = None\n"
            "sys.argv = ['spotdet'] + sys.argv[1:]\nfrom spotdet.cli.main import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=cli_env(tmp_path / "cache"),
                          capture_output=True, text=True, timeout=timeout)


def test_help_imports_no_heavy_library(tmp_path):
    code = ("import sys\nsys.argv = ['spotdet', '--help']\nfrom spotdet.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(tmp_path / "cache"), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "eval" in proc.stdout and "serve" in proc.stdout  # every command is listed...
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"  # ...without importing what they run on


def test_help_works_without_the_core_runtime(tmp_path):
    """Stronger than the check above: with numpy, OpenCV and ONNX Runtime unimportable, --help still works."""
    proc = run_cli(tmp_path, "--help", hidden=("numpy", "cv2", "onnx", "onnxruntime"))
    assert proc.returncode == 0, proc.stderr
    assert "detect" in proc.stdout and "bench" in proc.stdout


@pytest.mark.parametrize("hidden, extra", [("uvicorn", "serve"), ("fastapi", "serve"),
                                           ("prometheus_client", "serve")])
def test_serve_without_the_serve_extra(tmp_path, hidden, extra):
    proc = run_cli(tmp_path, "serve", "--model", "fastestdet", hidden=(hidden,))
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert f"pip install 'spotdet[{extra}]'" in line and hidden in line


def test_bench_chart_without_matplotlib_fails_before_measuring(tmp_path):
    proc = run_cli(tmp_path, "bench", "fastestdet", "--chart", tmp_path / "c.png", hidden=("matplotlib",))
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'spotdet[plot]'" in one_line_error(proc)
    assert not (tmp_path / "c.png").exists()


def test_eval_plot_without_matplotlib_fails_before_the_model_runs(tmp_path):
    proc = run_cli(tmp_path, "eval", "--model", "fastestdet", "--data", tmp_path / "no-such-data", "--plot",
                   tmp_path / "pr.png", hidden=("matplotlib",))
    assert proc.returncode == 2, proc.stderr
    assert "'plot' extra" in one_line_error(proc)  # not "no such directory": the extra is checked first


def test_eval_json_works_without_matplotlib(tmp_path):
    """The core install (no 'plot' extra) evaluates; only --plot needs matplotlib."""
    from support.paths import VAL_DIR

    proc = run_cli(tmp_path, "eval", "--model", "fastestdet", "--data", VAL_DIR, "--limit", "3", "--json",
                   hidden=("matplotlib", "fastapi", "uvicorn", "ray", "onnx_ir", "supervision"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images"] == 3


def test_every_command_with_a_device_option_takes_a_gpu_index():
    """``--gpu N`` is how a user picks a GPU; a command that runs models on a device must accept it."""
    import typer.main

    from spotdet.cli.main import app

    def commands(group, prefix: str = ""):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):  # a group (Typer vendors its own click: no isinstance check)
                yield from commands(cmd, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", cmd

    with_device = {name: {opt for p in cmd.params for opt in p.opts}
                   for name, cmd in commands(typer.main.get_command(app)) if any("--device" in p.opts
                                                                                   for p in cmd.params)}
    assert {"detect", "eval", "serve", "batch run", "batch resume", "distill"} <= set(with_device)
    # optimize's --device names the target a variant is built for; it runs nothing on a GPU
    assert [name for name, opts in with_device.items() if "--gpu" not in opts] == ["optimize"]
