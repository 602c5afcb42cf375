"""Shared test setup."""

import random

import pytest


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state, so model initialisations repeat."""
    random.seed(1234)
