"""pgshift: production-safe, zero-downtime PostgreSQL schema migrations."""

__version__ = "0.1.0"
