"""``lrp-ref serve``: the JSON API over real HTTP (a server on a free port in a thread, requests with urllib).

Every answer is checked against :func:`lrp_ref.explain` run here on the same
image, and the ledger against its own identities; every malformed request
must get a 400 (404/405 for paths and methods) with a one-line JSON error,
after which the server still answers.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from nets import SERVE_MODELS, SERVE_SAMPLES
from numpy.testing import assert_allclose

from lrp_ref import Sequential, catalog, explain, load, save
from lrp_ref._cli_inputs import CliError, bounds
from lrp_ref.canonize import canonize
from lrp_ref.layers import BatchNorm, Dense, Flatten
from lrp_ref.serve import MAX_BODY, RULES, Demo
from lrp_ref.serve.server import static_file

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"
MODELS, SAMPLES = SERVE_MODELS, SERVE_SAMPLES  # the server fixture (conftest.py) serves these

with h5py.File(SAMPLES, "r") as _f:
    IMAGES, LABELS = _f["images"][()], _f["labels"][()]


def request(server: Any, path: str, body: Any = None, *, data: bytes | None = None,
            content_type: str = "application/json", method: str | None = None) -> tuple[int, Any]:
    """(status, decoded JSON body) of one request; ``data`` is sent as is, else ``body`` as JSON."""
    if data is None and body is not None:
        data = json.dumps(body).encode()
    headers = {"Content-Type": content_type} if data is not None else {}
    req = urllib.request.Request(server.url.rstrip("/") + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def model_input(model: Any, raw: np.ndarray) -> np.ndarray:
    """The model input of a 28 x 28 raw image, written out from the model's metadata (raw * scale + offset)."""
    meta = model.metadata
    return raw.reshape(1, 1, 28, 28).astype(np.float64) * meta["input_scale"] + meta["input_offset"]


def local(name: str, raw: np.ndarray, spec: str, target: int | None = None) -> Any:
    """The explanation the server should give, computed here from the model file."""
    model = load(MODELS[name])
    if name == "resnet":
        model = canonize(model)  # the server merges batch norms, as `make demo` does for the ResNet
    return explain(model, model_input(model, raw), catalog.from_spec(spec, bounds(model)), target=target)


def drawn_digit() -> np.ndarray:
    """A drawn-looking '7' with fractional values (what the page's soft brush sends)."""
    img = np.zeros((28, 28))
    img[6:9, 7:21] = 230.5
    for r in range(9, 23):
        c = 19 - (r - 9) // 2
        img[r, c - 1:c + 2] = 200.25
    return img


# ----------------------------------------------------------------------------- GET endpoints and the page


def test_lists_models_rules_and_samples(server):
    status, models = request(server, "/api/models")
    assert status == 200
    assert [m["name"] for m in models["models"]] == ["cnn", "mlp", "resnet"]
    resnet = models["models"][2]
    original = load(MODELS["resnet"])
    batchnorms = sum(isinstance(original[i], BatchNorm) for i in range(len(original)))
    assert batchnorms > 0 and resnet["canonized"] == batchnorms
    assert len(resnet["nodes"]) == len(original) - batchnorms and len(resnet["boundaries"]) == len(resnet["nodes"]) + 1
    status, rules = request(server, "/api/rules")
    assert status == 200
    # the same list, in the same order, as `lrp-ref compare-rules` draws
    assert [(r["label"], r["name"]) for r in rules["rules"]] == list(catalog.SEED_COMPARISON)
    status, samples = request(server, "/api/samples")
    assert status == 200
    assert [s["label"] for s in samples["samples"]] == LABELS.tolist()
    assert_allclose(np.array(samples["samples"][4]["image"]), IMAGES[4], rtol=0, atol=0)


@pytest.mark.parametrize(("path", "kind"), [("/", "text/html"), ("/index.html", "text/html"),
                                            ("/app.js", "text/javascript"), ("/style.css", "text/css")])
def test_serves_the_static_page(server, path, kind):
    with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith(kind)
        body = response.read()
        if kind == "text/html":  # nothing may come from elsewhere: a CDN would break the page offline
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    name = "index.html" if path == "/" else path[1:]
    assert body == (ROOT / "lrp_ref" / "serve" / "static" / name).read_bytes()


