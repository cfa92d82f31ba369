from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.helpers import Project


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> Iterator[Project]:
    made = Project(tmp_path, db_url)
    try:
        yield made
    finally:
        made.stop()
