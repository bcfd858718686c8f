"""Inference engine: ONNX Runtime sessions and execution-provider selection."""

from spotdet.engine.session import EngineSession, choose_providers, create_session

__all__ = ["EngineSession", "choose_providers", "create_session"]
