"""Precisions as builders in a registry, like the decoders in ``postprocess/decoders.py``.

Each module builds one precision and registers a ``Builder`` (``precisions/base.py``): its name, its
``build(graph, card, request, progress) -> Built`` and its preconditions. Adding a precision means adding
a module and listing its BUILDER here.
"""

from __future__ import annotations

from spotdet.optimize.errors import PrecisionUnsupportedError
from spotdet.optimize.precisions import dequantize, fp16, int4, int8_dynamic, int8_static
from spotdet.optimize.precisions.base import Builder, Built

PRECISIONS: dict[str, Builder] = {b.name: b for b in (fp16.BUILDER, int8_dynamic.BUILDER, int8_static.BUILDER,
                                                      int4.BUILDER, dequantize.BUILDER)}


def builder_for(precision: str) -> Builder:
    """The registered builder of ``precision``; an unknown name is refused with the choices."""
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise PrecisionUnsupportedError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}") \
            from None


__all__ = ["PRECISIONS", "Builder", "Built", "builder_for"]
