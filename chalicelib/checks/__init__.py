"""The probe library: HTTP(S) checks (``http.run_check``), their SSRF guard (``ssrf``), assertions, TLS helpers,
and the job contract that carries a check from the scheduler to a region's worker (``jobs``).  It depends on no
area: the scheduler and the check worker (``functions/checker``) import it, never the other way round."""
