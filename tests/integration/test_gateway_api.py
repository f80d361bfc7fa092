"""TF Serving's REST API through the gateway: real gunicorn → real gRPC → the local model server.

Every answer is also compared with the model server's own REST API for the same request: the
gateway is meant as a drop-in for TF Serving's REST endpoint.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests

from tfstack.model_repo.data import digits_split, to_png

HALF = "/v1/models/half_plus_two"
DIGITS = "/v1/models/digits"


@pytest.fixture(scope="module")
def digit_images():
    _, x_test, _, y_test = digits_split()
    return x_test[:3], y_test[:3]


def post(base: str, path: str, body: object, **headers: str) -> requests.Response:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(base + path, data=data, headers=headers, timeout=30)


def backend_rest(modelserver) -> str:
    return f"http://127.0.0.1:{modelserver.rest_port}"


# (http method, path, body): answers must equal the model server's REST answers exactly.
SAME_AS_TF_SERVING = [
    ("POST", f"{HALF}:predict", {"instances": [1.0, 2.0, 5.0]}),
    ("POST", f"{HALF}:predict", {"inputs": [1.0, 2.0]}),
    ("POST", f"{HALF}:predict", {"inputs": {"x": [1.0, 3.0]}, "signature_name": "serving_default"}),
    ("POST", f"{HALF}/versions/1:predict", {"instances": [0]}),
    ("POST", f"{HALF}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}),
    ("POST", f"{HALF}:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]}),
    ("GET", HALF, None),
    ("GET", f"{HALF}/versions/1", None),
    ("GET", f"{HALF}/metadata", None),
    ("GET", DIGITS, None),
    ("GET", f"{DIGITS}/versions/2", None),
    ("GET", f"{DIGITS}/labels/canary", None),
    ("GET", f"{DIGITS}/labels/stable/metadata", None),
    ("GET", "/v1/models/digits_png/metadata", None),
    ("POST", "/v1/models/nope:predict", {"instances": [1.0]}),
    ("GET", "/v1/models/nope", None),
    ("GET", f"{DIGITS}/versions/42", None),
    ("POST", f"{HALF}/versions/42:predict", {"instances": [1.0]}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), SAME_AS_TF_SERVING)
def test_same_answer_as_the_model_servers_rest_api(gateway, modelserver, method, path, body):
    answers = []
    for base in (gateway.url, backend_rest(modelserver)):
        if method == "POST":
            resp = post(base, path, body)
        else:
            resp = requests.get(base + path, timeout=30)
        assert resp.headers["Content-Type"].startswith("application/json")
        answers.append((resp.status_code, resp.json()))
    assert answers[0] == answers[1]


def test_predict_row_and_columnar(gateway):
    assert post(gateway.url, f"{HALF}:predict", {"instances": [1.0, 2.0, 5.0]}).json() == {
        "predictions": [2.5, 3.0, 4.5]
    }
    assert post(gateway.url, f"{HALF}:predict", {"inputs": {"x": [1.0]}}).json() == {
        "outputs": [2.5]
    }


def test_versions_and_labels(gateway, modelserver, digit_images):
    images, _ = digit_images
    body = {"instances": images.tolist()}
    by_version = {}
    for version in (1, 2):
        path = f"{DIGITS}/versions/{version}:predict"
        by_version[version] = post(gateway.url, path, body).json()
        predictions = by_version[version]["predictions"]
        assert len(predictions) == len(images)
        for p in predictions:
            assert abs(sum(p["probabilities"]) - 1) < 1e-4
            assert p["classes"] == max(range(10), key=p["probabilities"].__getitem__)
        assert by_version[version] == post(backend_rest(modelserver), path, body).json()
    assert by_version[1] != by_version[2]  # two different training runs
    assert post(gateway.url, f"{DIGITS}/labels/stable:predict", body).json() == by_version[1]
    assert post(gateway.url, f"{DIGITS}/labels/canary:predict", body).json() == by_version[2]
    assert post(gateway.url, f"{DIGITS}:predict", body).json() == by_version[2]  # latest


def test_status_lists_every_version(gateway):
    status = requests.get(gateway.url + DIGITS, timeout=30).json()
    assert [(v["version"], v["state"]) for v in status["model_version_status"]] == [
        ("2", "AVAILABLE"),
        ("1", "AVAILABLE"),
    ]


def test_b64_in_and_bytes_out(gateway, modelserver, digit_images):
    images, _ = digit_images
    body = {"instances": [{"b64": base64.b64encode(to_png(image)).decode()} for image in images]}
    resp = post(gateway.url, "/v1/models/digits_png:predict", body)
    assert resp.status_code == 200, resp.text
    predictions = resp.json()["predictions"]
    assert len(predictions) == len(images)
    for p in predictions:
        assert p["label"] in [str(digit) for digit in range(10)]
        assert base64.b64decode(p["thumbnail_bytes"]["b64"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert (
        resp.json() == post(backend_rest(modelserver), "/v1/models/digits_png:predict", body).json()
    )


def png_b64_with_two_pad_characters() -> str:
    """A digit's PNG in base64 whose length leaves one byte over three (`==` padding)."""
    _, x_test, _, _ = digits_split()
    for image in x_test:
        text = base64.b64encode(to_png(image)).decode()
        if text.endswith("=="):
            return text
    raise AssertionError("no digit PNG with a length of 3n+1 bytes")


