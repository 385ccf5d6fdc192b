"""Shared fixtures of the model tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (exact float results whatever the machine's core count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
