"""Test helpers shared across the suite, imported as a package (``from support.paths import MODEL_DIR``).

``tests/`` is on pytest's ``pythonpath`` (pyproject.toml), so these modules import by package name instead of
relying on bare ``conftest`` names.
"""
