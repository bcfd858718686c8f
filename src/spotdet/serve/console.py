"""The web console: a page at ``/`` to try the model and watch the service (issue 14, being built)."""

from __future__ import annotations

from fastapi import FastAPI

from spotdet.serve.service import DetectionService


def install_console(app: FastAPI, service: DetectionService) -> None:
    """Serve the console's page, its static files and the JSON stats it polls."""
