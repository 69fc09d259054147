"""The torch side of styleserve: StyleGAN2 networks, safe checkpoint import and ONNX export.

Public API::

    from styleserve.export import load_generator_from, export_model
    G, ckpt = load_generator_from("network-snapshot.pkl")   # never executes pickled code
    export_model(G, "models/ffhq", source={"checkpoint_sha256": ckpt.sha256})
"""

from styleserve.export.checkpoints import Checkpoint, load_checkpoint, load_generator_from, save_native
from styleserve.export.networks import (
    Generator,
    GeneratorConfig,
    MappingConfig,
    SynthesisConfig,
    load_generator,
    make_config,
)
from styleserve.export.onnx_export import export_model, verify

__all__ = [
    "Checkpoint",
    "Generator",
    "GeneratorConfig",
    "MappingConfig",
    "SynthesisConfig",
    "export_model",
    "load_checkpoint",
    "load_generator",
    "load_generator_from",
    "make_config",
    "save_native",
    "verify",
]
