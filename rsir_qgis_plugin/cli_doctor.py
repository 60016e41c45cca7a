"""`rsir doctor`: the diagnostics report, for a bug report or to see what is missing."""
from __future__ import annotations

import sys

from .cli_errors import EXIT_ERROR, EXIT_OK


def doctor(args=None) -> int:
    """The diagnostics report on stdout; each piece missing for indexing and search on stderr."""
    from .diagnostics import gather, problems, render

    checks = gather()
    print(render(checks), end="")
    missing = problems(checks)
    for line in missing:
        print(f"rsir: doctor: {line}", file=sys.stderr)
    return EXIT_ERROR if missing else EXIT_OK
