"""Shared test set-up."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    # One intra-op thread per test: the models and MTCNN here are small, and on a 2-core machine
    # oversubscribed OpenMP threads spin and run 10-20x slower. A fixed seed keeps random init repeatable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
