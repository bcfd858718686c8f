"""The on-demand HTTP detection service: batching, scale-to-zero, warm windows, metrics, cost."""

from spotdet.serve.config import ServeConfig

__all__ = ["ServeConfig"]
