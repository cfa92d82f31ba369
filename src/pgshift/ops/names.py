"""Generated names moved down to :mod:`pgshift.runner.names` (the backfill engine needs them); this
name stays for code written against the old path."""

from pgshift.runner.names import MAX_BYTES, clip, fit, qualified, quote_ident

__all__ = ["MAX_BYTES", "clip", "fit", "qualified", "quote_ident"]
