"""TF Serving's own test models, answered as TF Serving documents them, by both front doors.

The SavedModels are TF Serving's (../shared/testdata/tfserving, copied unchanged from
tensorflow_serving/servables/tensorflow/testdata). One model server serves them, one gateway
fronts it over gRPC, and every request below goes to both: the status, body and error text must be
the same from each, and must be what TF Serving's documentation and tests say:

- README.md: the `half_plus_two` quick start (`saved_model_half_plus_two_cpu`);
- g3doc/api_rest.md: the unknown-model error;
- model_servers/http_rest_api_handler_test.cc: predict, regress, classify and status pairs, the
  request errors and the malformed paths (its model computes the same 0.5·x + 2 at version 123);
- model_servers/tensorflow_model_server_test.py: the REST tests on saved_model_half_plus_two_cpu;
- servables/tensorflow/testdata/half_plus_two_model_metadata.json: the metadata of this model.

Where TF Serving's tests check a substring of an error, so does this file; the two front doors
must still agree on the whole text.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
from pathlib import Path

import pytest
import requests

from tests.fixtures.gateway import start_gateway
from tests.fixtures.modelserver import start_modelserver

REPO = Path(__file__).resolve().parents[2]
TESTDATA = Path(os.environ.get("TFSTACK_TFSERVING_TESTDATA")
                or REPO.parent / "shared" / "testdata" / "tfserving")
# Served under the names TF Serving's README and tests use for them.
MODELS = {
    "half_plus_two": "saved_model_half_plus_two_cpu",
    "half_plus_two_tf2": "saved_model_half_plus_two_tf2_cpu",
}
HALF = "/v1/models/half_plus_two"
TF2 = "/v1/models/half_plus_two_tf2"
TIMEOUT = 30


@pytest.fixture(scope="module")
def tfserving_models_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [folder for folder in MODELS.values() if not (TESTDATA / folder).is_dir()]
    if missing:
        pytest.fail(f"TF Serving's test models are missing from {TESTDATA}: {missing} (CI keeps "
                    "../shared beside the clone; elsewhere set TFSTACK_TFSERVING_TESTDATA)",
                    pytrace=False)
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{TESTDATA / folder}" '
        'model_platform: "tensorflow" }\n'
        for name, folder in MODELS.items()
    )
    path = tmp_path_factory.mktemp("tfserving_testdata") / "models.config"
    path.write_text(f"model_config_list {{\n{entries}}}\n")
    return path


@pytest.fixture(scope="module")
def tfserving_gateway(tfserving_models_config, tmp_path_factory):
    """A model server on TF Serving's test models and a gateway in front of it."""
    run_dir = tmp_path_factory.mktemp("tfserving_servers")
    modelserver = start_modelserver(run_dir, tfserving_models_config)
    try:
        gateway = start_gateway(run_dir, [modelserver.grpc_target])
    except BaseException:
        modelserver.stop()
        raise
    yield modelserver, gateway
    gateway.stop()
    modelserver.stop()


@pytest.fixture(scope="module")
def front_doors(tfserving_gateway) -> dict:
    """{"model server": its REST URL, "gateway": the gateway's URL}."""
    modelserver, gateway = tfserving_gateway
    return {"model server": modelserver.rest_url, "gateway": gateway.url}


def ask_both(front_doors: dict, method: str, path: str, body: object) -> dict:
    """{front door: (status, parsed JSON body)}; every answer must be JSON, as TF Serving's are."""
    data = body if body is None or isinstance(body, str) else json.dumps(body)
    answers = {}
    for name, base in front_doors.items():
        resp = requests.request(method, base + path, data=data, timeout=TIMEOUT)
        assert resp.headers["Content-Type"].startswith("application/json"), (name, resp.text)
        answers[name] = (resp.status_code, resp.json())
    return answers


