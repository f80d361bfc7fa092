"""A new model version with other inputs goes live behind a running gateway: the gateway's first
request after it is answered, as TF Serving answers it.

The gateway converts JSON with the signatures it cached per worker. When version 2 of a model
renames its input, or version 3 takes strings where version 2 took floats, a request converted with
the older signatures is refused (by the backend, or by the gateway's own codec); the gateway then
looks at the model's signatures again and converts the request anew, once. Before this, every
request failed until the gateway restarted, while the model server answered them.

One local model server polls the model's base path every second (TF Serving's
--file_system_poll_wait_seconds); versions are copied in while the gateway serves, also under load
from concurrent clients (bounded: 8 threads for a few seconds, loopback).

A roll-out across replicas is half done when one replica serves the old version and another the
new one: the gateway converts each request for the version of the replica it sends it to (two
local model servers, 8 client threads, 240 requests, loopback).
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import shutil
import threading
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.gateway import start_gateway
from tests.fixtures.modelserver import start_modelserver
from tfstack.model_repo.data import digits_split, to_png

TIMEOUT = 30


def _serving(server, version: int) -> bool:
    status = requests.get(f"{server.rest_url}/v1/models/m", timeout=TIMEOUT).json()
    return any(
        v["version"] == str(version) and v["state"] == "AVAILABLE"
        for v in status.get("model_version_status", [])
    )


def _predict(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/v1/models/m:predict", data=json.dumps(body), timeout=TIMEOUT)


def _polling_modelserver(tmp_path: Path, first_version: Path):
    """A model server serving model `m` from a base path it polls every second, whose version 1
    is a copy of `first_version`; the base path."""
    base = tmp_path / "repo" / "m"
    shutil.copytree(first_version, base / "1")
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{base}" '
        'model_platform: "tensorflow" } }\n'
    )
    return start_modelserver(tmp_path, config, "--file_system_poll_wait_seconds=1"), base


def test_a_new_version_with_other_inputs_is_served_from_its_first_request(tmp_path, models_root):
    # Version 1: half_plus_two, input x: float.
    server, base = _polling_modelserver(tmp_path, models_root / "half_plus_two" / "1")
    try:
        # One worker: the request after each roll-out meets the cache that is stale.
        gateway = start_gateway(tmp_path, [server.grpc_target], workers=1)
        try:
            answer = _predict(gateway.url, {"instances": [1.0]})
            assert (answer.status_code, answer.json()) == (200, {"predictions": [2.5]})

            # Version 2: digits, input `images` (float, 64 per instance). The request converted
            # with version 1's signature names `x`: the backend refuses it.
            shutil.copytree(models_root / "digits" / "1", base / "2")
            server.process.wait_until(lambda: _serving(server, 2), TIMEOUT, "serving version 2")
            body = {"instances": [[0.0] * 64]}
            direct = _predict(server.rest_url, body)
            assert direct.status_code == 200, direct.text
            answer = _predict(gateway.url, body)
            assert (answer.status_code, answer.json()) == (200, direct.json()), answer.text

            # Version 3: digits_png, input `image_bytes` (string). Converted with version 2's
            # float signature, the gateway's codec itself refuses {"b64": ...}.
            time.sleep(1.1)  # past the gateway's recheck interval (its last recheck: version 2)
            shutil.copytree(models_root / "digits_png" / "1", base / "3")
            server.process.wait_until(lambda: _serving(server, 3), TIMEOUT, "serving version 3")
            image = digits_split()[1][0]
            body = {"instances": [{"b64": base64.b64encode(to_png(image)).decode()}]}
            direct = _predict(server.rest_url, body)
            assert direct.status_code == 200, direct.text
            answer = _predict(gateway.url, body)
            assert (answer.status_code, answer.json()) == (200, direct.json()), answer.text

            # A request the model refuses still gets the backend's answer, untouched.
            bad = {"instances": [1.0]}
            assert _predict(gateway.url, bad).json() == _predict(server.rest_url, bad).json()
        finally:
            gateway.stop()
    finally:
        server.stop()


def _renamed_half_plus_three(path: Path) -> None:
    """A SavedModel like half_plus_two but with its input named `inp` and y = 0.5 * x + 3: the
    same request body suits both, only the input's name differs."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="inp")])
        def serve(self, inp):
            return {"y": 0.5 * inp + 3.0}

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})


