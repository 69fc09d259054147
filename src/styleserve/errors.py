"""The exception tree of styleserve, documented in one place.

Every error the project raises on purpose derives from :class:`StyleServeError`. Code inside
the project raises the most specific class; boundaries (the gRPC servicer, the CLIs) translate
them once - the server maps them to status codes in ``styleserve.server`` and the CLIs print
``str(exc)`` without a traceback.

::

    StyleServeError
    ├── CheckpointError            a checkpoint cannot be read or does not fit our networks
    │   ├── UnsafePickleError      a pickle reaches for something outside the allow-list
    │   └── UnsupportedArchitecture  a real network we do not support (yet)
    ├── ManifestError              a model directory / model.json is broken
    ├── ConfigError                a setting this host cannot honour (a missing optional encoder or engine)
    ├── VerificationError          an export failed its numerical self-check
    ├── InvalidArgument            a request field is malformed (``field`` names it)
    ├── NotFound                   an unknown model, w id, ...
    ├── Overloaded                 a queue or limit is full; retry later (RESOURCE_EXHAUSTED)
    ├── Unavailable                the server is warming up or draining (UNAVAILABLE)
    └── DeadlineExpired            the caller's deadline passed before the work ran
"""

from __future__ import annotations


class StyleServeError(Exception):
    """Base class of every error styleserve raises on purpose."""


class CheckpointError(StyleServeError):
    """A checkpoint cannot be read, or its keys/shapes do not fit the network it claims."""


class UnsafePickleError(CheckpointError):
    """A pickle asked for a global outside the allow-list; nothing was executed."""


class UnsupportedArchitecture(CheckpointError):
    """The checkpoint holds a network styleserve does not support; the message names its class."""


class ManifestError(StyleServeError):
    """A model directory is incomplete or its ``model.json`` is malformed."""


class ConfigError(StyleServeError):
    """A server or tool setting that cannot be honoured on this host (a missing optional engine or encoder)."""


class VerificationError(StyleServeError):
    """An exported graph disagrees with the PyTorch networks beyond the allowed error."""


class InvalidArgument(StyleServeError):
    """A malformed request field. ``field`` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(StyleServeError):
    """An unknown model, cached w id or other named resource."""


class Overloaded(StyleServeError):
    """A bounded queue or per-request limit is full; the request was not started."""


class Unavailable(StyleServeError):
    """The server cannot take work now: it is warming up or draining."""


class DeadlineExpired(StyleServeError):
    """The caller's deadline passed while the work was queued; it was dropped without running."""