def status_of(version: str = "123") -> dict:
    return {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


# (method, path, body, status, whole JSON answer TF Serving documents)
ANSWERS = [
    # README quick start: the signature declares x as [-1,1]; TF Serving does not gate on that.
    ("POST", f"{HALF}:predict", {"instances": [1.0, 2.0, 5.0]}, 200,
     {"predictions": [2.5, 3.0, 4.5]}),
    # http_rest_api_handler_test.cc, Predict / Regress / Classify / GetStatus
    ("POST", f"{HALF}:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}, 200,
     {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
    ("POST", f"{HALF}/versions/123:predict", {"instances": [1.0, 2.0]}, 200,
     {"predictions": [2.5, 3.0]}),
    ("POST", f"{HALF}/versions/123:predict",
     {"signature_name": "serving_default", "instances": [3.0, 4.0]}, 200,
     {"predictions": [3.5, 4.0]}),
    ("POST", f"{HALF}/versions/123:predict",
     {"signature_name": "serving_default", "inputs": [3.0, 4.0]}, 200, {"outputs": [3.5, 4.0]}),
    ("POST", f"{HALF}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
     200, {"results": [42]}),
    ("POST", f"{HALF}/versions/123:regress",
     {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}, 200, {"results": [42]}),
    ("POST", f"{HALF}:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
     200, {"results": [[["", 12]]]}),
    ("POST", f"{HALF}/versions/123:classify",
     {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]}, 200,
     {"results": [[["", 7]]]}),
    ("GET", HALF, None, 200, status_of()),
    ("GET", f"{HALF}/versions/123", None, 200, status_of()),
    # http_rest_api_handler.cc: only the exact `metadata` token asks for metadata; the regex
    # ignores case, so anything else in its place is the status.
    ("GET", f"{HALF}/METADATA", None, 200, status_of()),
    # tensorflow_model_server_test.py, testClassifyREST ... testGetStatusREST
    ("POST", f"{HALF}:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
     200, {"results": [[["", 3.0]]]}),
    ("POST", f"{HALF}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
     200, {"results": [3.0]}),
    ("POST", f"{HALF}:predict", {"instances": [2.0, 3.0, 4.0]}, 200,
     {"predictions": [3.0, 3.5, 4.0]}),
    ("POST", f"{HALF}:predict", {"inputs": [2.0, 3.0, 4.0]}, 200, {"outputs": [3.0, 3.5, 4.0]}),
    # api_rest.md, "Errors"
    ("POST", "/v1/models/half:predict", {"instances": [1.0, 2.0, 5.0]}, 404,
     {"error": "Servable not found for request: Latest(half)"}),
    # the same function exported from TF2 (its serving_default declares x as [1])
    ("POST", f"{TF2}:predict", {"instances": [1.0, 2.0, 5.0]}, 200,
     {"predictions": [2.5, 3.0, 4.5]}),
    ("POST", f"{TF2}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
     200, {"results": [42]}),
    ("POST", f"{TF2}:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
     200, {"results": [[["", 12]]]}),
    ("GET", TF2, None, 200, status_of()),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "expected"), ANSWERS)
def test_documented_answers(front_doors, method, path, body, status, expected):
    answers = ask_both(front_doors, method, path, body)
    assert answers["gateway"] == answers["model server"]
    assert answers["gateway"] == (status, expected)


# (method, path, body, status, what TF Serving's tests find in the error)
ERRORS = [
    # http_rest_api_handler_test.cc, PredictRequestErrors and PredictModelNameVersionErrors
    ("POST", f"{HALF}:predict", "", 400, "JSON Parse error: The document is empty"),
    ("POST", f"{HALF}:predict", "instances = [1, 2]", 400, "JSON Parse error: Invalid value"),
    ("POST", f"{HALF}:predict", {"instances": ["x", "y"]}, 400, "not of expected type: float"),
    ("POST", f"{HALF}/labels/nonexistent:predict", {"instances": ["x", "y"]}, 400,
     "Unrecognized servable version label"),
    ("POST", f"{HALF}:predict", {"signature_name": 100}, 400,
     "'signature_name' key must be a string value."),
    ("POST", "/v1/models/foo:predict", {"instances": [1]}, 404, "Servable not found"),
    ("POST", "/v1/models/foo/versions/50:predict", {"instances": [1]}, 404, "Servable not found"),
    ("POST", f"{HALF}99:predict", {"instances": [1]}, 404, "Servable not found"),
    # http_rest_api_handler_test.cc, UnsupportedApiCalls
    ("GET", "/v1/foo", None, 400, "Malformed request"),
    ("POST", "/v1/foo", "", 400, "Malformed request"),
    ("GET", "/v1/models", None, 400, "Missing model name"),
    ("POST", "/v1/models", "", 400, "Malformed request"),
    ("GET", "/v1/models/foo:predict", None, 400, "Malformed request"),
    ("GET", "/v1/models/foo/version/50:predict", None, 400, "Malformed request"),
    ("POST", "/v1/models/foo/version/50:regress", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/versions/HELLO:regress", "", 400, "Malformed request"),
    ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "", 400,
     "Failed to convert version"),
    ("POST", "/v1/models/foo/metadata", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/label/some_label:regress", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "", 400,
     "Malformed request"),
    ("POST", "/v1/models/foo/versions/some_label:regress", "", 400, "Malformed request"),
    # util/json_tensor.cc's messages for ragged and mixed-type bodies: refused before the model.
    ("POST", f"{HALF}:predict", {"instances": [[1.0], [2.0, 3.0]]}, 400,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "tensor size: 1 but got: 2"),
    ("POST", f"{HALF}:predict", {"instances": [1.0, "a"]}, 400,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     '"a" Type: String is not of expected type: float'),
    ("POST", f"{HALF}:predict", {"inputs": [[1.0], 2.0]}, 400,
     "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ("POST", f"{TF2}:predict", "{\"instances\": [1.0,", 400, "JSON Parse error: Invalid value"),
    ("POST", f"{HALF}:predict", '{"instances": [1e400]}', 400,
     "JSON Parse error: Number too big to be stored in double. at offset: 15"),
    # classifier.cc / regressor.cc (PreProcessClassification, PreProcessRegression): a signature
    # without the aliases these APIs need is refused, printed as the C++ DebugString.
    ("POST", f"{HALF}:regress", {"examples": [{"x": 1.0}]}, 400,
     "No regression inputs found in SignatureDef: inputs {\n  key: \"x\"\n"),
    ("POST", f"{HALF}:classify", {"examples": [{"x": 1.0}]}, 400,
     "No classification inputs found in SignatureDef: inputs {\n  key: \"x\"\n"),
    ("POST", f"{HALF}:regress", {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]},
     400, "No regression outputs found in SignatureDef: inputs {\n  key: \"inputs\"\n"),
    ("POST", f"{HALF}:classify", {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]},
     400, 'Expected classification signature outputs to contain at least one of "classes" or '
     '"scores". Signature was: inputs {\n'),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "text"), ERRORS)
