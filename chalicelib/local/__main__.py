"""``python -m chalicelib.local`` (what ``make dev`` runs): all of Vigil on this machine.

See :mod:`chalicelib.local.stack` for what starts, in which order.
"""

from __future__ import annotations

import sys

from chalicelib.local.stack import run

if __name__ == "__main__":
    sys.exit(run())
