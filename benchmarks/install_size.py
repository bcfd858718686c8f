"""Installed size of spotdet's core and of each extra: one fresh virtual environment per configuration.

    python benchmarks/install_size.py                      # every configuration, table to stdout
    python benchmarks/install_size.py core serve --json    # some of them, as JSON

Each configuration is a normal ``pip install 'PROJECT[EXTRA]'`` (dependencies resolved, not editable) from
the local checkout into ``/tmp/spotdet-size/NAME``; its size is ``du`` of the environment's site-packages,
minus the site-packages of an empty environment (pip itself), so the figure is what spotdet brings.
"Over core" is that minus the core's. ``--before REF`` also measures the dependencies of the project file at
a git revision (e.g. HEAD before the extras split), with the current sources.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"core": "", "serve": "serve", "plot": "plot", "ray": "ray", "openvino": "openvino", "int4": "int4",
           "supervision": "supervision", "gpu": "gpu", "all": "all"}
WORK = Path(tempfile.gettempdir()) / "spotdet-size"


def site_packages(venv: Path) -> Path:
    found = list((venv / "lib").glob("python*/site-packages"))
    assert len(found) == 1, found
    return found[0]


def du_bytes(path: Path) -> int:
    """Bytes on disk (``du -s --block-size=1``): what the install costs, hard links and all."""
    return int(subprocess.run(["du", "-s", "--block-size=1", str(path)], check=True, capture_output=True,
                              text=True).stdout.split()[0])


def fresh_venv(name: str) -> Path:
    venv = WORK / name
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return venv


def install(name: str, project: Path, extra: str) -> dict:
    venv = fresh_venv(name)
    target = f"{project}[{extra}]" if extra else str(project)
    start = time.perf_counter()
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", target],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        return {"config": name, "error": proc.stderr.strip().splitlines()[-1:] or ["pip failed"]}
    # does the core still import after the extra's dependencies? (e.g. a second OpenCV wheel over the first)
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import cv2, onnxruntime, spotdet.detector"],
                           capture_output=True, text=True)
    packages = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                              capture_output=True, text=True, check=True).stdout
    return {"config": name, "install": f"pip install '{target.replace(str(project), '.')}'",
            "bytes": du_bytes(site_packages(venv)), "packages": len(json.loads(packages)),
            "core_imports": check.returncode == 0, "import_error": check.stderr.strip().splitlines()[-1:],
            "seconds": round(seconds, 1)}


def project_copy(ref: str | None = None) -> Path:
    """A copy of the checkout to install from (pip builds in the source tree: this keeps build/ out of the
    checkout); with ``ref``, its pyproject.toml is the one at that git revision."""
    copy = WORK / f"project-{(ref or 'current').replace('/', '_')}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "__pycache__",
                                                              "build", ".pytest_cache"))
    if ref:
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:pyproject.toml"], check=True,
                              capture_output=True, text=True).stdout
        (copy / "pyproject.toml").write_text(text)
    return copy


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=list(CONFIGS), help=f"any of {', '.join(CONFIGS)}")
    parser.add_argument("--before", metavar="REF", help="also measure `pip install .` with REF's pyproject.toml")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    empty = du_bytes(site_packages(fresh_venv("empty")))
    project = project_copy()
    rows = [install(name, project, CONFIGS[name]) for name in args.configs]
    if args.before:
        rows.append(install(f"before ({args.before})", project_copy(args.before), ""))
    for row in rows:
        if "bytes" in row:
            row["bytes"] -= empty
    core = next((r["bytes"] for r in rows if r["config"] == "core" and "bytes" in r), None)
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "empty_venv_bytes": empty, "rows": rows}, indent=2))
        return
    print(f"Python {sys.version.split()[0]}; site-packages of a fresh venv minus an empty one ({mb(empty)})\n")
    print("| configuration | command | installed | over core | packages | core still imports |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['config']} | | failed: {r['error']} | | | |")
            continue
        over = "" if core is None or r["config"] == "core" else f"{'+' if r['bytes'] >= core else ''}" \
                                                               f"{mb(r['bytes'] - core)}"
        ok = "yes" if r["core_imports"] else f"NO ({r['import_error'][0] if r['import_error'] else '?'})"
        print(f"| {r['config']} | `{r['install']}` | {mb(r['bytes'])} | {over} | {r['packages']} | {ok} |")


if __name__ == "__main__":
    main()
