"""Decoders per model family and non-maximum suppression."""
