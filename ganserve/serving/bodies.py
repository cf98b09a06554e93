"""Request bodies -> the JSON object the client sent, or a ``RequestError`` (HTTP 400 / 413) naming the problem.

One strict reader for every engine and content type, so no body can reach the request models in a shape the client
did not send and no body can cost more than its size: at most ``MAX_BODY_BYTES``; strict UTF-8; nesting at most
``MAX_DEPTH`` deep (Python's parser would raise RecursionError near 1,000); integers of at most ``MAX_INT_DIGITS``
ASCII digits (Python refuses more than 4,300 with a ValueError, after spending time on them); duplicate keys refused
(``json.loads`` keeps the last one silently); lone surrogates refused; and the result must be an object.
An empty body is refused too: it must never mean "the defaults" (seed 0).

``NaN`` / ``Infinity`` are read as floats on purpose, so the request model names the field they were sent for.
"""

from __future__ import annotations

import json
from typing import Any

from ganserve.requests import RequestError

MAX_BODY_BYTES = 1 << 20
MAX_DEPTH = 32  # a real request is 3 levels deep (style_mix.layers)
MAX_INT_DIGITS = 32  # seeds have 10 digits; anything longer is out of every range
MAX_FLOAT_CHARS = 64


class BodyTooLarge(RequestError):
    """A body over the size limit: HTTP 413 rather than 400."""

    status = 413

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "error": "request too large"}


def too_large(size: int, *, partial: bool = False) -> BodyTooLarge:
    """The one 413 every size gets: from the handler (the whole body in hand) and from ganserve's front on the
    inference port (``Content-Length``, or with ``partial`` the running total of a chunked body it stopped reading),
    so a client sees the same JSON whichever refused it."""
    size_text = f"at least {size} bytes (sent chunked; the rest was not read)" if partial else f"{size} bytes"
    return BodyTooLarge("", f"the request body is {size_text}, over the limit of {MAX_BODY_BYTES} bytes")


class _Pairs(list):
    """An object's (key, value) pairs as parsed, so duplicates can be found with their path afterwards."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise RequestError("", f"the request body has an integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
    if not text.isascii():  # only the pure-Python scanner would get here: its \d matches any Unicode digit
        raise RequestError("", f"the request body has a number with non-ASCII digits ({text!r})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_FLOAT_CHARS or not text.isascii():
        raise RequestError("", f"the request body has an unreadable number ({text[:16]!r}...)")
    return float(text)


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def _check_str(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(path, "the request body has a string with a lone surrogate (\\ud800-\\udfff)") from None


def _build(node: Any, path: str, depth: int) -> Any:
    """_Pairs -> dict (duplicates refused), lists walked; depth (objects and arrays inside one another) and strings
    checked. Recursion is bounded by MAX_DEPTH because the depth is checked before going down."""
    if depth > MAX_DEPTH and isinstance(node, list):  # _Pairs is a list too
        raise RequestError(path, f"the request body is nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, _Pairs):
        out: dict[str, Any] = {}
        for key, value in node:
            _check_str(key, path)
            if key in out:
                raise RequestError(_join(path, key), f"duplicate key '{key}' in the request body")
            out[key] = _build(value, _join(path, key), depth + 1)
        return out
    if isinstance(node, list):
        return [_build(v, _join(path, i), depth + 1) for i, v in enumerate(node)]
    if isinstance(node, str):
        _check_str(node, path)
    return node


def parse_json_object(raw: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Raw body bytes (or text) -> the JSON object, strictly. Raises RequestError (BodyTooLarge over the limit)."""
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > MAX_BODY_BYTES:
        raise too_large(size)
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            raise RequestError("", f"the request body is not UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise RequestError("", 'the request body is empty: send a JSON object such as {"seeds": [0]}')
    try:
        parsed = json.loads(text, object_pairs_hook=_Pairs, parse_int=_parse_int, parse_float=_parse_float)
    except RequestError:
        raise
    except RecursionError:
        raise RequestError("", f"the request body is nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as e:
        if e.pos < len(text) and text[e.pos].isdigit():  # JSON numbers are ASCII; say so rather than "expecting"
            raise RequestError("", f"numbers must use the digits 0-9, got {text[e.pos]!r} at char {e.pos}") from None
        raise RequestError("", f"the request body is not valid JSON ({e})") from None
    except ValueError as e:  # int()/float() limits the hooks did not catch
        raise RequestError("", f"the request body has an unreadable number ({e})") from None
    if not isinstance(parsed, _Pairs):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(parsed), "a number")
        raise RequestError("", f"the request body must be a JSON object, got {kind}")
    return _build(parsed, "", 1)


def decode_body(raw: Any) -> dict[str, Any]:
    """A body as an engine hands it over -> the request dict. Bytes and text are read strictly; a dict is taken
    as already decoded (in-process callers; TorchServe only with decode_input_request=true, which ganserve's
    config turns off so that this reader decides); anything else is refused."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, (bytes, bytearray, memoryview, str)):
        return parse_json_object(raw)
    if raw is None:
        raise RequestError("", 'the request has no body: send a JSON object such as {"seeds": [0]}')
    raise RequestError("", f"the request body must be a JSON object, got {type(raw).__name__}")
