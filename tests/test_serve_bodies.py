"""The strict body reader every engine goes through: hostile bodies are refused with a RequestError naming the
problem (HTTP 400, or 413 over the size limit), never a RecursionError / ValueError (HTTP 500) or a silent guess."""

from __future__ import annotations

import json

import pytest

from ganserve.requests import RequestError
from ganserve.serving.bodies import MAX_BODY_BYTES, MAX_DEPTH, BodyTooLarge, decode_body, parse_json_object


def refused(raw) -> RequestError:
    with pytest.raises(RequestError) as err:
        decode_body(raw)
    return err.value


def test_a_plain_object_is_read_as_sent():
    body = b'{"seeds": [1, 2], "truncation_psi": 0.5, "style_mix": {"seeds": [3], "layers": "coarse"}}'
    assert decode_body(body) == json.loads(body)
    assert decode_body(body.decode()) == json.loads(body)
    assert decode_body({"seeds": [1]}) == {"seeds": [1]}  # in-process callers hand over dicts


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000, ("[" * 100_000).encode() + b"]" * 100_000])
def test_deep_nesting_is_refused_without_a_recursion_error(raw):
    assert "nested" in refused(raw).message


def test_depth_limit_is_exact():
    ok = b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"1" + b"]" * (MAX_DEPTH - 1) + b"}"
    assert decode_body(ok)["a"]
    deep = b'{"a":' + b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH + b"}"
    assert "nested" in refused(deep).message


@pytest.mark.parametrize("digits", [33, 4301, 5000])
def test_huge_integers_are_refused_by_length_before_int_conversion(digits):
    err = refused(b'{"seeds": [' + b"7" * digits + b"]}")
    assert f"{digits} digits" in err.message


def test_long_float_literals_are_refused():
    assert "number" in refused(b'{"truncation_psi": 0.' + b"5" * 5000 + b"}").message


def test_duplicate_keys_are_refused_with_their_path():
    err = refused(b'{"seeds": [1], "seeds": [2]}')
    assert err.field == "seeds" and "duplicate" in err.message
    err = refused(b'{"style_mix": {"seeds": [1], "layers": "fine", "seeds": [2]}}')
    assert err.field == "style_mix.seeds"


@pytest.mark.parametrize("body", ['{"seeds": [١٢]}', '{"truncation_psi": ٠.٥}', '{"seeds": [１２]}'])
def test_unicode_digits_are_not_numbers(body):
    err = refused(body.encode())
    assert "0-9" in err.message


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"", "empty"),
        (b" \n\t", "empty"),
        (None, "no body"),
        (b"[1, 2]", "an array"),
        (b'"seeds"', "a string"),
        (b"17", "a number"),
        (b"null", "null"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (3.5, "float"),
    ],
)
def test_what_is_not_a_json_object_is_named(raw, words):
    err = refused(raw)
    assert words in err.message and err.to_dict()["error"] == "invalid request"


@pytest.mark.parametrize("kind", [bytes, str])
def test_size_limit_applies_to_every_type_and_is_a_413(kind):
    raw = b'{"seeds": [1], "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    with pytest.raises(BodyTooLarge) as err:
        parse_json_object(raw if kind is bytes else raw.decode())
    assert err.value.status == 413 and err.value.to_dict()["error"] == "request too large"
    assert str(MAX_BODY_BYTES) in err.value.message
    just_fits = b'{"p": "' + b"x" * (MAX_BODY_BYTES - 9) + b'"}'
    assert len(just_fits) == MAX_BODY_BYTES and decode_body(just_fits)["p"]


def test_nan_and_infinity_reach_the_request_model():
    # read as floats on purpose: the request model then names the field (truncation_psi) in its 400
    body = decode_body(b'{"truncation_psi": NaN, "x": Infinity}')
    assert body["truncation_psi"] != body["truncation_psi"] and body["x"] == float("inf")
