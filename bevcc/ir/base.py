"""The interface every graph IR adapter offers to the pass manager."""

from __future__ import annotations

import abc
from typing import ClassVar

__all__ = ["IR", "IRInvalid"]


class IRInvalid(Exception):
    """The IR failed its verifier; the message says which check and where."""


class IR(abc.ABC):
    """A graph IR the pass manager can run passes on, verify, dump and save."""

    kind: ClassVar[str]
    """Short name used in pipeline text, e.g. `fx` in `fx(dce)`."""

    @abc.abstractmethod
    def verify(self) -> None:
        """Raise IRInvalid if the IR is not well formed."""

    @abc.abstractmethod
    def dump(self) -> str:
        """Canonical text: the same graph gives the same text, on any machine, in any process."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A digest that changes whenever the graph or any of its tensors changes."""

    def verify_and_fingerprint(self) -> str:
        """verify(), then fingerprint(); IRs whose checks share costly work override it."""
        self.verify()
        return self.fingerprint()

    @abc.abstractmethod
    def save(self, path) -> None:
        """Write the IR to `path` atomically."""

    @abc.abstractmethod
    def node_count(self) -> int:
        """Number of operations, used for instrumentation and scaling checks."""

    @property
    def default_suffix(self) -> str:
        """File suffix used when the IR is saved into an output directory."""
        return f".{self.kind}"
