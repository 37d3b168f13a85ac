"""Settings for every test run from the repository root, doctests of the packages included."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_verification_cache(tmp_path_factory):
    """Tests remember verified certificates in a folder of their own, never the user's cache."""
    os.environ["PNP_STABLE_CACHE_DIR"] = str(tmp_path_factory.mktemp("pnp-stable-cache"))
    yield
