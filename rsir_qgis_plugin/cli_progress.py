"""The command line's progress bar: one tqdm bar on stderr that an engine `progress(percent, message)`
callback drives (index build, compaction, GeoParquet export)."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Callable

Progress = Callable[[float, str], None]


@contextlib.contextmanager
def progress_bar() -> Iterator[Progress]:
    """A 0-100 % bar with the engine's latest message after it; closed (and its line ended) on exit."""
    from tqdm import tqdm  # imported here: `rsir --help` and `rsir doctor` start without it

    # disable=None: no bar when stderr is not a terminal, so logs and pipes get only the summary.
    with tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
              file=sys.stderr, disable=None) as bar:
        def progress(percent: float, message: str) -> None:
            bar.update(percent - bar.n)  # the engine reports where it is, tqdm counts steps
            bar.set_postfix_str(message, refresh=False)

        yield progress
