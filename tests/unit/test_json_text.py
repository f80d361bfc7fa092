"""Values printed inside error messages as TF Serving prints them (util/json_tensor.cc
JsonValueToString: rapidjson's PrettyWriter, WriteDecimal for a lone decimal)."""

from __future__ import annotations

import math

import pytest

from tfstack.protocol.json_text import value_text, write_decimal, writer_double


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.0, "2.0"),  # StrCat gives "2"; WriteDecimal adds ".0"
        (0.1, "0.1"),
        (1e-05, "1e-05"),  # printf's %g exponent
        (1e15, "1e+15"),
        (123456789.0, "123456792.0"),  # rounded to a float, which %.6g does not read back
        (0.30000001, "0.3"),  # a float holds it as 0.3
        (1e300, "1e+300"),  # past a float's range: WriteDecimal<double>
        (math.nan, "NaN"),
        (-math.inf, "-Infinity"),
    ],
)
def test_a_lone_decimal_goes_through_write_decimal(value, text):
    assert write_decimal(value) == text
    assert value_text(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5, "1.5"),
        (100.0, "100.0"),
        (1234e7, "12340000000.0"),
        (1e20, "100000000000000000000.0"),
        (1e21, "1e21"),
        (1.5e30, "1.5e30"),
        (0.001234, "0.001234"),
        (1e-7, "1e-7"),
        (-0.0, "-0.0"),
        (-2.5e-10, "-2.5e-10"),
    ],
)
def test_a_decimal_inside_a_container_is_rapidjsons_double(value, text):
    assert writer_double(value) == text
    assert value_text([value]) == f"[\n    {text}\n]"


def test_containers_are_pretty_printed_with_four_spaces():
    body = {"instances": [{"x": [1, 2]}, "a"], "e": {}, "f": [], "t": True, "n": None}
    assert value_text(body) == (
        '{\n    "instances": [\n        {\n            "x": [\n                1,\n'
        '                2\n            ]\n        },\n        "a"\n    ],\n'
        '    "e": {},\n    "f": [],\n    "t": true,\n    "n": null\n}'
    )


def test_integers_past_uint64_are_doubles_and_strings_escape_as_rapidjson_does():
    assert value_text(2**64 - 1) == "18446744073709551615"
    assert value_text(2**64) == "1.84467441e+19"  # a double in a float's range
    assert value_text([2**64]) == "[\n    18446744073709552000.0\n]"
    assert value_text('a"\\\n\x1fé/') == '"a\\"\\\\\\n\\u001Fé/"'


def test_a_nan_inside_a_container_stops_the_writer_where_rapidjson_stops():
    assert value_text([1.0, math.nan, 2.0]) == "[\n    1.0,\n    "
