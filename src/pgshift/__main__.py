"""``python -m pgshift``."""

from pgshift.cli.main import main

main()
