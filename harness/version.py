"""The installed harness's version, read from its package metadata (as inspect_ai and lm-eval read theirs).

A leaf: the engine, the fleet and the CLI stamp it on what they write without importing the package's
`__init__` (which re-exports the API).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harness")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
