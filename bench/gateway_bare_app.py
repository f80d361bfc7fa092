"""The floor for any Flask service: a bare handler that parses the request's JSON and answers.

bench/gateway_overhead.py runs it under the gateway's own gunicorn settings
(`gunicorn -c tfstack/gateway/gunicorn.conf.py 'bench.gateway_bare_app:create_app()'`) to compare
CPU per request with the gateway's.
"""

from __future__ import annotations

import json

from flask import Flask, Response, request

ANSWER = json.dumps({"predictions": [{"classes": 0, "probabilities": [0.1] * 10}]}).encode()


def create_app() -> Flask:
    app = Flask("bare")

    @app.post("/v1/models/<name>:predict")
    def predict(name: str) -> Response:
        body = json.loads(request.get_data())
        if "instances" not in body and "inputs" not in body:
            return Response(b'{"error": "bad"}', status=400, mimetype="application/json")
        return Response(ANSWER, mimetype="application/json")

    return app
