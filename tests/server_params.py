"""Narrowing ``any_server`` for one test."""

from __future__ import annotations

import pytest

reference_only = pytest.mark.parametrize("any_server", ["devserver"], indirect=True)
"""The test needs the reference server's fault injection or its request bodies."""
