"""The gateway's wire-compatible subset of TF Serving's protobuf API.

The *_pb2*.py modules are generated from the .proto files here by generate.sh.
"""