def test_page_loads_nothing_from_elsewhere():
    for name in ("index.html", "app.js", "style.css"):
        text = static_file(name).decode()
        assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.IGNORECASE) == [], name
        assert "@import" not in text and "url(" not in text.replace("url(#", ""), name


# ----------------------------------------------------------------------------- POST /api/explain


@pytest.mark.parametrize("spec", [spec for _, spec in RULES])
def test_explain_equals_lrp_ref_on_the_cnn(server, spec):
    raw = IMAGES[7]
    status, answer = request(server, "/api/explain", {"model": "cnn", "image": raw.tolist(), "rule": spec,
                                                      "target": None})
    assert status == 200, answer
    e = local("cnn", raw, spec)
    assert_allclose(np.array(answer["relevance"]), e.relevance[0, 0], rtol=1e-12, atol=1e-15)
    assert_allclose(answer["scores"], e.output[0], rtol=1e-12, atol=0)
    assert answer["prediction"] == int(np.argmax(e.output[0])) == LABELS[7]
    assert answer["target"] == answer["prediction"] and answer["rule"] == spec
    check_ledger(answer)


def check_ledger(answer: dict[str, Any]) -> None:
    """The ledger's identities, recomputed from the numbers the server sent."""
    ledger = answer["ledger"]
    scale = abs(ledger["start"]) + sum(abs(e["r_out"]) + abs(e["r_in"]) + abs(e["absorbed"]) for e in ledger["entries"])
    for entry in ledger["entries"]:
        assert_allclose(entry["r_out"] - entry["r_in"] - entry["absorbed"], 0.0, rtol=0, atol=1e-12 * scale)
    assert_allclose(ledger["start"], ledger["input_relevance"] + ledger["absorbed"], rtol=0, atol=1e-12 * scale)
    assert_allclose(ledger["absorbed"], sum(e["absorbed"] for e in ledger["entries"]), rtol=1e-12, atol=1e-15)
    assert_allclose(np.sum(answer["relevance"]), ledger["input_relevance"], rtol=0, atol=1e-12 * scale)
    assert_allclose(ledger["start"], answer["score"], rtol=1e-15, atol=0)
    assert ledger["balanced"] is True
    # a chain: what leaves layer i at the bottom arrives at layer i - 1 from above
    layers = answer["layers"]
    assert_allclose(layers[0]["sum"], ledger["input_relevance"], rtol=1e-12, atol=1e-15)
    assert_allclose(layers[-1]["sum"], ledger["start"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["mlp", "resnet"])
def test_explain_other_models_with_a_target_and_a_layer(server, name):
    raw = drawn_digit()
    spec = "epsilon:epsilon=0.25"
    status, answer = request(server, "/api/explain", {"model": name, "image": raw.tolist(), "rule": spec,
                                                      "target": 3, "layer": 2})
    assert status == 200, answer
    e = local(name, raw, spec, target=3)
    assert answer["target"] == 3
    assert_allclose(answer["score"], e.output[0, 3], rtol=1e-12, atol=0)
    assert_allclose(np.array(answer["relevance"]), e.relevance[0, 0], rtol=1e-12, atol=1e-15)
    detail = answer["layer_relevance"]
    assert detail["index"] == 2 and detail["shape"] == list(e.layers[2].shape[1:])
    assert_allclose(np.array(detail["values"]), e.layers[2][0], rtol=1e-12, atol=1e-15)
    for t, summary in enumerate(answer["layers"]):
        R = e.layers[t][0]
        assert_allclose([summary["sum"], summary["positive"], summary["negative"]],
                        [R.sum(), R[R > 0].sum(), R[R < 0].sum()], rtol=1e-12, atol=1e-13)
        if R.ndim == 3:
            assert_allclose(summary["channels"], R.sum(axis=(1, 2)), rtol=1e-12, atol=1e-13)
    if name == "mlp":
        check_ledger(answer)


def test_models_by_file_name_rules_by_label_and_a_blank_image(server):
    label, spec = RULES[3]
    blank = np.zeros((28, 28))
    status, answer = request(server, "/api/explain", {"model": "mnist_cnn", "image": blank.tolist(), "rule": label})
    assert status == 200, answer
    assert answer["model"] == "cnn" and answer["rule"] == spec
    e = local("cnn", blank, spec)
    assert_allclose(np.array(answer["relevance"]), e.relevance[0, 0], rtol=1e-12, atol=1e-15)
    check_ledger(answer)


def test_probabilities_are_the_softmax_of_the_scores(server):
    status, answer = request(server, "/api/explain", {"model": "cnn", "image": IMAGES[12].tolist(), "rule": "lrp0"})
    assert status == 200
    z = np.array(answer["scores"], dtype=np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # written out here, not the server's function
    assert_allclose(answer["probabilities"], p, rtol=1e-12, atol=1e-300)


def test_concurrent_requests_each_get_their_own_answer(server):
    jobs = [(k, spec) for k in (0, 5, 11, 17, 23, 29) for spec in ("lrp0", "alpha_beta:alpha=2,beta=1")]
    answers: dict[tuple[int, str], Any] = {}
    errors: list[BaseException] = []

    def post(k: int, spec: str) -> None:
        try:
            answers[(k, spec)] = request(server, "/api/explain", {"model": "cnn", "image": IMAGES[k].tolist(),
                                                                  "rule": spec})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    for (k, spec), (status, answer) in answers.items():
        assert status == 200
        assert answer["prediction"] == LABELS[k]
        assert_allclose(np.array(answer["relevance"]), local("cnn", IMAGES[k], spec).relevance[0, 0],
                        rtol=1e-12, atol=1e-15)
    assert len(answers) == len(jobs)


# ----------------------------------------------------------------------------- bad requests


def good() -> dict[str, Any]:
    return {"model": "cnn", "image": IMAGES[0].tolist(), "rule": "lrp0", "target": None}


def with_(**changes: Any) -> bytes:
    body = good()
    body.update(changes)
    return json.dumps(body).encode()


def with_pixel(value: str) -> bytes:
    """A body whose image[3][4] is the JSON text ``value`` (NaN and Infinity are not JSON; Python writes them)."""
    image = IMAGES[0].tolist()
    image[3][4] = "@@"
    return with_(image=image).replace(b'"@@"', value.encode())


BAD = {
    "27 rows": (with_(image=IMAGES[0][:27].tolist()), "found 27 rows"),
    "short row": (with_(image=[*IMAGES[0][:5].tolist(), [0] * 27, *IMAGES[0][6:].tolist()]), "row 5"),
    "flat image": (with_(image=IMAGES[0].ravel().tolist()), "found a flat list of 784 numbers"),
    "NaN": (with_pixel("NaN"), "NaN"),
    "Infinity": (with_pixel("-Infinity"), "Infinity"),
    "overflow to inf": (with_pixel("1e999"), "finite"),
    "integer beyond float64": (with_pixel("1" + "0" * 400), "0..255"),
    "string pixel": (with_pixel('"12"'), "image[3][4]"),
    "bool pixel": (with_pixel("true"), "a boolean"),
    "above 255": (with_pixel("300"), "found 300"),
    "negative": (with_pixel("-1"), "0..255"),
    "scaled to [0, 1]": (with_(image=(IMAGES[0] / 255).tolist()), "every value lies in [0, 1]"),
    "unknown rule": (with_(rule="lrp-zero"), "unknown rule"),
    "rule not a string": (with_(rule=3), "rule must be a string"),
    "bad rule parameter": (with_(rule="epsilon:epsilon=-1"), "epsilon"),
    "unknown model": (with_(model="vgg16"), "expected one of: cnn, mlp, resnet"),
    "target out of range": (with_(target=10), "target"),
    "target not an int": (with_(target=2.5), "target must be an integer"),
    "layer out of range": (with_(layer=99), "layer must be"),
    "unknown field": (with_(rules="lrp0"), "unknown field(s) 'rules'"),
    "missing image": (json.dumps({"model": "cnn", "rule": "lrp0"}).encode(), "missing field 'image'"),
    "not an object": (b"[1, 2, 3]", "expected a JSON object"),
    "malformed JSON": (b'{"model": "cnn", "image": [', "malformed JSON"),
    "not UTF-8": (b'{"model": "\xff"}', "UTF-8"),
    "empty body": (b"", "malformed JSON"),
    "nested too deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_request_is_a_400_with_one_line_and_the_server_goes_on(server, case):
    data, words = BAD[case]
    status, answer = request(server, "/api/explain", data=data)
    assert status == 400
    assert list(answer) == ["error"] and "\n" not in answer["error"]
    assert words in answer["error"], answer["error"]
    status, answer = request(server, "/api/explain", good())
    assert status == 200 and answer["prediction"] == LABELS[0]


def test_wrong_content_type(server):
    status, answer = request(server, "/api/explain", data=json.dumps(good()).encode(), content_type="text/plain")
    assert status == 400 and answer["error"] == "expected Content-Type application/json; found text/plain"


def test_body_over_1_mb_is_refused_unread(server):
    data = with_(rule="lrp0" + " " * MAX_BODY)  # valid JSON, too large
    status, answer = request(server, "/api/explain", data=data)
    assert status == 400
    assert f"at most {MAX_BODY} bytes" in answer["error"] and f"found {len(data)} bytes" in answer["error"]
    assert request(server, "/api/explain", good())[0] == 200


def test_missing_content_length(server):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.putrequest("POST", "/api/explain")
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 400
        assert "Content-Length" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_keep_alive_connection_survives_a_bad_request(server):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        for body, expected in [(b"{oops", 400), (json.dumps(good()).encode(), 200), (with_(rule="x"), 400),
                               (json.dumps(good()).encode(), 200)]:
            conn.request("POST", "/api/explain", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == expected
    finally:
        conn.close()


@pytest.mark.parametrize(("method", "path", "code"), [
    ("GET", "/nowhere", 404), ("GET", "/../weights/mnist_cnn.h5", 404), ("POST", "/api/nowhere", 404),
    ("GET", "/api/explain", 405), ("POST", "/api/models", 405), ("PUT", "/api/explain", 405),
    ("DELETE", "/", 405),
])
def test_unknown_paths_and_methods(server, method, path, code):
    data = b"{}" if method in ("POST", "PUT") else None
    status, answer = request(server, path, data=data, method=method)
    assert status == code
    assert list(answer) == ["error"] and "\n" not in answer["error"]
    assert request(server, "/api/rules")[0] == 200


@pytest.mark.parametrize(("raw", "code"), [
    (b"\x00\x01garbage\r\n\r\n", 400),                      # not an HTTP request line
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),     # a request line beyond http.server's 64 kB
    (b"BREW /api/explain HTTP/1.1\r\nHost: x\r\n\r\n", 501),   # a method http.server has no handler for
    (b"GET / HTTP/2.0\r\n\r\n", 505),
])
def test_refusals_of_http_server_itself_are_one_line_json(server, raw, code):
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == str(code).encode(), head
    assert b"Content-Type: application/json" in head, head
    error = json.loads(body)
    assert list(error) == ["error"] and error["error"] and "\n" not in error["error"]
    assert request(server, "/api/rules")[0] == 200


def test_unexpected_exception_is_a_logged_500_and_the_server_goes_on(server, monkeypatch, caplog):
    def broken(body: Any) -> Any:
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(server.demo, "explain", broken)
    with caplog.at_level(logging.ERROR, logger="lrp_ref.serve"):
        status, answer = request(server, "/api/explain", good())
    assert status == 500
    assert answer == {"error": "internal error (a bug in lrp_ref; please report it): RuntimeError: something broke"}
    assert any(r.exc_info and "RuntimeError" in r.exc_text for r in caplog.records if r.exc_text)
    monkeypatch.undo()
    assert request(server, "/api/explain", good())[0] == 200


# ----------------------------------------------------------------------------- start_at / neuron (issue 11 item 1)


def test_start_fields_are_checked(server):
    status, answer = request(server, "/api/explain", data=with_(start_at=True))
    assert status == 400 and "start_at must be a node index or name" in answer["error"]
    status, answer = request(server, "/api/explain", data=with_(start_at=7, neuron=["a"]))
    assert status == 400 and "neuron must be a flat index, an array of ints" in answer["error"]


def local_model(name: str) -> Any:
    model = load(MODELS[name])
    return canonize(model) if name == "resnet" else model


START_CASES = {
    # name: (model, request fields, explain keyword arguments)
    "neuron of a dense layer": ("cnn", {"start_at": 7, "neuron": [3]}, {"start_at": 7, "neuron": (3,)}),
    "flat neuron index": ("mlp", {"start_at": 2, "neuron": 17}, {"start_at": 2, "neuron": 17}),
    "neuron of a convolution": ("cnn", {"start_at": 0, "neuron": [5, 10, 12]}, {"start_at": 0, "neuron": (5, 10, 12)}),
    "channel": ("cnn", {"start_at": 3, "channel": 7}, {"start_at": 3, "channel": 7}),
    "node by name": ("resnet", {"start_at": "layer2_relu1", "channel": 4}, {"start_at": "layer2_relu1", "channel": 4}),
    "mask": ("mlp", {"start_at": 4, "neuron": [k % 7 == 0 for k in range(100)]},
             {"start_at": 4, "neuron": np.arange(100) % 7 == 0}),
    "start relevance": ("mlp", {"start_at": 4, "start_relevance": np.linspace(-1, 1, 100).tolist()},
                        {"start_at": 4, "start_relevance": np.linspace(-1, 1, 100)[None]}),
}


@pytest.mark.parametrize("case", list(START_CASES))
def test_start_inside_the_model_equals_lrp_ref(server, case):
    """``explain(model, x, rules, start_at=NODE, neuron=INDEX | channel=c | start_relevance=R)`` over HTTP."""
    name, fields, kwargs = START_CASES[case]
    raw = IMAGES[3]
    spec = "epsilon:epsilon=0.25"
    status, answer = request(server, "/api/explain", data=with_(model=name, image=raw.tolist(), rule=spec, layer=1,
                                                                **fields))
    assert status == 200, answer
    model = local_model(name)
    e = explain(model, model_input(model, raw), catalog.from_spec(spec, bounds(model)), **kwargs)
    assert_allclose(np.array(answer["relevance"]), e.relevance[0, 0], rtol=1e-12, atol=1e-15)
    assert_allclose(np.array(answer["layer_relevance"]["values"]), e.layers[1][0], rtol=1e-12, atol=1e-15)
    assert len(answer["layers"]) == len(e.layers) and answer["target"] is None
    assert_allclose(answer["ledger"]["start"], e.ledger.start[0], rtol=1e-12, atol=1e-15)
    assert answer["explained"] == e.description
    if name != "resnet":  # a chain: conservation from the start down, recomputed from the numbers sent
        check_ledger(answer)


@pytest.mark.parametrize(("fields", "words"), [
    ({"start_at": 99, "neuron": 0}, "start_at=99"),
    ({"start_at": 7, "neuron": 100}, "neuron"),
    ({"start_at": 7}, "neuron"),
    ({"start_at": 7, "neuron": 3, "target": 2}, "target"),
    ({"start_at": 3, "neuron": 0, "layer": 9}, "layer 9 lies above the start"),
    ({"start_at": 0, "neuron": [[True, False], [False]]}, "ragged"),
    ({"start_at": 7, "start_relevance": [1, "x"]}, "start_relevance must be nested arrays of numbers"),
    ({"start_at": 7, "start_relevance": [10**400] + [1] * 99}, "start_relevance must hold finite numbers"),
])
def test_bad_start_is_a_400(server, fields, words):
    status, answer = request(server, "/api/explain", data=with_(**fields))
    assert status == 400
    assert words in answer["error"], answer["error"]


# ----------------------------------------------------------------------------- start-up and the command line


def test_a_model_the_page_cannot_feed_is_refused(tmp_path):
    path = tmp_path / "tiny.h5"
    rng = np.random.default_rng(0)
    model = Sequential([Flatten(), Dense(rng.normal(size=(2, 12)), np.zeros(2))])
    save(model, path, metadata={"input_shape": [3, 2, 2]})
    with pytest.raises(CliError, match=r"expected \(1, 28, 28\)"):
        Demo.from_files({"tiny": path}, None)


def test_cli_serve_prints_the_url_and_serves(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "lrp_ref", "serve", "--port", "0", "--weights", str(WEIGHTS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        url = re.search(r"http://127\.0\.0\.1:\d+/", lines[2])
        assert url is not None, lines
        with urllib.request.urlopen(url.group(0) + "api/models", timeout=30) as response:
            assert [m["name"] for m in json.loads(response.read())["models"]] == ["cnn", "mlp", "resnet"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_cli_serve_refuses_a_missing_model(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lrp_ref", "serve", "--weights", str(tmp_path), "--model",
                          str(tmp_path / "nope.h5")], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"lrp-ref: error: --model {tmp_path / 'nope.h5'}: no such file "
                                               "(expected an lrp_ref HDF5 model with 28 x 28 input)"]
