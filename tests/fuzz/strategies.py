"""Hypothesis strategies shared by the fuzz tests: JSON values, and mutations of a valid value.

A fuzzer that only makes random JSON rarely gets past the first check of a loader; one that only
makes valid documents never reaches the checks. So each loader is fed both: random structure, and
a valid document with a few places replaced by random values or deleted (issue 12: "random
structure and values never produce a traceback, only typed errors").
"""

from __future__ import annotations

import copy
import math

from hypothesis import strategies as st

# JSON scalars, the awkward ones included: NaN/Infinity (Python's json reads them), huge and
# negative integers, booleans where integers belong, empty and non-ASCII strings.
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2, 65535, 65536, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 5e-324]),
    st.text(max_size=12), st.sampled_from(["", "0", "..", "a/../b", "\\", "\x00", "é", "Infinity", "NaN"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def _paths(value, prefix=()):
    """Every path into a JSON value (dict keys and list indices), the root included."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _apply(doc, path, action, new):
    if not path:
        return new if action == "replace" else doc
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if action == "delete":
        del parent[last]
    else:
        parent[last] = new
    return doc


@st.composite
def mutated(draw, base, max_mutations: int = 3):
    """``base`` (a JSON value) with 0..max_mutations places replaced by a random value or deleted."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, max_mutations))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete"]))
        doc = _apply(doc, path, action, draw(json_values) if action == "replace" else None)
    return doc
