"""Generated gRPC stubs for the ``styleserve.v1`` API (``scripts/gen_protos.sh``; do not edit)."""
