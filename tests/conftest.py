"""Shared fixtures: the offline models load once per test session (the loaders are cached too)."""
import pytest
import torch

import xaicourse as xc


@pytest.fixture(scope="session")
def cnn():
    return xc.models.imagenet_cnn()


@pytest.fixture(scope="session")
def bert():
    return xc.models.bert()


@pytest.fixture(scope="session")
def cat_x(cnn):
    return cnn.preprocess(xc.data.image("cat"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