# How TF Serving's absl::Base64Unescape reads {"b64": ...}: both front doors must agree with it.
B64_FORMS = {
    "padded": (lambda t: t, 200),
    "unpadded": (lambda t: t.rstrip("="), 200),
    "wrapped at 76 columns, as `base64` writes it": (
        lambda t: "\n".join(t[i:i + 76] for i in range(0, len(t), 76)) + "\n", 200),
    "padded with dots": (lambda t: t[:-2] + "..", 200),
    "one pad character short": (lambda t: t[:-1], 400),
    "data after the padding": (lambda t: t + "AAAA", 400),
}  # fmt: skip


@pytest.mark.parametrize("form", B64_FORMS)
def test_b64_forms_are_read_as_tf_serving_reads_them(gateway, modelserver, form):
    encode, status = B64_FORMS[form]
    body = {"instances": [{"b64": encode(png_b64_with_two_pad_characters())}]}
    answers = [post(base, "/v1/models/digits_png:predict", body)
               for base in (gateway.url, backend_rest(modelserver))]
    assert [a.status_code for a in answers] == [status, status], answers[0].text
    assert answers[0].json() == answers[1].json()
    if status == 400:
        assert answers[0].json() == {"error": "Failed to process element: 0 of 'instances' list. "
                                     "Error: INVALID_ARGUMENT: Unable to base64 decode"}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (f"{HALF}:predict", '{"instances": [1.0,', 400, "JSON Parse error"),
        (f"{HALF}:predict", "", 400, "JSON Parse error: The document is empty"),
        (f"{HALF}:predict", {"instances": ["one"]}, 400, "not of expected type: float"),
        (f"{HALF}:predict", {"x": [1.0]}, 400, "Missing 'inputs' or 'instances' key"),
        (f"{HALF}:predict", {"instances": []}, 400, "No values in 'instances' array"),
        (f"{DIGITS}:predict", {"inputs": {"pixels": [[[0.0] * 8] * 8]}}, 400, "images"),
        (f"{DIGITS}:predict", {"instances": [[[0.0] * 8] * 8], "signature_name": "x"}, 400,
         'Serving signature name: "x" not found in signature def'),
        (f"{HALF}:regress", {"signature_name": "regress_x_to_y"}, 400, "'examples' is expected"),
        ("/v1/models/nope:predict", {"instances": [1.0]}, 404,
         "Servable not found for request: Latest(nope)"),
        (f"{HALF}/versions/42:predict", {"instances": [1.0]}, 404,
         "Servable not found for request: Specific(half_plus_two, 42)"),
        (f"{HALF}:PREDICT", {"instances": [1.0]}, 400,
         f"Malformed request: POST {HALF}:PREDICT"),
    ],
)  # fmt: skip
def test_client_errors(gateway, path, body, status, message):
    resp = post(gateway.url, path, body)
    assert resp.status_code == status
    assert resp.headers["Content-Type"] == "application/json"
    assert message in resp.json()["error"]
    assert set(resp.json()) == {"error"}