def test_documented_errors(front_doors, method, path, body, status, text):
    answers = ask_both(front_doors, method, path, body)
    assert answers["gateway"] == answers["model server"]
    got_status, got_body = answers["gateway"]
    assert got_status == status
    assert set(got_body) == {"error"} and text in got_body["error"]


@pytest.mark.parametrize("body", [{"instances": [[1.0], [2.0, 3.0]]}, {"instances": [1.0, "a"]}])
def test_ragged_or_mixed_bodies_never_reach_the_backend(tfserving_gateway, body):
    _, gateway = tfserving_gateway
    request_id = f"ragged-{abs(hash(json.dumps(body)))}"
    resp = requests.post(f"{gateway.url}{HALF}:predict", data=json.dumps(body),
                         headers={"X-Request-ID": request_id}, timeout=TIMEOUT)
    assert resp.status_code == 400
    gateway.process.wait_until(
        lambda: any(line["request_id"] == request_id for line in gateway.access_log()),
        10, "logging the request")
    (line,) = [line for line in gateway.access_log() if line["request_id"] == request_id]
    assert not any(" Predict " in call for call in line["upstream"]), line["upstream"]


def test_a_signature_in_an_error_is_printed_as_tf_servings_debug_string(front_doors):
    """The whole of regressor.cc's text for the default (predict) signature of half_plus_two."""
    answers = ask_both(front_doors, "POST", f"{HALF}:regress", {"examples": [{"x": 1.0}]})
    assert answers["gateway"] == answers["model server"]
    status, body = answers["gateway"]
    dims = "      dim {\n        size: -1\n      }\n      dim {\n        size: 1\n      }\n"

    def entry(field: str, alias: str) -> str:
        return (f'{field} {{\n  key: "{alias}"\n  value {{\n    name: "{alias}:0"\n'
                "    dtype: DT_FLOAT\n    tensor_shape {\n" + dims + "    }\n  }\n}\n")

    assert (status, body["error"]) == (400, (
        "No regression inputs found in SignatureDef: " + entry("inputs", "x")
        + entry("outputs", "y") + 'method_name: "tensorflow/serving/predict"\n'
    ))


