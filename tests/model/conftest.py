"""A small float64 hybrid model shared by the model tests."""

import pytest
import torch

import hybridpot
from hybridpot.testing.structures import small_model_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return hybridpot.build_model(small_model_config())
