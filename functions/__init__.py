"""Lambdas deployed outside the Chalice app (they still run chalicelib's code)."""
