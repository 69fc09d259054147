"""The client side of styleserve (gRPC client library and CLI). Imports neither torch nor onnxruntime."""

__all__: list[str] = []
