"""What people's text may not carry: C0 controls but tab and line breaks, DEL and C1 (invisible noise), lone
surrogates and the two non-characters — nothing XML 1.0 (an Atom feed, an SVG badge) would refuse or a reader
would see.  The API refuses them in names and text; the status page renderer leaves out any stored before."""

from __future__ import annotations

import re

# As regular-expression escapes, which ECMA 262 reads as Python does: the API's JSON Schema publishes the same class
# (chalicelib.schema), without the surrogates, which a JSON Schema validator's engine cannot name.
UNSEEN = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff"
SURROGATES = r"\ud800-\udfff"
LINE_BREAKS = r"\t\n\r"
CONTROLS = UNSEEN + SURROGATES
NOT_TEXT = re.compile(f"[{CONTROLS}]")
NOT_A_LINE = re.compile(f"[{CONTROLS}{LINE_BREAKS}]")