def test_a_shape_the_model_refuses_passes_through_with_a_hint(gateway, modelserver):
    body = {"instances": [[[0.0] * 7] * 8]}  # digits takes 8x8 images
    ours = post(gateway.url, f"{DIGITS}:predict", body)
    theirs = post(backend_rest(modelserver), f"{DIGITS}:predict", body)
    assert theirs.status_code == 400 and "Reshape" in theirs.json()["error"]
    assert ours.status_code == theirs.status_code
    assert ours.json() == {
        "error": theirs.json()["error"],
        "hint": "input images was sent with shape [1,8,7], the signature declares [-1,8,8] "
                "(-1 = any size)",
    }


def test_get_without_model_name(gateway):
    resp = requests.get(gateway.url + "/v1/models", timeout=30)
    assert (resp.status_code, resp.json()) == (400, {"error": "Missing model name in request."})


def test_request_id_round_trip_and_access_log(gateway):
    request_id = "it-test-7f3a"
    resp = post(
        gateway.url, f"{HALF}:predict", {"instances": [1.0]}, **{"X-Request-ID": request_id}
    )
    assert resp.headers["X-Request-ID"] == request_id
    generated = requests.get(gateway.url + "/healthz", timeout=30).headers["X-Request-ID"]
    assert len(generated) == 32
    gateway.process.wait_until(
        lambda: any(line["request_id"] == request_id for line in gateway.access_log()),
        10,
        "logging the request",
    )
    line = next(line for line in gateway.access_log() if line["request_id"] == request_id)
    assert line["method"] == "POST" and line["path"] == f"{HALF}:predict"
    assert line["model"] == "half_plus_two" and line["status"] == 200
    assert line["duration_ms"] > 0 and line["bytes"] == len(resp.content)
    assert any(" Predict " in call for call in line["upstream"])
    assert line["ts"].endswith("Z")


def test_readyz_with_a_serving_backend(gateway):
    resp = requests.get(gateway.url + "/readyz", timeout=30)
    assert resp.status_code == 200 and resp.json()["ready"] is True


def test_unknown_models_share_one_metrics_label(gateway):
    post(gateway.url, "/v1/models/no-such-model-1:predict", {"instances": [1.0]})
    post(gateway.url, "/v1/models/no-such-model-2:predict", {"instances": [1.0]})
    text = requests.get(gateway.url + "/metrics", timeout=30).text
    assert 'model="_unknown"' in text
    assert "no-such-model" not in text


def test_no_tensorflow_in_a_worker(gateway):
    post(gateway.url, f"{HALF}:predict", {"instances": [1.0]})  # a worker that has served
    info = requests.get(gateway.url + "/debug/vars", timeout=30).json()
    assert info["tensorflow_loaded"] is False and info["heavy_modules"] == []
    # Small answers are read without numpy (its ~11 MB stay out of the worker's RSS); any
    # worker: /debug/vars may come from the other one, which has served nothing or the same.
    assert info["numpy_loaded"] is False
    with open(f"/proc/{info['pid']}/stat") as stat:
        assert int(stat.read().rsplit(")", 1)[1].split()[1]) == gateway.process.pid  # a worker
    with open(f"/proc/{info['pid']}/maps") as maps:
        assert "tensorflow" not in maps.read()
