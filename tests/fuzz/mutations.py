"""Hypothesis strategies that break valid documents and files.

- :func:`mutated_document`: a valid JSON/YAML-like document with one to a few
  fields replaced by wrong types, NaN/inf, zero/negative/huge numbers,
  unicode, empty or wrong-length lists, removed keys or extra keys.
- :func:`mutated_bytes`: a valid file's bytes with bytes flipped, overwritten,
  inserted, deleted, duplicated or the file truncated.
- :func:`mutated_text`: the same on text (kept as text, or as raw bytes).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

Path_ = tuple[Any, ...]

#: Numbers that break arithmetic and checks: zero, signs, extremes, non-finite.
NASTY_NUMBERS: tuple[Any, ...] = (
    0,
    0.0,
    -0.0,
    -1,
    -8.0,
    1e-320,
    1e308,
    -1e308,
    2**63,
    -(2**63) - 1,
    10**400,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
)

#: Strings that break parsing: empty, blanks, unit-like, numeric, unicode, control characters.
NASTY_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "nan",
    "NaN",
    "inf",
    "-1",
    "8,8,8",
    "µm",
    "Å",
    "micrometre",
    "pixel",
    "parsec",
    "z",
    "space",
    "channel",
    "s0",
    "../s0",
    "/",
    "é\u0301\u200b\ufeff",
    "\x00",
    "\ud800",
    "a" * 300,
    "{}",
    "[1, 2",
    "->",
    "|",
)


def nasty_values(depth: int = 2) -> st.SearchStrategy[Any]:
    """Any JSON-like value, weighted towards values that break readers."""
    leaves = st.one_of(
        st.sampled_from(NASTY_NUMBERS),
        st.sampled_from(NASTY_STRINGS),
        st.none(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
    )
    if depth <= 0:
        return leaves
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.text(max_size=6), inner, max_size=3),
        ),
        max_leaves=6,
    )


def _paths(doc: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every path into a document (the root included), parents before children."""
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _paths(v, (*prefix, i))
    return found


def _get(doc: Any, path: Path_) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def _set(doc: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _variants(value: Any) -> list[Any]:
    """Near misses of a value: its number negated, scaled, as text, in a list..."""
    out: list[Any] = [None, str(value), [value], {"value": value}]
    if isinstance(value, bool):
        out += [int(value), "true"]
    elif isinstance(value, int | float):
        out += [-value, value * 10**300]
        number = float(value) if abs(value) < 2**1024 else math.inf
        out += [number * 1e300, number * 1e-300, number + 0.5]
        out += [int(number)] if math.isfinite(number) else []
    elif isinstance(value, str):
        out += [value.upper(), value + " ", value[:1], value * 2]
    elif isinstance(value, list):
        out += [value[:-1], [*value, *value[-1:]], value[::-1], [], [value]]
        if value:
            out += [[value[0]] * 5]
    elif isinstance(value, dict):
        out += [{}, list(value.values()), list(value)]
    return out


_OPS = ("replace", "variant", "delete", "extra", "empty", "nest")


@st.composite
def mutated_document(draw: st.DrawFn, doc: Any, max_mutations: int = 3) -> Any:
    """A deep copy of ``doc`` with 1 to ``max_mutations`` mutations."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths[1:] or paths))
        op = draw(st.sampled_from(_OPS))
        value = _get(doc, path)
        parent = _get(doc, path[:-1]) if path else None
        if op == "replace":
            doc = _set(doc, path, draw(nasty_values()))
        elif op == "variant":
            doc = _set(doc, path, draw(st.sampled_from(_variants(value))))
        elif op == "delete" and isinstance(parent, dict | list):
            del parent[path[-1]]
        elif op == "extra" and isinstance(value, dict):
            value[draw(st.sampled_from(["extra", "", "ome", "version", "axes", "type"]))] = draw(
                nasty_values()
            )
        elif op == "extra" and isinstance(value, list):
            value.insert(draw(st.integers(0, len(value))), draw(nasty_values(1)))
        elif op == "empty":
            doc = _set(doc, path, draw(st.sampled_from([[], {}, "", 0])))
        else:  # nest, or an op that does not apply here
            doc = _set(doc, path, [value] if draw(st.booleans()) else {"nested": value})
    return doc


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, max_mutations: int = 4) -> bytes:
    """``data`` with 1 to ``max_mutations`` byte-level mutations."""
    out = bytearray(data)
    special = st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01, 0x2A, 0x2C, 0x22, 0x0A, 0x5B])
    for _ in range(draw(st.integers(1, max_mutations))):
        n = len(out)
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "duplicate")))
        at = draw(st.integers(0, max(n - 1, 0)))
        if op == "flip" and n:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            out[at] = draw(special | st.integers(0, 255))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and n:
            del out[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del out[at:]
        elif n:
            out[at:at] = out[at : at + draw(st.integers(1, 32))]
    return bytes(out)


def mutated_text(text: str, max_mutations: int = 4) -> st.SearchStrategy[bytes]:
    """Bytes of ``text`` (UTF-8) mutated at the byte level, or at the token level."""
    encoded = text.encode("utf-8")
    return st.one_of(mutated_bytes(encoded, max_mutations), _token_mutations(text))


def _token_mutations(text: str) -> st.SearchStrategy[bytes]:
    """``text`` with whitespace- or comma-separated tokens replaced by nasty ones."""
    import re

    tokens = re.split(r"(\s+|,|\")", text)
    replaceable = [i for i, t in enumerate(tokens) if t and not re.fullmatch(r"\s+|,|\"", t)]

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        out = list(tokens)
        for _ in range(draw(st.integers(1, 3))):
            if not replaceable:
                break
            i = draw(st.sampled_from(replaceable))
            out[i] = draw(
                st.sampled_from(
                    ["nan", "inf", "-inf", "0", "-1", "1e400", "1e-400", "", "x", "9" * 400]
                    + list(NASTY_STRINGS[:20])
                )
                | st.text(max_size=6)
            )
        return "".join(out).encode("utf-8", errors="surrogatepass")

    return build()


def deeply_nested(depth: int = 100_000) -> str:
    """JSON text of a list nested ``depth`` times (exhausts recursive parsers)."""
    return "[" * depth + "]" * depth


def unreadable_json() -> st.SearchStrategy[bytes]:
    """JSON that Python's parser refuses with other errors than JSONDecodeError.

    A list nested 100,000 deep (RecursionError) and integers of more than
    4300 digits (ValueError), alone or inside an object.
    """
    digits = "1" + "0" * 5000
    return st.sampled_from(
        [
            deeply_nested(),
            f"[{digits}]",
            f'{{"multiscales": {digits}, "coordinateSystems": [{digits}]}}',
            '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}",
        ]
    ).map(str.encode)


def one_of_documents(
    documents: dict[str, Any], mutate: Callable[[Any], st.SearchStrategy[Any]] = mutated_document
) -> st.SearchStrategy[tuple[str, Any]]:
    """``(name, mutated document)`` for one of several named seed documents."""
    return st.sampled_from(sorted(documents)).flatmap(
        lambda name: st.tuples(st.just(name), mutate(documents[name]))
    )
