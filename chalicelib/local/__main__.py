"""``python -m chalicelib.local`` (what ``make dev`` runs): all of Vigil on this machine; ``--demo`` (what
``make demo`` runs) seeds a living demo into it.

See :mod:`chalicelib.local.stack` for what starts, in which order, and :mod:`chalicelib.local.demo`.
"""

from __future__ import annotations

import sys

from chalicelib.local.stack import run

if __name__ == "__main__":
    unknown = [arg for arg in sys.argv[1:] if arg != "--demo"]
    if unknown:
        sys.exit(f"usage: python -m chalicelib.local [--demo] (not {' '.join(unknown)})")
    sys.exit(run(demo="--demo" in sys.argv[1:]))
