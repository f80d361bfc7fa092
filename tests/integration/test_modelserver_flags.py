"""The model server's pure parts, without a process: its command line (TF Serving's flag
syntax), the Prometheus renderer's TF Serving quirks, and TF Serving's float formatting."""

from __future__ import annotations

import math

import pytest

from tfstack.modelserver import flags
from tfstack.modelserver.metrics import Counter, Histogram, Metrics, exponential_buckets


def test_tf_serving_flag_syntax_and_defaults():
    args, unknown, warnings = flags.parse(
        [
            "--port=9000",
            "--rest_api_port",
            "9001",
            "--enable_batching",
            "--enable_model_warmup=false",
            "--model_config_file=/m.config",
            "stray",
        ]
    )
    assert (args.port, args.rest_api_port) == (9000, 9001)
    assert args.enable_batching is True and args.enable_model_warmup is False
    assert args.model_config_file == "/m.config"
    assert args.file_system_poll_wait_seconds == 1
    assert args.model_config_file_poll_wait_seconds == 0
    assert args.rest_api_timeout_in_ms == 30000
    assert args.host == "0.0.0.0"
    assert unknown == ["stray"] and warnings == []


def test_unimplemented_flags_warn_and_unsafe_ones_refuse(capsys):
    _, _, warnings = flags.parse(["--num_load_threads=4", "--enable_profiler=false"])
    assert len(warnings) == 2 and "--num_load_threads" in warnings[0]
    with pytest.raises(SystemExit) as info:
        flags.parse(["--ssl_config_file=/ssl.config"])
    assert info.value.code == 2
    assert "TLS is not supported" in capsys.readouterr().err


def test_batching_file_needs_enable_batching(capsys):
    with pytest.raises(SystemExit):
        flags.parse(["--batching_parameters_file=/b.txt"])
    assert "batching_parameters_file is set without setting" in capsys.readouterr().err


def test_grpc_channel_arguments():
    assert flags.channel_arguments(
        "grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb"
    ) == [("grpc.max_connection_age_ms", 2000), ("grpc.lb_policy_name", "grpclb")]


def test_exposition_quirks():
    counter = Counter("/tensorflow/serving/request_count", ("model_name", "status"))
    counter.inc("m", "OK")
    counter.inc('we"ird', "NOT_FOUND", amount=2)
    plain = Counter("/tensorflow/serving/batching_session/wrapped_run_count")
    histogram = Histogram("/x/latency", [10, 18], ("model_name",))
    histogram.observe(10, "m")  # TF puts a value in the first bucket whose limit is above it
    histogram.observe(3.25, "m")
    assert counter.render() == [
        "# TYPE :tensorflow:serving:request_count counter",
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 1',
        ':tensorflow:serving:request_count{model_name="we\\"ird",status="NOT_FOUND"} 2',
    ]
    assert plain.render()[1] == ":tensorflow:serving:batching_session:wrapped_run_count{} 0"
    assert histogram.render() == [
        "# TYPE :x:latency histogram",
        ':x:latency_bucket{model_name="m",le="10"} 1',
        ':x:latency_bucket{model_name="m",le="18"} 2',
        ':x:latency_bucket{model_name="m",le="+Inf"} 2',
        ':x:latency_sum{model_name="m"} 13.25',
        ':x:latency_count{model_name="m"} 2',
    ]
    assert "# HELP" not in Metrics().render()
    assert [f"{v:.6g}" for v in exponential_buckets(10, 1.8, 33)[:3]] == ["10", "18", "32.4"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.0, "3.0"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (1e-7, "1e-07"),
        (123456789.0, "123456792.0"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
    ],
)
def test_float_formatting(value, text):
    import numpy as np

    from tfstack.modelserver.rest_json import encode_predict

    output = encode_predict({"y": np.array([value], dtype=np.float32)}, row_format=False)
    assert output == '{"outputs":[' + text + "]}"
