"""Optional dependencies: which pip extra brings which import, and one message when it is missing.

``pip install spotdet`` (the core) runs ``detect``, ``eval``, ``models``, ``optimize`` and ``bench`` tables.
What only some commands need is an extra (pyproject.toml's ``[project.optional-dependencies]``): the HTTP
service, charts, Ray, OpenVINO, int4, NVML, supervision, distillation (PyTorch). A command that needs one calls ``require`` before it
does any work, so a missing package is a one-line ``MissingExtraError`` naming the extra (exit code 2), not an
ImportError traceback after a ten-minute benchmark.
"""

from __future__ import annotations

import importlib

from spotdet.errors import MissingExtraError

#: extra -> the top-level modules it provides (import names, not pip names); mirrors pyproject.toml
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "python_multipart", "prometheus_client"),
    "plot": ("matplotlib",),
    "ray": ("ray",),
    "openvino": ("openvino",),
    "int4": ("onnx_ir",),
    "gpu": ("pynvml",),
    "supervision": ("supervision",),
    "distill": ("torch", "torchvision", "onnx2torch", "ensemble_boxes"),
}


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, quoted for shells that glob square brackets (zsh)."""
    return f"pip install 'spotdet[{extra}]'"


def require(extra: str, purpose: str) -> None:
    """Import every module of ``extra``; raise MissingExtraError naming the extra if one is missing.

    ``purpose`` says who needs it, in the message: ``"spotdet serve"``, ``"--plot"``.
    Importing (not ``find_spec``) also catches a package that is present but broken, and costs nothing extra:
    the caller is about to import it anyway.
    """
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == module
            reason = "is not installed" if missing else f"cannot be imported: {exc}"
            raise MissingExtraError(f"{purpose} needs the '{extra}' extra ({module} {reason}); "
                                    f"{install_hint(extra)}", extra) from None
