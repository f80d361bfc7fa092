"""TF Serving's protocol, shared by the gateway and the model server and importing neither.

The REST routes, the gRPC <-> HTTP status table and TF Serving's error texts, the JSON rules
(parse, b64, float text, tf.Example filling) and the wire-compatible `.proto` subset (`proto/`).
No Flask, no TensorFlow, no server code: the gateway image installs this package as it is.
"""
