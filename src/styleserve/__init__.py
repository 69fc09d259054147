"""styleserve: a production inference service for StyleGAN-family generators.

The root package holds what both sides of the model-directory contract share and that
imports neither torch nor onnxruntime:

* :mod:`styleserve.errors` - the exception tree (translated to gRPC codes once, in the server).
* :mod:`styleserve.latent` - seed -> z, class labels, truncation, style mixing and noise rules.
* :mod:`styleserve.manifest` - the ``model.json`` schema written by the exporter, read by the server.

The sides live in ``styleserve.export`` (torch), ``styleserve.server`` (onnxruntime) and
``styleserve.clients`` (gRPC client only).
"""

from styleserve.errors import (
    CheckpointError,
    InvalidArgument,
    ManifestError,
    NotFound,
    StyleServeError,
    UnsafePickleError,
    UnsupportedArchitecture,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "InvalidArgument",
    "ManifestError",
    "NotFound",
    "StyleServeError",
    "UnsafePickleError",
    "UnsupportedArchitecture",
    "VerificationError",
    "__version__",
]
