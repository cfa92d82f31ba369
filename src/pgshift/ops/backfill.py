"""The backfill engine moved down to :mod:`pgshift.runner.backfill` (the step engine runs it); this
name stays for code written against the old path."""

from pgshift.runner.backfill import *  # noqa: F403
from pgshift.runner.backfill import Backfiller, BackfillError, BackfillOptions, BackfillResult, BackfillSpec

__all__ = ["BackfillError", "BackfillOptions", "BackfillResult", "BackfillSpec", "Backfiller"]
