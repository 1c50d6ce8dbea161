"""HTTP(S) checks: the checker (``http.run_check``), its SSRF guard (``ssrf``), assertions and TLS helpers."""
