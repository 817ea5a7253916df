"""Session-wide test set-up."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_rule_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the rule catalog (trainlint.catalog) out of the user's cache directory: every test
    process and every trainlint the tests start reads and writes it under a temporary one."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user-cache"))
    yield
    if saved is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = saved
