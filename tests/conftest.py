"""Shared by every test module: figures drawn off screen, and closed after each test that opened any."""

import sys

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    if "matplotlib.pyplot" in sys.modules:  # only where a test drew (most never import pyplot)
        sys.modules["matplotlib.pyplot"].close("all")
