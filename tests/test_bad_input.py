"""Every public constructor and function, fed bad input: a clear LrpRefError naming the parameter.

The catalogue below feeds bools, complex numbers, strings, None, NaN, inf,
negative numbers, zero-size and wrong-rank arrays, object arrays and huge
ints to each parameter of: the layers, Sequential, every rule class in
:mod:`lrp_ref.rules` (found by introspection, so a new rule is covered),
every named composite, ``explain``'s arguments and :mod:`lrp_ref.testing`.
Each case must raise an :class:`~lrp_ref.LrpRefError` subclass whose message
names the parameter: never a bare TypeError/ValueError, never a NumPy
warning (warnings are errors in this suite), never a silent conversion.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from nets import random_cnn

import lrp_ref as L
from lrp_ref import composites as C
from lrp_ref import rules as R
from lrp_ref import testing as T
from lrp_ref.errors import LrpRefError

NAN, INF = float("nan"), float("inf")


def bad_arrays(shape: tuple[int, ...]) -> dict[str, Any]:
    """Bad values for an array parameter of the given shape."""
    return {
        "bool": True,
        "bool-array": np.ones(shape, bool),
        "complex": 1 + 2j,
        "complex-array": np.ones(shape) + 1j,
        "complex-array-zero-imaginary": np.ones(shape, complex),
        "str": "1",
        "str-array": np.full(shape, "1"),
        "none": None,
        "nan": np.full(shape, NAN),
        "inf": np.full(shape, INF),
        "zero-size": np.zeros((0,) * len(shape)),
        "huge-int": 2**70,
        "huge-int-list": np.full(shape, 2**70, dtype=object).tolist(),
        "wrong-rank": np.ones((*shape, 1)),
        "scalar": 1.0,
        "object-array": np.ones(shape, dtype=object),
        "ragged": [[1.0], [1.0, 2.0]],
    }


def bad_numbers() -> dict[str, Any]:
    """Bad values for a real-number parameter that must be >= 0."""
    return {
        "bool": True,
        "np-bool": np.bool_(False),
        "complex": 1 + 2j,
        "np-complex": np.complex128(0.5),
        "str": "0.5",
        "none": None,
        "nan": NAN,
        "inf": INF,
        "negative": -1,
        "huge-int": 2**1100,
        "array": np.array([0.5]),
        "list": [0.5],
        "object": object(),
    }


def bad_sizes(minimum: int) -> dict[str, Any]:
    """Bad values for an int-or-pair size (kernel, stride, padding, dilation) that must be >= ``minimum``."""
    bad = {
        "bool": True,
        "bool-pair": (True, 1),
        "float": 1.5,
        "np-float": np.float64(2.0),
        "complex": 1 + 2j,
        "str": "1",
        "nan": NAN,
        "inf": INF,
        "negative": -1,
        "huge": 2**62,
        "huge-pair": (2**62, 2**62),
        "over-limit": 2**40,
        "triple": (1, 1, 1),
        "array": np.array([1, 1]),
        "object": object(),
    }
    if minimum > 0:
        bad["zero"] = 0
    return bad


def bad_counts() -> dict[str, Any]:
    """Bad values for a non-negative count."""
    return {"bool": True, "float": 1.5, "integral-float": 1.0, "str": "1", "complex": 1 + 0j, "nan": NAN,
            "inf": INF, "negative": -1, "none": None, "object": object()}


def bad_choices() -> dict[str, Any]:
    return {"bool": True, "int": 1, "unknown": "nope", "list": ["sign"], "array": np.array(["sign", "add"]),
            "bytes": b"sign", "complex": 1j}


def bad_dtypes() -> dict[str, Any]:
    return {"unknown-name": "foo", "none": None, "int": np.int64, "bool": bool, "complex": np.complex128,
            "float16": np.float16, "number": 3, "object": object()}


CASES: list[Any] = []


def add(name: str, call: Callable[[str, Any], Any], param: str, bad: dict[str, Any], *, skip: tuple[str, ...] = (),
        word: str | None = None) -> None:
    """One test case per bad value: ``call(param, value)`` must raise an LrpRefError naming ``word`` (the param)."""
    for label, value in bad.items():
        if label not in skip:
            CASES.append(pytest.param(call, param, value, word or param, id=f"{name}-{param}-{label}"))


def constructor(make: Callable[..., Any], **good: Any) -> Callable[[str, Any], Any]:
    return lambda param, value: make(**{**good, param: value})


# ----------------------------------------------------------------------------- layers and Sequential

W2, W4 = np.ones((3, 4)), np.ones((4, 2, 3, 3))
dense = constructor(L.Dense, weight=W2, bias=np.zeros(3))
add("Dense", dense, "weight", bad_arrays((3, 4)), skip=("ragged",))
add("Dense", dense, "weight", {"ragged": [[1.0], [1.0, 2.0]]})
add("Dense", dense, "bias", bad_arrays((3,)), skip=("none",))
add("Dense", dense, "dtype", bad_dtypes())
add("Dense-float32", constructor(L.Dense, weight=W2, bias=np.zeros(3), dtype=np.float32), "weight",
    {"beyond-float32": np.full((3, 4), 1e300)})
conv = constructor(L.Conv2d, weight=W4, bias=np.zeros(4))
add("Conv2d", conv, "weight", bad_arrays((4, 2, 3, 3)))
add("Conv2d", conv, "bias", bad_arrays((4,)), skip=("none",))
add("Conv2d", conv, "stride", {**bad_sizes(1), "none": None})
add("Conv2d", conv, "padding", {**bad_sizes(0), "none": None})
add("Conv2d", conv, "dilation", {**bad_sizes(1), "none": None})
add("Conv2d", conv, "groups", {**bad_counts(), "zero": 0, "not-dividing": 3, "huge": 2**70})
add("Conv2d", conv, "dtype", bad_dtypes())
for pool in (L.AvgPool2d, L.MaxPool2d):
    make = constructor(pool, kernel_size=2)
    add(pool.__name__, make, "kernel_size", {**bad_sizes(1), "none": None, "over-limit": 2**13})
    add(pool.__name__, make, "stride", bad_sizes(1))  # None is valid: the kernel size
    add(pool.__name__, make, "dtype", bad_dtypes())
add("MaxPool2d", constructor(L.MaxPool2d, kernel_size=3), "padding", {**bad_sizes(0), "over-half": 2})
add("AvgPool2d", constructor(L.AvgPool2d, kernel_size=2), "window_weight", bad_arrays((2, 2)),
    skip=("none", "scalar"))
for simple in (L.ReLU, L.Flatten):
    add(simple.__name__, constructor(simple), "dtype", bad_dtypes())
sequential = constructor(L.Sequential, layers=[L.ReLU()], metadata={})
add("Sequential", sequential, "layers", {"none": None, "str": "relu", "layer": L.ReLU(), "int": 3, "empty": [],
                                         "not-layers": [1, 2], "rule": [R.LRP0()]})
add("Sequential", sequential, "metadata", {"none": None, "list": [("a", 1)], "str": "abc"})
add("Sequential.astype", lambda p, v: L.Sequential([L.ReLU()]).astype(v), "dtype", bad_dtypes())
add("Layer.astype", lambda p, v: L.Dense(W2).astype(v), "dtype", bad_dtypes())
add("MaxPool2d.route", lambda p, v: L.MaxPool2d(2).route(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1)), ties=v),
    "ties", bad_choices())
add("Dense.forward", lambda p, v: L.Dense(W2).forward(v), "a", {
    "complex": np.ones((1, 4)) + 1j, "str": np.full((1, 4), "1"), "bool": np.ones((1, 4), bool),
    "object": np.ones((1, 4), object), "list": [[1.0, 2.0, 3.0, 4.0]]}, word="expects a real")


# ----------------------------------------------------------------------------- rules, found by introspection

def rule_classes() -> list[type[R.Rule]]:
    return sorted((cls for _, cls in inspect.getmembers(R, inspect.isclass)
                   if issubclass(cls, R.Rule) and cls is not R.Rule and dataclasses.is_dataclass(cls)),
                  key=lambda cls: cls.__name__)


REQUIRED = {"ZBox": {"low": 0.0, "high": 1.0}}
for rule in rule_classes():
    good = REQUIRED.get(rule.__name__, {})
    make = constructor(rule, **good)
    for f in dataclasses.fields(rule):
        optional = f.default is None
        if f.name in R._CHOICES or f"{rule.__name__}.{f.name}" in R._CHOICES:
            add(rule.__name__, make, f.name, bad_choices())
        elif "float" in str(f.type):
            add(rule.__name__, make, f.name, bad_numbers(), skip=("none",) if optional else ())
        elif f.name in ("low", "high"):
            add(rule.__name__, make, f.name, bad_arrays((2,)), skip=("huge-int", "scalar", "wrong-rank", "ragged"))
        elif "str" in str(f.type):
            add(rule.__name__, make, f.name, {"bool": True, "int": 1, "complex": 1j},
                skip=())
        elif "Rule" in str(f.type):  # a rule wrapping another (AverageInstead): a rule for linear layers
            add(rule.__name__, make, f.name, {"str": "lrp0", "int": 1, "class": R.LRP0, "pooling-rule": R.Pass(),
                                               "max-pool-rule": R.WinnerTakesAll()})
        else:
            raise AssertionError(f"no bad-input catalogue for {rule.__name__}.{f.name}: {f.type}")


def test_every_rule_field_has_a_catalogue() -> None:
    """New rules (e.g. pooling rules added later) are covered by the introspection above."""
    covered = {case.id.split("-")[0] for case in CASES}
    assert {cls.__name__ for cls in rule_classes()} - covered <= {"Pass"}  # Pass has no fields


# ----------------------------------------------------------------------------- composites

COMPOSITE_GOOD = {"epsilon_gamma_box": {"low": 0.0, "high": 1.0}, "depth_based": {"low": 0.0, "high": 1.0},
                  "innvestigate_preset": {"letter": "A"}, "tutorial_vgg": {"low": 0.0, "high": 1.0}}
for name in C.__all__:
    fn = getattr(C, name)
    if not inspect.isfunction(fn) or name in ("describe_rules", "resolve_rules"):
        continue
    make = constructor(fn, **COMPOSITE_GOOD.get(name, {}))
    for param in inspect.signature(fn).parameters:
        if name == "innvestigate_deep_taylor" and param in ("low", "high"):  # None (both): unbounded, z+ input
            add(name, make, param, bad_arrays((2,)), skip=("none", "huge-int", "scalar", "wrong-rank", "ragged"))
        elif param in ("epsilon", "gamma", "stabilizer"):
            add(name, make, param, bad_numbers(), skip=("none",))  # None: the profile decides, as in the rules
        elif param in ("low", "high"):
            add(name, make, param, bad_arrays((2,)), skip=("huge-int", "scalar", "wrong-rank", "ragged"))
        elif param in ("n_upper", "n_lower", "gamma_until", "epsilon_until"):
            add(name, make, param, bad_counts(), skip=("none",) if param == "n_lower" else ())
        elif param == "letter":
            add(name, make, param, {"lower-case": "a", "unknown": "C", "int": 1, "none": None})
        elif param in ("flat", "contrastive"):
            add(name, make, param, {"str": "yes", "int": 1, "none": None})
        elif param == "input_rule":  # rap(): None is valid (RAP on the input layer too)
            add(name, make, param, {"str": "zbox", "int": 1, "class": R.ZBox})
        else:
            raise AssertionError(f"no bad-input catalogue for composites.{name}({param})")


# ----------------------------------------------------------------------------- explain

MODEL = random_cnn(np.random.default_rng(7))
X = np.random.default_rng(8).normal(size=(2, 2, 8, 8))


def explain_with(param: str, value: Any) -> Any:
    kwargs: dict[str, Any] = {"model": MODEL, "x": X, "rules": R.Epsilon(0.01)}
    kwargs[param] = value
    return L.explain(**kwargs)


add("explain", explain_with, "model", {"none": None, "list": [L.ReLU()], "layer": L.ReLU(), "str": "cnn"})
add("explain", explain_with, "x", {**bad_arrays((2, 2, 8, 8)), "no-batch-axis": np.ones((2, 8, 8)),
                                   "empty-batch": np.ones((0, 2, 8, 8)), "wrong-channels": np.ones((2, 3, 8, 8))},
    skip=("huge-int-list",))
add("explain", explain_with, "x", {"huge-int-list": np.full((2, 2, 8, 8), 2**70, dtype=object).tolist()})
add("explain-float32", lambda p, v: L.explain(MODEL.astype(np.float32), v, R.Epsilon(0.01)), "x",
    {"beyond-float32": np.full((2, 2, 8, 8), 1e300)})
add("explain", explain_with, "target", {
    "bool": True, "float": 1.5, "str": "1", "complex": 1j, "negative": -1, "too-large": 3, "huge": 2**70,
    "nan": NAN, "wrong-length": np.array([0, 1, 2]), "wrong-rank": np.zeros((2, 1), int),
    "zero-size": np.array([], int), "object": np.array([0, 1], dtype=object), "bool-array": np.array([True, False])})
add("explain", explain_with, "output_relevance", bad_arrays((2, 3)), skip=("none",))
add("explain", explain_with, "profile", {"none": None, "bool": True, "int": 1, "unknown": "nope",
                                         "list": ["zennit"], "complex": 1j, "rule": R.LRP0()})
add("explain", explain_with, "rules", {"none": None, "str": "epsilon", "int": 1, "bool": True,
                                       "layer": L.ReLU(), "short-list": [R.LRP0()], "list-of-str": ["lrp0"] * 9,
                                       "rule-class": R.LRP0})


# ----------------------------------------------------------------------------- lrp_ref.testing

DESIRED = np.array([[1.0, -2.0, 0.5]])


def assert_close_with(param: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"actual": DESIRED, "desired": DESIRED}
    kwargs[param] = value
    T.assert_relevance_close(**kwargs)


array_bad = bad_arrays((1, 3))
for param in ("actual", "desired"):
    add("assert_relevance_close", assert_close_with, param, array_bad,
        skip=("nan", "inf") if param == "actual" else ())
add("assert_relevance_close", assert_close_with, "actual", {"nan": np.full((1, 3), NAN)}, word="non-finite")
add("assert_relevance_close", assert_close_with, "dtype", bad_dtypes())
add("assert_relevance_close", assert_close_with, "rtol", bad_numbers(), skip=("none",))
add("assert_relevance_close", assert_close_with, "atol", bad_numbers(), skip=("none",))
add("assert_relevance_close", assert_close_with, "what", {"int": 1, "bool": True, "none": None})
add("assert_relevance_close", assert_close_with, "ties", {**bad_choices(), "allow-without-model": "allow"})
add("assert_relevance_close", assert_close_with, "model", {"str": "cnn", "list": [L.ReLU()], "int": 1})
add("tolerance_for", lambda p, v: T.tolerance_for(v), "dtype", bad_dtypes())
add("relevance_error", lambda p, v: T.relevance_error(v, DESIRED), "actual", array_bad,
    skip=("nan", "inf", "scalar", "zero-size", "wrong-rank"))
ORACLE = L.explain(MODEL, X, R.Epsilon(0.01))
near_ties = constructor(T.find_near_ties, model=MODEL, explanation=ORACLE)
add("find_near_ties", near_ties, "model", {"none": None, "str": "cnn", "other-model": random_cnn(
    np.random.default_rng(1))}, skip=("other-model",))
add("find_near_ties", near_ties, "explanation", {"none": None, "array": ORACLE.relevance, "str": "e"})
add("find_near_ties", near_ties, "dtype", bad_dtypes())
add("find_near_ties", near_ties, "ulps", bad_numbers())


@pytest.mark.parametrize(("call", "param", "value", "word"), CASES)
def test_bad_input_is_refused_naming_the_parameter(call: Callable[[str, Any], Any], param: str, value: Any,
                                                   word: str) -> None:
    with pytest.raises(LrpRefError) as info:
        call(param, value)
    assert word in str(info.value), f"{type(info.value).__name__}: {info.value}"


def test_the_catalogue_is_large() -> None:
    assert len(CASES) > 500


# ----------------------------------------------------------------------------- the named findings of issue 8


@pytest.mark.parametrize(("make", "error", "word"), [
    (lambda: L.Dense(np.ones((2, 3)) + 1j), L.ShapeError, "imaginary part would be lost"),
    (lambda: L.Dense(np.ones((2, 3)), np.ones(2) * 1j), L.ShapeError, "bias"),
    (lambda: L.Conv2d(np.ones((2, 1, 3, 3), complex)), L.ShapeError, "complex"),
    (lambda: L.Dense(np.ones((0, 3))), L.ShapeError, "must not be empty"),
    (lambda: L.Dense(np.ones((2, 0))), L.ShapeError, "must not be empty"),
    (lambda: L.Conv2d(np.ones((2, 1, 0, 3))), L.ShapeError, "must not be empty"),
    (lambda: L.Conv2d(np.ones((2, 1, 3, 3)), padding=2**40), L.LayerParameterError, "padding must be at most 65536"),
    (lambda: L.Conv2d(np.ones((2, 1, 3, 3)), padding=[2**62, 2**62]), L.LayerParameterError, "padding"),
    (lambda: R.ZBox("a", "b"), L.RuleParameterError, "ZBox: low must be a real numeric array"),
    (lambda: R.AlphaBeta(None, None), L.RuleParameterError, "AlphaBeta: alpha must be a real number; got None"),
    (lambda: C.depth_based(n_upper="1"), L.RuleAssignmentError, "n_upper (a number of layers) must be an int"),
    (lambda: L.Dense(np.ones((2, 3)), dtype="foo"), L.LayerParameterError, "got dtype 'foo'"),
    (lambda: R.Epsilon(True), L.RuleParameterError, "epsilon must be a real number; got True (bool)"),
    (lambda: L.Conv2d(np.ones((2, 2, 3, 3)), groups=True), L.LayerParameterError, "groups must be an int"),
    (lambda: C.depth_based(n_upper=1.5), L.RuleAssignmentError, "n_upper"),
])
def test_the_reported_cases_are_refused(make: Callable[[], Any], error: type[LrpRefError], word: str) -> None:
    with pytest.raises(error) as info:
        make()
    assert word in str(info.value), str(info.value)


def test_complex_output_relevance_is_refused_not_truncated() -> None:
    with pytest.raises(L.ShapeError, match=r"output_relevance.*imaginary part would be lost"):
        L.explain(MODEL, X, R.LRP0(), output_relevance=np.ones((2, 3)) * (1 + 1e-3j))


def test_absurd_padding_is_refused_before_any_allocation() -> None:
    """The padded image would need 2**33 elements: refused by the size cap, naming padding, not a MemoryError."""
    model = L.Sequential([L.Conv2d(np.ones((1, 1, 1, 1)), padding=2**16), L.Flatten()])
    with pytest.raises(L.ShapeError, match=r"padded by padding=\(65536, 65536\).*beyond the limit of 2147483648"):
        L.explain(model, np.ones((1, 1, 2, 2)), R.LRP0(), output_relevance=np.ones((1, 4)))


def test_output_sizes_are_python_ints_checked_against_the_cap() -> None:
    """Shapes from a file (Sequential.shapes) cannot wrap int64: element counts are Python ints and capped."""
    model = L.Sequential([L.ReLU(), L.Flatten()])
    with pytest.raises(L.ShapeError, match=r"ReLU\(\): the input would have shape .* beyond the limit"):
        model.shapes((2**31, 2**31, 4))
    with pytest.raises(L.ShapeError, match="input_shape entry must be an int"):
        model.shapes((2.0, 3))
    conv = L.Conv2d(np.ones((1, 1, 1, 1)), stride=1)
    with pytest.raises(L.ShapeError, match="the output for input"):
        conv.output_shape((1, 2**16, 2**16))
    assert conv.output_shape((1, 2**15, 2**15)) == (1, 2**15, 2**15)  # at the cap, still allowed
    assert L.layers.MAX_ELEMENTS == 2**31 and L.layers.MAX_EXTENT == 2**16 and L.layers.MAX_KERNEL == 2**12


def test_values_are_stored_as_python_numbers_not_converted_types() -> None:
    """A NumPy integer or float is accepted and stored as the plain Python value (no silent change)."""
    assert R.Epsilon(np.float32(0.25)).epsilon == 0.25
    assert R.Gamma(np.int64(2)).gamma == 2.0 and isinstance(R.Gamma(np.int64(2)).gamma, float)
    conv = L.Conv2d(np.ones((2, 2, 3, 3)), stride=np.int64(2), groups=np.int32(2))
    assert conv.stride == (2, 2) and type(conv.stride[0]) is int and type(conv.groups) is int
    assert C.depth_based(n_upper=np.int64(2)).n_upper == 2


def test_valid_boundary_values_are_still_accepted() -> None:
    """The checks are not stricter than the mathematics: zero padding, zero epsilon, int input, n_upper=0."""
    L.Conv2d(np.ones((1, 1, 3, 3)), padding=0, stride=2**16, dilation=2**16)
    R.Epsilon(0)
    R.ZBox(np.zeros((1, 2, 8, 8)), 1)
    C.depth_based(n_upper=0, n_lower=0)
    e = L.explain(MODEL, np.zeros((1, 2, 8, 8), dtype=np.int64), R.Epsilon(0.01))
    assert e.relevance.dtype == np.float64
