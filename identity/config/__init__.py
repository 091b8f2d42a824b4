"""Configuration: every setting with its default (defaults.py), each value's check (checks.py),
what is derived from them and required at start-up (startup.py), and the issuer identifier
(issuer.py)."""
