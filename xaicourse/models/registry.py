"""One registry of model loaders: offline defaults, online names, the network guard, the cache.

A :class:`Family` is one public loader (``imagenet_cnn``, ``bert``, ...): the names that load with no
network (the first is the default), the online names (hub models of the source material, downloaded
the first time), and one builder per name. :meth:`Family.load` checks the name (an unknown one
lists the choices), builds the bundle once per (name, device) and returns the cached bundle after
that. Online builders reach the network only through :meth:`Family.hub` or
:meth:`Family.require_network`, which fail within seconds with an :class:`OfflineError` naming the
offline default instead of hanging. A missing trained-weights file is reported by
:func:`xaicourse.paths.trained`, with the command that trains it. Chapter 00.
"""
from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..inputs import check_types

__all__ = ["FAMILIES", "Family", "OfflineError", "hub_source", "require_network"]


class OfflineError(RuntimeError):
    """An online model was requested but it is neither cached nor downloadable. Chapter 00."""


def require_network(host: str, what: str, offline_default: str, timeout: float = 3.0) -> None:
    """Raise :class:`OfflineError` within ``timeout`` seconds when ``host`` cannot be reached. Chapter 00."""
    hint = (
        f"{what} is not cached on this machine and needs a download from {host}, which is "
        f"unreachable. Use the offline default instead: {offline_default}."
    )
    if os.environ.get("HF_HUB_OFFLINE") == "1" and "huggingface" in host:
        raise OfflineError(hint.replace("which is unreachable", "but HF_HUB_OFFLINE=1 is set"))
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as err:
        raise OfflineError(f"{hint} ({type(err).__name__}: {err})") from None


@check_types
def hub_source(repo_id: str, offline_default: str) -> str:
    """A local folder with ``repo_id`` from the Hugging Face cache, downloading it when online. Chapter 00.

    Raises :class:`OfflineError` quickly when it is not cached and the hub cannot be reached;
    ``offline_default`` is what the message recommends instead.
    """
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached (the exception type varies across huggingface_hub versions)
        require_network("huggingface.co", repo_id, offline_default)
        return snapshot_download(repo_id)


@dataclass(eq=False)  # compared by identity: a family is a cache key
class Family:
    """One public loader: its offline and online names and a builder per name.

    ``what`` names the kind in messages ("image model"); ``default_call`` is how a learner asks for
    the offline default (quoted when an online model cannot be fetched); ``default_spelling`` is how
    the default is passed when not by its name (``None`` for the sentiment classifier). A builder
    takes the name and returns something with ``.to(device)`` (a bundle or an ``nn.Module``).
    """

    what: str
    offline: tuple[str, ...]
    online: tuple[str, ...]
    default_call: str
    default_spelling: str | None = None
    builders: dict[str, Callable[[str], Any]] = field(default_factory=dict, repr=False)

    @property
    def default(self) -> str:
        """The offline default: the first offline name. Chapter 00."""
        return self.offline[0]

    def builder(self, *names: str):
        """Decorator: ``fn(name)`` builds the models ``names`` (each an offline or online name). Chapter 00."""
        unknown = set(names) - set(self.offline) - set(self.online)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not names of the {self.what} family")

        def register(fn):
            self.builders.update(dict.fromkeys(names, fn))
            return fn
        return register

    def check(self, name) -> str:
        """``name`` if this family has it; else TypeError/ValueError listing the choices. Chapter 00."""
        if not isinstance(name, str):
            raise TypeError(f"the name of a {self.what} is a str, got {type(name).__name__}: {self.choices()}")
        if name not in self.offline and name not in self.online:
            raise ValueError(f"unknown {self.what} {name!r}: {self.choices()}")
        return name

    def choices(self) -> str:
        """The choices, as an error message says them: offline names first, then online ones. Chapter 00."""
        names = ", ".join(map(repr, self.offline))
        if self.default_spelling:
            text = f"choose {self.default_spelling} (offline, {names})"
        else:
            text = f"choose {names} (offline)"
        if self.online:
            text += f" or one of {self.online} (online: downloaded the first time)"
        return text

    def load(self, name: str, device: str | torch.device = "cpu"):
        """The bundle ``name`` on ``device``, built on the first call and cached. Chapter 00."""
        return _load(self, self.check(name), str(torch.device(device)))

    def hub(self, repo_id: str) -> str:
        """:func:`hub_source` for an online name of this family. Chapter 00."""
        return hub_source(repo_id, self.default_call)

    def require_network(self, host: str, what: str) -> None:
        """:func:`require_network`, recommending this family's offline default. Chapter 00."""
        require_network(host, what, self.default_call)


@functools.lru_cache(maxsize=None)
def _load(family: Family, name: str, device: str):
    if name not in family.builders:
        raise NotImplementedError(f"no builder registered for {family.what} {name!r}")
    return family.builders[name](name).to(device)


FAMILIES: dict[str, Family] = {}  # public loader name -> its family, filled by .loaders
