"""The model server's REST API over plain HTTP: TF Serving's routes, JSON formats, status codes
and error bodies; and its Prometheus page."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from tfstack.model_repo.data import digits_split, to_png

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 20


@pytest.fixture(scope="module")
def url(modelserver):
    return modelserver.rest_url


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def digits():
    _, x_test, _, y_test = digits_split()
    return x_test[:4], y_test[:4]


def post(http, url, path, body):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return http.post(url + path, data=data, timeout=TIMEOUT)


# -- predict -------------------------------------------------------------------------------------
def test_predict_row_format(http, url):
    resp = post(http, url, "/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"predictions": [2.5, 3.0, 4.5]}
    # Whole floats keep their ".0", as TF Serving writes them.
    assert re.sub(r"\s", "", resp.text) == '{"predictions":[2.5,3.0,4.5]}'


def test_predict_columnar_format_and_version_path(http, url):
    resp = post(http, url, "/v1/models/half_plus_two/versions/1:predict", {"inputs": [4.0]})
    assert resp.json() == {"outputs": [4.0]}


def test_predict_non_finite_values(http, url):
    resp = post(http, url, "/v1/models/half_plus_two:predict", '{"instances": [NaN, Infinity]}')
    assert resp.status_code == 200
    assert re.sub(r"\s", "", resp.text) == '{"predictions":[NaN,Infinity]}'
    values = json.loads(resp.text)["predictions"]
    assert math.isnan(values[0]) and values[1] == math.inf


@pytest.mark.parametrize(("path", "version"), [("/labels/stable", 1), ("/labels/canary", 2)])
def test_predict_by_label_multiple_outputs(http, url, digits, path, version):
    images, labels = digits
    resp = post(http, url, f"/v1/models/digits{path}:predict", {"instances": images.tolist()})
    assert resp.status_code == 200, resp.text
    rows = resp.json()["predictions"]
    assert len(rows) == 4 and set(rows[0]) == {"classes", "probabilities"}
    assert all(isinstance(row["classes"], int) for row in rows)
    assert abs(sum(rows[0]["probabilities"]) - 1.0) < 1e-3
    columnar = post(
        http, url, f"/v1/models/digits/versions/{version}:predict", {"inputs": images.tolist()}
    ).json()["outputs"]
    assert columnar["classes"] == [row["classes"] for row in rows]


def test_predict_b64_in_and_bytes_out(http, url, digits):
    images, _ = digits
    instances = [{"b64": base64.b64encode(to_png(image)).decode()} for image in images]
    resp = post(http, url, "/v1/models/digits_png:predict", {"instances": instances})
    assert resp.status_code == 200, resp.text
    row = resp.json()["predictions"][0]
    assert row["label"] in [str(d) for d in range(10)]
    # `_bytes` outputs come back as {"b64": ...}; other strings as plain JSON strings.
    assert base64.b64decode(row["thumbnail_bytes"]["b64"]).startswith(b"\x89PNG")


def test_classify_and_regress(http, url):
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 3.0}, {"x": 6.0}]}
    resp = post(http, url, "/v1/models/half_plus_two:classify", body)
    assert resp.json() == {"results": [[["", 3.5]], [["", 5.0]]]}
    body = {"signature_name": "regress_x_to_y", "context": {"x": 4.0}, "examples": [{}]}
    resp = post(http, url, "/v1/models/half_plus_two:regress", body)
    assert resp.json() == {"results": [4.0]}


# -- status and metadata ---------------------------------------------------------------------
def test_model_status_json(http, url):
    resp = http.get(f"{url}/v1/models/digits", timeout=TIMEOUT)
    assert resp.status_code == 200
    ok = {"error_code": "OK", "error_message": ""}
    assert resp.json() == {
        "model_version_status": [
            {"version": "2", "state": "AVAILABLE", "status": ok},
            {"version": "1", "state": "AVAILABLE", "status": ok},
        ]
    }
    one = http.get(f"{url}/v1/models/digits/versions/1", timeout=TIMEOUT).json()
    assert [s["version"] for s in one["model_version_status"]] == ["1"]


def test_model_metadata_json(http, url):
    resp = http.get(f"{url}/v1/models/half_plus_two/metadata", timeout=TIMEOUT)
    body = resp.json()
    assert body["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]  # doubled, as in TF Serving
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    canary = http.get(f"{url}/v1/models/digits/labels/canary/metadata", timeout=TIMEOUT).json()
    assert canary["model_spec"]["version"] == "2"


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        (
            "POST",
            "/v1/models/half:predict",
            {"instances": [1.0]},
            404,
            "Servable not found for request: Latest(half)",
        ),
        (
            "POST",
            "/v1/models/half_plus_two/versions/7:predict",
            {"instances": [1.0]},
            404,
            "Servable not found for request: Specific(half_plus_two, 7)",
        ),
        (
            "POST",
            "/v1/models/digits/labels/nope:predict",
            {"instances": [1.0]},
            400,
            "Unrecognized servable version label: nope",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            b"",
            400,
            "JSON Parse error: The document is empty",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"signature_name": "nope", "instances": [1]},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instance": [1.0]},
            400,
            "Missing 'inputs' or 'instances' key",
        ),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        (
            "PUT",
            "/v1/models/half_plus_two",
            b"{}",
            400,
            "Malformed request: PUT /v1/models/half_plus_two",
        ),
        (
            "GET",
            "/v1/models/half_plus_two:predict",
            None,
            400,
            "Malformed request: GET /v1/models/half_plus_two:predict",
        ),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        (
            "GET",
            "/v1/models/nope/metadata",
            None,
            404,
            "Servable not found for request: Latest(nope)",
        ),
    ],
    ids=[
        "unknown-model",
        "unknown-version",
        "unknown-label",
        "empty-body",
        "unknown-signature",
        "no-instances",
        "no-model-name",
        "wrong-verb",
        "get-predict",
        "status-unknown",
        "metadata-unknown",
    ],
)
def test_errors(http, url, method, path, body, status, message):
    data = json.dumps(body) if isinstance(body, dict) else body
    resp = http.request(method, url + path, data=data, timeout=TIMEOUT)
    assert resp.status_code == status
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"error": message}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ('{"instances": [1.0,', 400, "JSON Parse error: "),
        ('{"instances": ["a"]}', 400, "not of expected type: float"),
        ('{"instances": [[1.0], [1.0, 2.0]]}', 400, "Failed to process element: 1"),
        (
            '{"instances": [1.0], "inputs": [1.0]}',
            400,
            "expecting only one of 'inputs' or 'instances' keys to exist",
        ),
        ('{"instances": []}', 400, "No values in 'instances' array"),
        ("[1.0]", 400, "Is not object"),
    ],
)
def test_bad_predict_bodies(http, url, body, status, fragment):
    resp = post(http, url, "/v1/models/half_plus_two:predict", body)
    assert resp.status_code == status
    assert fragment in resp.json()["error"]


def test_bad_shape_is_a_model_error(http, url):
    resp = post(http, url, "/v1/models/digits:predict", {"instances": [[1.0, 2.0]]})
    assert resp.status_code == 400
    assert resp.json()["error"]


def test_paths_outside_v1_get_libevents_404_page(http, url):
    resp = http.get(f"{url}/v2/models/half_plus_two", timeout=TIMEOUT)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "text/html"
    assert "<TITLE>404 Not Found</TITLE>" in resp.text


# -- metrics -----------------------------------------------------------------------------------
def test_the_metrics_path_with_a_query_gets_tf_servings_400(http, modelserver):
    """http_server.cc: the metrics handler is found by the path alone, then refuses a uri_path
    (path and query) that is not exactly the configured path."""
    resp = http.get(modelserver.metrics_url + "?x=1", timeout=TIMEOUT)
    assert (resp.status_code, resp.text) == (400, (
        "Unexpected path: /monitoring/prometheus/metrics?x=1. "
        "Should be /monitoring/prometheus/metrics"))
    assert resp.headers["Content-Type"].startswith("text/plain")


def test_prometheus_metrics(http, url, modelserver):
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    post(http, url, "/v1/models/half_plus_two:predict", {"instances": [1.0]})
    post(http, url, "/v1/models/half:predict", {"instances": [1.0]})
    with grpc.insecure_channel(modelserver.grpc_target) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones(2, np.float32)))
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=20)

    resp = http.get(modelserver.metrics_url, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = resp.text
    assert "# HELP" not in text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert re.search(
        r'^:tensorflow:serving:request_count\{model_name="half_plus_two",status="OK"\} [1-9]',
        text,
        re.M,
    )
    assert re.search(
        r'^:tensorflow:serving:request_count\{model_name="half",status="NOT_FOUND"\} [1-9]',
        text,
        re.M,
    )
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    for api, entrypoint in (("predict", "REST"), ("Predict", "GRPC")):
        labels = f'model_name="half_plus_two",API="{api}",entrypoint="{entrypoint}"'
        assert f':tensorflow:serving:request_latency_bucket{{{labels},le="10"}}' in text
        assert f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}}' in text
        assert f":tensorflow:serving:request_latency_count{{{labels}}}" in text
    buckets = re.findall(
        r':tensorflow:serving:request_latency_bucket\{model_name="half_plus_two",API="predict",'
        r'entrypoint="REST",le="([^"]+)"\}',
        text,
    )
    assert len(buckets) == 34  # Exponential(10, 1.8, 33) + "+Inf"
    assert (
        ':tensorflow:serving:runtime_latency_count{model_name="half_plus_two",API="Predict",'
        'runtime="TF1"}' in text
    )
    assert re.search(
        r':tensorflow:cc:saved_model:load_attempt_count\{model_path="[^"]+/digits/2",'
        r'status="success"\} 1',
        text,
    )
    assert ":tensorflow:cc:saved_model:load_latency{model_path=" in text

    promtool = shutil.which("promtool") or REPO / ".tools" / "bin" / "promtool"
    if Path(promtool).exists():
        check = subprocess.run(
            [str(promtool), "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        # promtool lints naming conventions too (it wants _total / base units); TF Serving's
        # names are fixed, so only parse errors count here.
        assert "error while linting" not in check.stdout + check.stderr, check.stderr


@pytest.mark.parametrize(
    ("instances", "status", "expected"),
    [
        ([1, 2], 200, {"predictions": [2.5, 3.0]}),  # JSON ints are fine for DT_FLOAT
        (
            [True],
            400,
            {
                "error": "Failed to process element: 0 of 'instances' list. Error: "
                "INVALID_ARGUMENT: JSON Value: true Type: True is not of expected "
                "type: float"
            },
        ),
    ],
)
def test_json_number_typing(http, url, instances, status, expected):
    resp = post(http, url, "/v1/models/half_plus_two:predict", {"instances": instances})
    assert (resp.status_code, resp.json()) == (status, expected)


def test_cors_preflight(http, url):
    path = f"{url}/v1/models/half_plus_two:predict"
    assert http.options(path, headers={"Origin": "http://a.example"}, timeout=TIMEOUT).ok
    resp = http.options(path, timeout=TIMEOUT)
    assert resp.status_code == 400
    assert resp.json() == {"error": "Origin header is missing in CORS preflight"}


def _raw_exchange(url: str, request: bytes) -> bytes:
    """Send `request` bytes as they are and read until the server closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: abc\r\n\r\n",
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
     b"Transfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n0\r\n\r\n"],
    ids=["bad length", "bad chunk size", "chunk shorter than its size"],
)  # fmt: skip
def test_a_body_framed_wrong_is_a_400_and_the_connection_closes(url, framing):
    head = b"POST /v1/models/half_plus_two:predict HTTP/1.1\r\nHost: x\r\n"
    answer = _raw_exchange(url, head + framing)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_a_chunked_body_with_extensions_and_trailers_is_read(url):
    body = b'{"instances": [1.0, 2.0, 5.0]}'
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (body[:9], body[9:]))
    request = (b"POST /v1/models/half_plus_two:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-Trailer: 1\r\n\r\n")
    head, _, payload = _raw_exchange(url, request).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(payload) == {"predictions": [2.5, 3.0, 4.5]}
