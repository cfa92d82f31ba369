"""The command line: wiring and rendering only; the work is done by pgshift.api and friends."""