def test_no_request_fails_when_a_version_goes_live_under_load(tmp_path, models_root):
    _renamed_half_plus_three(tmp_path / "v2")
    server, base = _polling_modelserver(tmp_path, models_root / "half_plus_two" / "1")
    try:
        gateway = start_gateway(tmp_path, [server.grpc_target])  # 2 workers, gevent
        try:
            port = int(gateway.url.rsplit(":", 1)[1])
            answers: collections.Counter = collections.Counter()
            stop = threading.Event()

            def client() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
                try:
                    while not stop.is_set():
                        conn.request("POST", "/v1/models/m:predict", body=b'{"instances": [1.0]}')
                        resp = conn.getresponse()
                        answers[resp.status, resp.read()] += 1
                finally:
                    conn.close()

            threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
            for thread in threads:
                thread.start()
            try:
                time.sleep(1.5)
                shutil.copytree(tmp_path / "v2", base / "2")
                server.process.wait_until(lambda: _serving(server, 2), TIMEOUT, "serving v2")
                time.sleep(1.5)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(TIMEOUT)
            by_body = {body: n for (status, body), n in answers.items() if status == 200}
            failed = {key: n for key, n in answers.items() if key[0] != 200}
            assert not failed, f"{sum(failed.values())} of {sum(answers.values())}: {failed}"
            assert set(by_body) == {b'{"predictions":[2.5]}', b'{"predictions":[3.5]}'}, by_body
        finally:
            gateway.stop()
    finally:
        server.stop()


def _upstream_calls(gateway, rpc: str) -> float:
    text = requests.get(f"{gateway.url}/metrics", timeout=TIMEOUT).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tfstack_gateway_upstream_duration_seconds_count"
        and sample.labels.get("rpc") == rpc
    )


def test_replicas_serving_two_versions_with_other_inputs_both_answer_every_request(
    tmp_path, models_root
):
    # A roll-out half done: each TF Serving replica polls the base path on its own, so for a
    # while replica a serves version 1 (half_plus_two, input `x`) while replica b already serves
    # version 2 (input renamed `inp`, y = 0.5 * x + 3). A TF Serving client sending
    # {"instances": [1.0]} gets an answer from either; so must the gateway's clients, although it
    # converts each request for the input names of the version the chosen replica serves.
    _renamed_half_plus_three(tmp_path / "v2")
    servers = []
    try:
        for replica, version, source in (
            ("a", 1, models_root / "half_plus_two" / "1"),
            ("b", 2, tmp_path / "v2"),
        ):
            base = tmp_path / replica / "m"
            shutil.copytree(source, base / str(version))
            config = tmp_path / f"{replica}.config"
            config.write_text(
                f'model_config_list {{ config {{ name: "m" base_path: "{base}" '
                'model_platform: "tensorflow" } }\n'
            )
            servers.append(start_modelserver(tmp_path, config))
        one = {"instances": [1.0]}
        expected = {_predict(s.rest_url, one).content for s in servers}
        assert expected == {b'{"predictions":[2.5]}', b'{"predictions":[3.5]}'}, expected

        gateway = start_gateway(tmp_path, [s.grpc_target for s in servers])  # 2 workers
        try:
            answers: collections.Counter = collections.Counter()
            lock = threading.Lock()

            def client() -> None:  # one keep-alive connection each, so both workers serve
                with requests.Session() as session:
                    for _ in range(30):
                        resp = session.post(f"{gateway.url}/v1/models/m:predict",
                                            data=json.dumps(one), timeout=TIMEOUT)
                        with lock:
                            answers[resp.status_code, resp.content] += 1

            threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(TIMEOUT * 2)
            total = sum(answers.values())
            assert total == 240, answers
            failed = {key: n for key, n in answers.items() if key[0] != 200}
            assert not failed, f"{sum(failed.values())} of {total} failed: {failed}"
            assert {body for _, body in answers} == expected, answers
            # Each worker fetched each version's signatures about once (2-4 calls measured), not
            # after every answer from the other version (about one call per two requests).
            fetched = _upstream_calls(gateway, "GetModelMetadata")
            assert 2 <= fetched <= 24, fetched
        finally:
            gateway.stop()
    finally:
        for server in servers:
            server.stop()
