"""What the caches' first build says: what is being built, about how long it takes, and how long it took.

The estimates are rough: unit times measured on an idle 2-core machine, next to each builder (a loaded
or faster machine differs). Loops inside a build draw tqdm bars of their own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def duration(seconds: float) -> str:
    """`42 s`, `3.5 min`, `1.2 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@contextmanager
def building(what: str, estimate_s: float, enabled: bool = True) -> Iterator[None]:
    """Print (to stderr) `building WHAT: about N s` before the block and `built WHAT in N s` after it."""
    if enabled:
        print(f"building {what}: about {duration(estimate_s)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    yield
    if enabled:
        print(f"built {what} in {duration(time.perf_counter() - started)}", file=sys.stderr, flush=True)
