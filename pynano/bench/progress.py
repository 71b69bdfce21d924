"""The progress bar of a bench run."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """A progress bar on stderr: tqdm when installed, else one rewritten line."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._total = total
        self._done = 0
        # A bar rewritten in place is noise in a log file, so show it on a terminal only.
        self._enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        if self._enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, unit="cell", file=sys.stderr, leave=False,
                                 bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")

    def step(self, label: str) -> None:
        """Show label as the cell being measured, after counting the previous one."""
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.set_description_str(label, refresh=False)
        else:
            sys.stderr.write(f"\r[{self._done + 1:>4}/{self._total}] {label:<60}")
            sys.stderr.flush()

    def advance(self) -> None:
        """Count one finished cell."""
        self._done += 1
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
        elif self._enabled:
            sys.stderr.write("\r" + " " * 72 + "\r")
            sys.stderr.flush()
