"""Shared fixtures for the whole suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs torch on one thread, restored afterwards. The tensors in tests are tiny
    (threads gain nothing), generation and training run one thread per process as the real
    commands do, and on a shared 2-core machine OpenMP threads waiting for each other made
    tests 10-100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
