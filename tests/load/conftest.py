"""The benches count AWS requests through botocore's event hooks (tests/load/meter.py).

A botocore session takes its built-in handlers when it is made, and a client its session's: the hooks go in
before any test makes one.  They count nothing until a bench starts a meter.
"""

from __future__ import annotations

from tests.load import meter

meter.install()