@pytest.mark.parametrize(("body", "text"), [
    ({"signature_name": 100}, 'JSON Value: {\n    "signature_name": 100\n} not formatted '
     "correctly. 'signature_name' key must be a string value."),
    ({"instances": "abc"}, 'JSON Value: {\n    "instances": "abc"\n} Excepting \'instances\' '
     "to be an list/array"),
    ({"instances": [{"x": {"a": [1.5, 1e30]}}]}, "Failed to process element: 0 key: x of "
     "'instances' list. Error: INVALID_ARGUMENT: JSON Value: {\n    \"a\": [\n        1.5,\n"
     '        1e30\n    ]\n} Type: Object is not of expected type: float'),
    ({"inputs": {"x": [[1.0], 2.0]}}, "JSON Value: 2.0 found at incorrect level: 2 in the JSON "
     "DOM. Expected at level: 2"),
])
def test_a_value_in_an_error_is_printed_as_rapidjson_prints_it(front_doors, body, text):
    """json_tensor.cc JsonValueToString: PrettyWriter for objects and arrays, WriteDecimal for a
    lone decimal; the whole text, from both front doors."""
    answers = ask_both(front_doors, "POST", f"{HALF}:predict", body)
    assert answers["gateway"] == answers["model server"] == (400, {"error": text})


def test_an_error_body_is_tf_servings_byte_for_byte(front_doors):
    """json_tensor.cc MakeJsonFromStatus: rapidjson's PrettyWriter, 4-space indent."""
    for name, base in front_doors.items():
        resp = requests.post(base + "/v1/models/half:predict", data='{"instances": [1.0]}',
                             timeout=TIMEOUT)
        assert (resp.status_code, resp.content) == (404, (
            b'{\n    "error": "Servable not found for request: Latest(half)"\n}')), name


def test_other_verbs_are_malformed_requests_at_both_front_doors(front_doors):
    """Only POST and GET have routes; libevent passes HEAD and PATCH on, the handler refuses them
    (a HEAD answer has the headers and no body)."""
    for name, base in front_doors.items():
        patch = requests.patch(base + HALF, data="{}", timeout=TIMEOUT)
        assert (patch.status_code, patch.json()) == (
            400, {"error": f"Malformed request: PATCH {HALF}"}), name
        head = requests.head(base + HALF, timeout=TIMEOUT)
        assert (head.status_code, head.content) == (400, b""), name
        assert head.headers["Content-Type"].startswith("application/json"), name


def test_a_query_string_is_part_of_the_path_tf_serving_routes_on(front_doors):
    """util/net_http's uri_path() is the path with its query: TF Serving's regexes must match all
    of it, so a predict with a query is a malformed request, and a status path reads the query
    into the model name (it then names no model)."""
    for path in (f"{HALF}:predict?debug=1", f"{HALF}/versions/123:predict?x"):
        answers = ask_both(front_doors, "POST", path, {"instances": [1.0]})
        assert answers["gateway"] == answers["model server"] == (
            400, {"error": f"Malformed request: POST {path}"}), path
    metadata = f"{HALF}/metadata?x=1"
    assert ask_both(front_doors, "GET", metadata, None)["gateway"] == (
        400, {"error": f"Malformed request: GET {metadata}"})
    answers = ask_both(front_doors, "GET", f"{HALF}?x=1", None)
    assert answers["gateway"] == answers["model server"]
    status, body = answers["gateway"]
    assert status == 404 and "half_plus_two?x=1" in body["error"], body


