from __future__ import annotations

import pytest

from tests.brokers import make_broker


@pytest.fixture
def broker(tmp_path):
    """A running mosquitto on a free loopback port; stopped after the test."""
    b = make_broker(tmp_path / "broker").start()
    yield b
    b.stop()
