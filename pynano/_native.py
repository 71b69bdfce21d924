"""Import the compiled CFFI module, with a clear error when it is missing."""

from __future__ import annotations

from typing import Any

try:
    from ._pynano import ffi, lib  # type: ignore[import-not-found]
except ImportError as error:  # pragma: no cover - only without a build
    raise ImportError(
        "pynano's C extension (pynano._pynano) is not built or does not load "
        f"({error}). Install pynano with `pip install .` from the source tree, "
        "which fetches Mbed TLS and compiles it; a C compiler is needed."
    ) from error

ffi: Any
lib: Any

__all__ = ["ffi", "lib"]
