"""A prediction server over a test project's registered models, in-process."""

from __future__ import annotations

import pytest

from tests.helpers import running
from tests.toy import server_config


@pytest.fixture
def served(two_versions):
    """A client of a blue-green server over this test's copy of the two standard versions
    (``two_versions`` in tests/conftest.py: v1 champion, v2 candidate); (client, project)."""
    with running(server_config(two_versions)) as client:
        yield client, two_versions
