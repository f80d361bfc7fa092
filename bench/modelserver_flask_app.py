"""The baseline of the model server benchmark: the common hand-rolled setup.

A Flask app under gunicorn; every worker loads the model itself (after the fork: TensorFlow is
not fork-safe) and runs it once per request, no batching. Same model and JSON shape as TF
Serving's REST predict, so the same load runs against both.

    BENCH_MODEL_DIR=model_repo/models/digits/2 \\
        gunicorn -w 2 -b 127.0.0.1:8600 'bench.modelserver_flask_app:create_app()'
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request


def create_app() -> Flask:
    import numpy as np
    import tensorflow as tf

    # Loaded in the worker (no --preload), once per worker: ~600 MB and seconds each.
    predict_fn = tf.saved_model.load(os.environ["BENCH_MODEL_DIR"]).signatures["serving_default"]
    app = Flask(__name__)

    @app.post("/v1/models/<name>:predict")  # one model per app: any name serves it
    def predict(name: str):
        images = np.asarray(request.get_json()["instances"], dtype=np.float32)
        outputs = predict_fn(images=tf.constant(images))
        classes = outputs["classes"].numpy().tolist()
        probabilities = outputs["probabilities"].numpy().tolist()
        return jsonify(
            predictions=[
                {"classes": c, "probabilities": p}
                for c, p in zip(classes, probabilities, strict=True)
            ]
        )

    return app
