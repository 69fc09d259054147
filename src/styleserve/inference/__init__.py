"""Generated messages of the KServe Open Inference Protocol, package ``inference`` (``scripts/gen_protos.sh``; do
not edit). They live in a descriptor pool of their own, so this module and ``tritonclient.grpc`` can share a process.
"""
