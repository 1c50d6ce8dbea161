"""Vigil's deploy: the CloudFormation merged into Chalice's package (``make infra``, ``make package``)."""
