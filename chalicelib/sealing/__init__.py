"""Secrets at rest, sealed under the stage's KMS key (``chalicelib.sealing.service``)."""
