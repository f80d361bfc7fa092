"""tfstack gateway: TF Serving's REST API in front of TF Serving gRPC replicas.

Never imports TensorFlow (docs/architecture.md, decision 1): the wire messages come from
`tfstack.protocol.proto`.
"""
