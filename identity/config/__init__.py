"""Configuration: every setting with its default (defaults.py), what is derived from them and
required at start-up (startup.py), and the issuer identifier (issuer.py)."""
