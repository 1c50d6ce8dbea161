"""Vigil: uptime monitoring, serverless on AWS."""
