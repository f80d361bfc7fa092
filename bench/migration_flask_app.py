"""The "before" app of docs/migrate-from-flask.md, as that guide shows it: Flask under gunicorn,
the Keras model loaded in every worker, `model.predict` once per request.

    BENCH_KERAS_MODEL=churn.keras gunicorn -w 2 -b 127.0.0.1:5000 \
        'bench.migration_flask_app:create_app()'
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request


def create_app() -> Flask:
    import numpy as np
    from tensorflow import keras

    app = Flask(__name__)
    model = keras.models.load_model(os.environ["BENCH_KERAS_MODEL"])

    @app.post("/predict")
    def predict():
        data = np.asarray(request.json["data"], dtype="float32")
        return jsonify(prediction=model.predict(data, verbose=0).tolist())

    return app
