"""Shared fixtures: the offline models load once per test session (the loaders are cached too).

The suite runs with the network unreachable: every socket connection to anything but loopback is
refused (and HF_HUB_OFFLINE=1), so a test that silently needs the internet fails here, not in CI.
"""
import ipaddress
import os
import socket

import pytest
import torch

import xaicourse as xc


os.environ["HF_HUB_OFFLINE"] = "1"
_connect = socket.socket.connect


def _loopback_only(sock, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            allowed = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = False
        if not allowed:
            raise OSError(f"network blocked by the test suite: connection to {host} refused")
    return _connect(sock, address)


socket.socket.connect = _loopback_only


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