def test_expect_100_continue_is_answered_before_the_body_is_sent(front_doors):
    """libevent answers `Expect: 100-continue` at once; curl sends it with a large body and would
    otherwise wait a second before sending the body."""
    body = json.dumps({"instances": [1.0, 2.0, 5.0]}).encode()
    for name, base in front_doors.items():
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(
                f"POST {HALF}:predict HTTP/1.1\r\nHost: {host}\r\nExpect: 100-continue\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            interim = sock.recv(4096)
            assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), (name, interim)
            sock.sendall(body)
            answer = b""
            while not answer.endswith(b"}"):
                chunk = sock.recv(4096)
                assert chunk, (name, answer)
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), (name, answer)
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"predictions": [2.5, 3.0, 4.5]}


def test_an_expectation_other_than_100_continue_is_417_at_both_doors(front_doors):
    """libevent's evhttp_get_body: any other `Expect` on a request with a body is refused with
    417 Expectation Failed (gunicorn refuses it too)."""
    for name, base in front_doors.items():
        resp = requests.post(f"{base}{HALF}:predict", data='{"instances": [1.0]}',
                             headers={"Expect": "something-else"}, timeout=TIMEOUT)
        assert resp.status_code == 417, (name, resp.text)


def _send_framed(base: str, path: str, body: bytes, framing: str) -> tuple[int, object]:
    headers = {"Content-Type": "application/json"}
    if "gzip" in framing:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    # requests sends an iterator with Transfer-Encoding: chunked, one chunk per item.
    data = iter([body[:7], body[7:]]) if "chunked" in framing else body
    resp = requests.post(base + path, data=data, headers=headers, timeout=TIMEOUT)
    return resp.status_code, resp.json()


@pytest.mark.parametrize("framing", ["gzip", "chunked", "gzip+chunked"])
def test_gzip_and_chunked_bodies_are_read_as_tf_serving_reads_them(front_doors, framing):
    """util/net_http: libevent de-chunks the body; evhttp_request.cc inflates it when
    Content-Encoding contains gzip (auto_uncompress_input defaults to true)."""
    body = json.dumps({"instances": [1.0, 2.0, 5.0]}).encode()
    for name, base in front_doors.items():
        assert _send_framed(base, f"{HALF}:predict", body, framing) == (
            200, {"predictions": [2.5, 3.0, 4.5]}), name


def test_a_body_gzip_cannot_read_arrives_empty_as_in_tf_serving(front_doors):
    """evhttp_request.cc hands its handler an empty body when uncompressing fails."""
    whole = gzip.compress(b'{"instances": [1.0]}')
    for name, base in front_doors.items():
        for broken in (b'{"instances": [1.0]}', whole[:-6]):  # not gzip; cut short
            resp = requests.post(base + f"{HALF}:predict", data=broken,
                                 headers={"Content-Encoding": "gzip"}, timeout=TIMEOUT)
            assert (resp.status_code, resp.json()) == (
                400, {"error": "JSON Parse error: The document is empty"}), name


def test_a_body_that_is_not_json_gets_rapidjsons_text(front_doors):
    answers = ask_both(front_doors, "POST", f"{HALF}:predict", "not json")
    assert answers["gateway"] == answers["model server"] == (
        400, {"error": "JSON Parse error: Invalid value. at offset: 0"})


