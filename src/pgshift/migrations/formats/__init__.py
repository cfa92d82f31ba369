"""One reader per folder format. Each module offers ``detect(path) -> bool`` and
``load(path) -> list[Migration]``; ``pgshift.migrations.loader`` picks one."""
