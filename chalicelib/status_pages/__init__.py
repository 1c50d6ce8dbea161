"""Public status pages: the admin side, the public document, its HTML/Atom/SVG renderings, and publishing."""