# TF Serving's order for a predict (util/json_tensor.cc FillPredictRequestFromJson): parse, the
# body an object, its signature_name a string (400s), then the model looked up (404 when it or
# the version is missing), and only then the instances read.
@pytest.mark.parametrize(("body", "status", "text"), [
    ("[1.0]", 400, "JSON Value: [\n    1.0\n] Is not object"),
    ('{"signature_name": 1, "instances": [1.0]}', 400,
     "'signature_name' key must be a string value."),
    ('{"signature_name": null, "instances": [1.0]}', 400,
     "'signature_name' key must be a string value."),
    ('{"instances": [[1.0], [2.0, 3.0]]}', 404,
     "Servable not found for request: Specific(half_plus_two, 999)"),
    ('{"instances": 5}', 404, "Servable not found for request: Specific(half_plus_two, 999)"),
])  # fmt: skip
def test_a_missing_version_is_looked_up_after_the_envelope_is_checked(
    front_doors, body, status, text
):
    answers = ask_both(front_doors, "POST", f"{HALF}/versions/999:predict", body)
    assert answers["gateway"] == answers["model server"]
    got_status, got_body = answers["gateway"]
    assert got_status == status and text in got_body["error"], got_body


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_path_no_handler_takes_gets_libevents_404_page_at_both_doors(front_doors, method):
    """evhttp_server.cc: no handler for the path -> evhttp_send_error(req, HTTP_NOTFOUND, nullptr),
    libevent's HTML page, not TF Serving's JSON error body."""
    for name, base in front_doors.items():
        resp = requests.request(method, f"{base}/v2/models/half_plus_two:predict", data="{}",
                                timeout=TIMEOUT)
        assert resp.status_code == 404, name
        assert resp.headers["Content-Type"] == "text/html", name
        assert resp.text == ("<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
                             "<H1>Not Found</H1>\n</BODY></HTML>\n"), name


def tensor_info(name: str, dtype: str, dims: list[int] | None) -> dict:
    """TensorInfo as TF Serving's metadata JSON writes it (None: unknown rank)."""
    shape = {"dim": [{"size": str(d), "name": ""} for d in dims or []],
             "unknown_rank": dims is None}
    return {"name": name, "dtype": dtype, "tensor_shape": shape}


def signature(method: str, inputs: dict, outputs: dict) -> dict:
    # "defaults" is SignatureDef's newest field; TF Serving prints it empty like any unset map.
    return {"inputs": inputs, "outputs": outputs, "method_name": f"tensorflow/serving/{method}",
            "defaults": {}}


def test_metadata_is_tf_servings(front_doors):
    """half_plus_two_model_metadata.json's content, for this model under this name."""
    examples = {"inputs": tensor_info("tf_example:0", "DT_STRING", None)}
    column = [-1, 1]
    expected = {
        "model_spec": {"name": "half_plus_two", "signature_name": "", "version": "123"},
        "metadata": {"signature_def": {"signature_def": {
            "serving_default": signature("predict", {"x": tensor_info("x:0", "DT_FLOAT", column)},
                                         {"y": tensor_info("y:0", "DT_FLOAT", column)}),
            "classify_x_to_y": signature("classify", examples,
                                         {"scores": tensor_info("y:0", "DT_FLOAT", column)}),
            "regress_x_to_y": signature("regress", examples,
                                        {"outputs": tensor_info("y:0", "DT_FLOAT", column)}),
            "regress_x_to_y2": signature("regress", examples,
                                         {"outputs": tensor_info("y2:0", "DT_FLOAT", column)}),
            "regress_x2_to_y3": signature(
                "regress", {"inputs": tensor_info("x2:0", "DT_FLOAT", column)},
                {"outputs": tensor_info("y3:0", "DT_FLOAT", column)}),
        }}},
    }
    answers = ask_both(front_doors, "GET", f"{HALF}/metadata", None)
    assert answers["gateway"] == answers["model server"] == (200, expected)


def test_tf2_metadata_is_the_same_from_both(front_doors):
    """The TF2 export's signatures carry `defaults` tensors: every TensorProto field is listed."""
    answers = ask_both(front_doors, "GET", f"{TF2}/metadata", None)
    assert answers["gateway"] == answers["model server"]
    status, body = answers["gateway"]
    assert status == 200
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["x"]["tensor_shape"]["dim"] == [
        {"size": "1", "name": ""}]
    default_x = signatures["serving_default"]["defaults"]["x"]
    assert default_x["resource_handle_val"] == [] and default_x["variant_val"] == []


# -- both doors side by side on generated bodies -----------------------------------------------
FUZZ_PATHS = [f"{HALF}", f"{TF2}", f"{HALF}/versions/123", f"{HALF}/versions/999",
              f"{HALF}/labels/nope", "/v1/models/nope"]
FUZZ_SIGNATURES = ["serving_default", "classify_x_to_y", "regress_x_to_y", "regress_x2_to_y3",
                   "classify_x2_to_y3", "", "nope", None, 1]


