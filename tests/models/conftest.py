"""Fixtures for model-loading tests: a seeded demo-architecture model and no network."""

from __future__ import annotations

import socket

import pytest
import torch

from fairvlm.models.architectures import DEMO_ARCH, build_model


@pytest.fixture(scope="module")
def reference_model() -> torch.nn.Module:
    """A randomly initialised demo-architecture model (seeded), never trained."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = build_model(DEMO_ARCH)
    return model.eval()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a network connection."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
