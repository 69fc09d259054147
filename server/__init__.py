"""The onnxruntime side of styleserve. Never imports torch.

Public API: :class:`ModelRuntime` (sessions over one model directory) and :class:`NoiseSpec`.
"""

from styleserve.server.runtime import ModelRuntime, NoiseSpec, select_providers

__all__ = ["ModelRuntime", "NoiseSpec", "select_providers"]