def _fuzz_scalar(rng) -> object:
    return rng.choice([0, 1, -1, 2**63, -(2**63) - 1, 2**64, 1.5, -0.0, 1e308, 3.5e38, True,
                       None, "", "x", "é", {"b64": "AAAA"}, {"b64": "!!"}, {}, [], [[]]])


def _fuzz_value(rng, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return _fuzz_scalar(rng)
    if roll < 0.85:
        return [_fuzz_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["x", "y", "inputs", "b64", ""]): _fuzz_value(rng, depth + 1)
            for _ in range(rng.randint(0, 2))}


def _fuzz_body(rng) -> str:
    roll = rng.random()
    if roll < 0.3:
        body: object = {"instances": [rng.choice([1.0, [1.0], 2, "a", None, [1.0, 2.0]])
                                      for _ in range(rng.randint(0, 3))]}
    elif roll < 0.5:
        body = {"inputs": rng.choice([_fuzz_value(rng), {"x": _fuzz_value(rng)}])}
    elif roll < 0.75:
        body = {"examples": [{rng.choice(["x", "x2", "y"]): _fuzz_value(rng)}
                             for _ in range(rng.randint(0, 2))]}
        if rng.random() < 0.3:
            body["context"] = rng.choice([{}, {"x": 1.0}, [], None])
    else:
        body = _fuzz_value(rng)
    if isinstance(body, dict) and rng.random() < 0.4:
        body["signature_name"] = rng.choice(FUZZ_SIGNATURES)
    text = json.dumps(body)
    if rng.random() < 0.15:  # a byte cut or added: not JSON any more, most of the time
        cut = rng.randrange(len(text) + 1)
        text = text[:cut] + rng.choice(["", "}", ",", "\\", "1e400", "\x00"]) + text[cut + 1:]
    return text


@pytest.mark.parametrize("seed", range(4))
def test_both_doors_answer_generated_bodies_alike(front_doors, seed):
    """Seeded bodies (well-formed, mistyped, ragged, not JSON) to predict, classify and regress
    on served, missing and mislabelled models: never a 5xx; the same status from both doors; the
    same error text (the gateway may add a `hint` beside it); the same JSON on success."""
    import random

    rng = random.Random(seed)
    seen: set[int] = set()
    for _ in range(75):
        path = f"{rng.choice(FUZZ_PATHS)}:{rng.choice(['predict', 'classify', 'regress'])}"
        body = _fuzz_body(rng)
        answers = {name: requests.post(base + path, data=body.encode("utf-8", "surrogatepass"),
                                       timeout=TIMEOUT)
                   for name, base in front_doors.items()}
        gateway, modelserver = answers["gateway"], answers["model server"]
        case = (path, body, gateway.text[:300], modelserver.text[:300])
        assert gateway.status_code < 500 and modelserver.status_code < 500, case
        assert gateway.status_code == modelserver.status_code, case
        seen.add(gateway.status_code)
        got, want = gateway.json(), modelserver.json()
        got.pop("hint", None)
        assert got == want, case
    assert len(seen) > 1  # the generator reaches more than one kind of answer


def test_bytes_that_are_not_utf8_inside_a_string_are_taken_as_tf_serving_takes_them(front_doors):
    """rapidjson in TF Serving does not validate encodings: a Latin-1 `é` (byte E9) inside a
    string is taken as it is (here a feature the model ignores), where Python's json refuses the
    body; outside a string it is a syntax error at its byte."""
    classify = (b'{"signature_name": "classify_x_to_y", '
                b'"examples": [{"x": 20.0, "note": "caf\xe9"}]}')
    for name, base in front_doors.items():
        resp = requests.post(base + f"{HALF}:classify", data=classify, timeout=TIMEOUT)
        assert (resp.status_code, resp.json()) == (200, {"results": [[["", 12.0]]]}), name
        resp = requests.post(base + f"{HALF}:predict", data=b'{"instances": [1.0]\xe9}',
                             timeout=TIMEOUT)
        assert (resp.status_code, resp.json()) == (400, {
            "error": "JSON Parse error: Missing a comma or '}' after an object member. "
                     "at offset: 19"}), name
