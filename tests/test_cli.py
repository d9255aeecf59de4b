"""The lrp-ref command line, run as a user would (python -m lrp_ref), on the shipped CNN."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref
from lrp_ref import catalog
from lrp_ref.cli import main

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "weights" / "mnist_cnn.h5"
MLP = ROOT / "weights" / "mnist_mlp.h5"
SAMPLES = ROOT / "weights" / "mnist_samples.h5"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lrp_ref", *args], capture_output=True, text=True, cwd=ROOT)


def test_info():
    out = run("info", "--model", str(CNN))
    assert out.returncode == 0, out.stderr
    assert "Conv2d(1 -> 16, 5x5, bias)" in out.stdout
    assert "test_accuracy" in out.stdout and "CC BY-SA 3.0" in out.stdout
    assert "(32, 4, 4)" in out.stdout


def test_explain_writes_heatmap_relevance_and_ledger(tmp_path):
    out = run("explain", "--model", str(CNN), "--input", "sample:4", "--rule", "epsilon:epsilon=0.25",
              "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "f(x) (start)" in out.stdout and "Epsilon(epsilon=0.25)" in out.stdout
    for name in ("heatmap.png", "overlay.png", "relevance.npy", "ledger.txt"):
        assert (tmp_path / name).is_file()
    # the saved relevance is what the library computes
    model = lrp_ref.load(CNN)
    with h5py.File(SAMPLES, "r") as f:
        raw = f["images"][4]
    x = (raw.astype(np.float64) * model.metadata["input_scale"] + model.metadata["input_offset"])[None, None]
    expected = lrp_ref.explain(model, x, lrp_ref.rules.Epsilon(0.25)).relevance[0]
    assert_allclose(np.load(tmp_path / "relevance.npy"), expected, rtol=1e-12, atol=0)


def test_explain_reads_npy_of_raw_pixels(tmp_path):
    with h5py.File(SAMPLES, "r") as f:
        raw = f["images"][7]
    np.save(tmp_path / "digit.npy", raw)
    a = run("explain", "--model", str(CNN), "--input", str(tmp_path / "digit.npy"), "--rule", "lrp0",
            "--out", str(tmp_path / "a"))
    b = run("explain", "--model", str(CNN), "--input", "sample:7", "--rule", "lrp0", "--out", str(tmp_path / "b"))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert_allclose(np.load(tmp_path / "a" / "relevance.npy"), np.load(tmp_path / "b" / "relevance.npy"),
                    rtol=0, atol=0)


def test_compare_rules_figure(tmp_path):
    out = run("compare-rules", "--model", str(CNN), "--input", "sample:0", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "compare_rules.png").stat().st_size > 10_000
    for label, _ in catalog.SEED_COMPARISON:
        assert label in out.stdout


def test_check_reports_every_rule():
    out = run("check", "--model", str(CNN))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.rstrip().endswith(" ok")]
    names = {spec for _, spec in catalog.SEED_COMPARISON} | set(catalog.COMPOSITES) | set(catalog.RULES)
    n_rules = len(names - catalog.INPUT_ONLY)
    assert len(lines) == n_rules
    assert "check [" in out.stderr  # the progress bar


@pytest.mark.parametrize("args, message", [
    (("info", "--model", "nowhere.h5"), "--model nowhere.h5: no such file"),
    (("explain", "--model", str(CNN), "--input", "sample:99", "--rule", "lrp0", "--out", "x"), "holds samples 0..29"),
    (("explain", "--model", str(CNN), "--input", "sample:0", "--rule", "magic", "--out", "x"),
     "unknown rule or composite 'magic'"),
    (("explain", "--model", str(CNN), "--input", "sample:0", "--rule", "gamma:gamma=-1", "--out", "x"),
     "gamma must be a finite number >= 0"),
    (("explain", "--model", str(CNN), "--input", "README.md", "--rule", "lrp0", "--out", "x"),
     "expected sample:K, .npy, .h5 or .png"),
    (("explain", "--model", str(CNN), "--input", "sample:0", "--out", "x"), "the following arguments are required"),
    (("explain", "--model", "README.md", "--input", "sample:0", "--rule", "lrp0", "--out", "x"), "HDF5"),
    (("frobnicate",), "invalid choice"),
])
def test_bad_arguments_print_one_line(args, message):
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_wrong_input_shape_is_one_clear_line(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((5, 5)))
    out = run("explain", "--model", str(CNN), "--input", str(tmp_path / "small.npy"), "--rule", "lrp0",
              "--out", str(tmp_path))
    assert out.returncode == 2
    assert "has shape (5, 5); the model expects (1, 28, 28)" in out.stderr


@pytest.mark.parametrize("spec, kind", [
    ("lrp0", "LRP0"), ("epsilon:epsilon=0.25", "Epsilon"), ("alpha_beta:alpha=3,beta=2", "AlphaBeta"),
    ("epsilon_gamma_box", "LayerTypeComposite"), ("depth_based:n_upper=2", "DepthComposite"),
    ("zbox+epsilon", "LayerTypeComposite"),
])
def test_catalog_specs(spec, kind):
    built = catalog.from_spec(spec, bounds=(0.0, 1.0))
    assert type(built).__name__ == kind


def test_catalog_spec_errors():
    with pytest.raises(lrp_ref.RuleParameterError, match="needs input bounds"):
        catalog.from_spec("zbox+epsilon")
    with pytest.raises(lrp_ref.RuleParameterError, match=r"zbox \(zB\) is an input-layer rule.*zbox\+epsilon"):
        catalog.from_spec("zbox", bounds=(0.0, 1.0))
    with pytest.raises(lrp_ref.RuleParameterError,
                       match=r"rule 'gamma' has no parameter 'gama' \(did you mean 'gamma'\?\); its parameters: gamma"):
        catalog.from_spec("gamma:gama=0.5")
    with pytest.raises(lrp_ref.RuleParameterError, match=r"n_upper='1\.5' must be a whole number"):
        catalog.from_spec("depth_based:n_upper=1.5")
    with pytest.raises(lrp_ref.RuleParameterError, match="is not a number"):
        catalog.from_spec("epsilon:epsilon=big")
    with pytest.raises(lrp_ref.RuleParameterError, match="expected key=value"):
        catalog.from_spec("epsilon:0.25")
    with pytest.raises(lrp_ref.RuleParameterError, match="rule 'lrp0' has no parameter 'epsilon'"):
        catalog.from_spec("lrp0:epsilon=1")
    with pytest.raises(lrp_ref.RuleParameterError, match="must be single rules"):
        catalog.from_spec("flat+epsilon_plus")


# ----------------------------------------------------------------------------- driven as a careless user drives it
# (issue 8: never silently alter or drop input; every error one line naming the parameter and the file)


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run ``lrp_ref.cli.main`` in-process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def raw_images(*ks: int) -> np.ndarray:
    with h5py.File(SAMPLES, "r") as f:
        return np.asarray(f["images"])[list(ks)]


def model_input(raw: np.ndarray, model: lrp_ref.Sequential) -> np.ndarray:
    """What the CLI computes from raw pixels: raw * input_scale + input_offset, as (N, 1, 28, 28)."""
    x = raw.astype(np.float64) * model.metadata["input_scale"] + model.metadata["input_offset"]
    return x.reshape(-1, 1, 28, 28)


def test_version(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"lrp_ref {lrp_ref.__version__}"


@pytest.mark.parametrize("layout", [(3, 28, 28), (3, 1, 28, 28), (3, 784)])
def test_a_batch_is_explained_whole(capsys, tmp_path, layout):
    raw = raw_images(0, 10, 20)
    np.save(tmp_path / "batch.npy", raw.reshape(layout))
    code, out, err = cli(capsys, "explain", "--model", CNN, "--input", tmp_path / "batch.npy", "--rule",
                         "epsilon:epsilon=0.25", "--out", tmp_path / "out")
    assert code == 0, err
    relevance = np.load(tmp_path / "out" / "relevance.npy")
    assert relevance.shape == (3, 1, 28, 28)
    model = lrp_ref.load(CNN)
    x = model_input(raw, model)
    for i in range(3):  # each row is the explanation of that sample alone
        alone = lrp_ref.explain(model, x[i:i + 1], lrp_ref.rules.Epsilon(0.25))
        assert_allclose(relevance[i], alone.relevance[0], rtol=1e-12, atol=0)
        assert f"sample {i:03d}: class {int(alone.target[0])}, f(x) = {alone.score[0]:.6g}" in out
    for name in ("heatmap", "overlay"):
        assert sorted(p.name for p in (tmp_path / "out").glob(f"{name}_*.png")) == [
            f"{name}_000.png", f"{name}_001.png", f"{name}_002.png"]
    ledger = (tmp_path / "out" / "ledger.txt").read_text(encoding="utf-8")
    assert ledger.count("f(x) (start)") == 3
    assert "samples [" in err  # the progress bar


def test_a_batch_agrees_with_the_single_sample_command(capsys, tmp_path):
    np.save(tmp_path / "batch.npy", raw_images(4, 7))
    assert cli(capsys, "explain", "--model", CNN, "--input", tmp_path / "batch.npy", "--rule", "lrp0",
               "--out", tmp_path / "batch")[0] == 0
    assert cli(capsys, "explain", "--model", CNN, "--input", "sample:7", "--rule", "lrp0",
               "--out", tmp_path / "one")[0] == 0
    one = np.load(tmp_path / "one" / "relevance.npy")
    assert one.shape == (1, 28, 28)  # one sample: the sample's shape, as before
    assert_allclose(np.load(tmp_path / "batch" / "relevance.npy")[1], one, rtol=1e-12, atol=0)


def test_shipped_samples_by_list_and_all(capsys, tmp_path):
    code, out, err = cli(capsys, "explain", "--model", MLP, "--input", "sample:3,13", "--rule", "lrp0",
                         "--out", tmp_path)
    assert code == 0, err
    assert np.load(tmp_path / "relevance.npy").shape == (2, 1, 28, 28)
    assert "sample 001 (sample:13)" in out and "true label 4" in out
    code, _, err = cli(capsys, "explain", "--model", MLP, "--input", "sample:all", "--rule", "lrp0",
                       "--out", tmp_path / "all")
    assert code == 0, err
    assert np.load(tmp_path / "all" / "relevance.npy").shape == (30, 1, 28, 28)


def test_compare_rules_reports_each_sample(capsys, tmp_path):
    code, out, err = cli(capsys, "compare-rules", "--model", CNN, "--input", "sample:0,10", "--out", tmp_path)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["compare_rules_000.png", "compare_rules_001.png"]
    model = lrp_ref.load(CNN)
    x = model_input(raw_images(0, 10), model)
    blocks = out.split("sample 00")[1:]
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        alone = lrp_ref.explain(model, x[i:i + 1], lrp_ref.rules.LRP0())
        assert f"f(x) = {alone.score[0]:.6g}" in block.splitlines()[0]
        row = next(line for line in block.splitlines() if line.startswith("LRP-0 "))
        assert float(row.split()[1]) == pytest.approx(alone.relevance.sum(), rel=1e-3)  # printed to 4 digits


def test_check_reads_a_samples_file_through_the_same_checks(capsys, tmp_path):
    raw = raw_images(0, 1, 2, 3)
    with h5py.File(tmp_path / "scaled.h5", "w") as f:
        f["images"], f["labels"] = raw / 255.0, np.array([0, 0, 0, 1])
    code, _, err = cli(capsys, "check", "--model", MLP, "--samples", tmp_path / "scaled.h5")
    assert_one_line_error(code, err, f"--samples {tmp_path / 'scaled.h5'}", "--input-range 0,1")
    code, out, err = cli(capsys, "check", "--model", MLP, "--samples", tmp_path / "scaled.h5", "--input-range", "0,1")
    assert code == 0, err
    assert "4 classified correctly" in out


# ----------------------------------------------------------------------------- values: the raw range


def test_scaled_npy_needs_input_range(capsys, tmp_path):
    raw = raw_images(2)[0]
    np.save(tmp_path / "scaled.npy", raw / 255.0)
    args = ("explain", "--model", CNN, "--input", tmp_path / "scaled.npy", "--rule", "lrp0")
    code, _, err = cli(capsys, *args, "--out", tmp_path / "a")
    assert_one_line_error(code, err, f"--input {tmp_path / 'scaled.npy'}", "looks like data already scaled",
                          "raw values 0..255", "--input-range 0,1")
    code, out, err = cli(capsys, *args, "--input-range", "0,1", "--out", tmp_path / "a")
    assert code == 0, err
    assert "values 0..1 mapped linearly onto the model input range 0..1" in out
    code, _, err = cli(capsys, "explain", "--model", CNN, "--input", "sample:2", "--rule", "lrp0",
                       "--out", tmp_path / "b")
    assert code == 0, err
    assert_allclose(np.load(tmp_path / "a" / "relevance.npy"), np.load(tmp_path / "b" / "relevance.npy"),
                    rtol=1e-12, atol=1e-15)


def test_input_range_equal_to_the_raw_range_changes_nothing(capsys, tmp_path):
    dark = (raw_images(5)[0] > 128).astype(np.uint8)  # raw pixels 0 and 1: really raw, but [0, 1]-looking
    np.save(tmp_path / "dark.npy", dark)
    args = ("explain", "--model", CNN, "--input", tmp_path / "dark.npy", "--rule", "lrp0")
    assert_one_line_error(*cli(capsys, *args, "--out", tmp_path / "a")[::2], "--input-range 0,255")
    assert cli(capsys, *args, "--input-range", "0,255", "--out", tmp_path / "a")[0] == 0
    model = lrp_ref.load(CNN)
    expected = lrp_ref.explain(model, model_input(dark, model), lrp_ref.rules.LRP0()).relevance[0]
    assert_allclose(np.load(tmp_path / "a" / "relevance.npy"), expected, rtol=0, atol=0)


@pytest.mark.parametrize("values, extra, message", [
    (np.full((28, 28), 300.0), (), "784 value(s) lie outside the model's raw range 0..255 (found 300..300)"),
    (np.full((28, 28), -1), (), "lie outside the model's raw range 0..255"),
    (np.full((28, 28), 2.0), ("--input-range", "0,1"), "lie outside --input-range 0,1"),
    (np.full((28, 28), 2.0), ("--preprocessed",), "lie outside the model input range 0..1"),
    (np.full((28, 28), np.nan), (), "784 value(s) are NaN or infinite"),
    (np.zeros((28, 28), complex), (), "holds dtype complex128; expected real numbers"),
    (np.zeros((28, 28)), ("--preprocessed", "--input-range", "0,1"), "--preprocessed and --input-range exclude"),
])
def test_values_outside_the_range_are_refused(capsys, tmp_path, values, extra, message):
    np.save(tmp_path / "x.npy", values)
    code, _, err = cli(capsys, "explain", "--model", CNN, "--input", tmp_path / "x.npy", "--rule", "lrp0",
                       "--out", tmp_path / "out", *extra)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- PNG


def _png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(pixels).save(path)
    return path


def test_colour_png_needs_grey(capsys, tmp_path):
    digit = raw_images(9)[0]
    grey = _png(tmp_path / "grey.png", digit)
    rgb = _png(tmp_path / "rgb.png", np.stack([digit] * 3, axis=-1))
    args = ("explain", "--model", CNN, "--rule", "lrp0", "--input")
    code, _, err = cli(capsys, *args, rgb, "--out", tmp_path / "rgb")
    assert_one_line_error(code, err, f"--input {rgb}", "colour PNG (mode RGB)", "--grey", "loses nothing")
    assert cli(capsys, *args, rgb, "--grey", "--out", tmp_path / "rgb")[0] == 0
    assert cli(capsys, *args, grey, "--out", tmp_path / "grey")[0] == 0
    assert cli(capsys, *args, "sample:9", "--out", tmp_path / "sample")[0] == 0
    for name in ("rgb", "grey"):
        assert_allclose(np.load(tmp_path / name / "relevance.npy"), np.load(tmp_path / "sample" / "relevance.npy"),
                        rtol=0, atol=0)


def test_palette_and_transparent_png_are_refused(capsys, tmp_path):
    from PIL import Image

    digit = raw_images(9)[0]
    Image.fromarray(digit).convert("P").save(tmp_path / "palette.png")
    _png(tmp_path / "rgba.png", np.stack([digit] * 3 + [digit], axis=-1))  # transparent background
    args = ("explain", "--model", CNN, "--rule", "lrp0", "--out", tmp_path / "out", "--input")
    assert_one_line_error(*cli(capsys, *args, tmp_path / "palette.png")[::2], "colour PNG (mode P)", "--grey")
    assert_one_line_error(*cli(capsys, *args, tmp_path / "rgba.png", "--grey")[::2], "are transparent")
    assert_one_line_error(*cli(capsys, *args, "sample:0", "--grey")[::2], "--grey converts colour PNG files")


# ----------------------------------------------------------------------------- broken files, through every subcommand


def _broken_files(tmp_path: Path) -> dict[str, Path]:
    np.save(tmp_path / "good.npy", raw_images(0, 1))
    data = (tmp_path / "good.npy").read_bytes()
    files = {"empty.npy": b"", "truncated.npy": data[:300], "text.npy": b"hello\n", "text.h5": b"hello\n",
             "text.png": b"hello\n", "empty.h5": b""}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return {name: tmp_path / name for name in files}


@pytest.mark.parametrize("name, message", [
    ("empty.npy", "the file is empty (0 bytes)"),
    ("truncated.npy", "truncated: the header declares (2, 28, 28) uint8 (1568 bytes of data), the file holds"),
    ("text.npy", "not a NumPy .npy file (it looks like text)"),
    ("text.h5", "not an HDF5 file (it looks like text)"),
    ("text.png", "not a PNG image (it looks like text)"),
    ("empty.h5", "the file is empty (0 bytes)"),
])
@pytest.mark.parametrize("command", ["explain", "compare-rules", "compare"])
def test_broken_input_files_are_one_line(capsys, tmp_path, name, message, command):
    path = _broken_files(tmp_path)[name]
    extra = {"explain": ("--rule", "lrp0", "--out", tmp_path / "out"), "compare-rules": ("--out", tmp_path / "out"),
             "compare": ("--rule", "lrp0", "--candidate", tmp_path / "good.npy")}[command]
    code, _, err = cli(capsys, command, "--model", CNN, "--input", path, *extra)
    assert_one_line_error(code, err, f"--input {path}: {message}")


@pytest.mark.parametrize("name, message", [
    ("empty.npy", "the file is empty (0 bytes)"),
    ("truncated.npy", "truncated"),
    ("text.npy", "not a NumPy .npy file"),
    ("text.h5", "not an HDF5 file (it looks like text)"),
    ("empty.h5", "the file is empty"),
    ("text.png", "expected a .npy file (input relevance) or an .h5 file"),
])
def test_broken_candidate_files_are_one_line(capsys, tmp_path, name, message):
    path = _broken_files(tmp_path)[name]
    code, _, err = cli(capsys, "compare", "--model", CNN, "--input", "sample:0", "--rule", "lrp0", "--candidate", path)
    assert_one_line_error(code, err, f"--candidate {path}: {message}")


@pytest.mark.parametrize("name, message", [
    ("text.h5", "not an HDF5 file (it looks like text)"),
    ("empty.h5", "the file is empty"),
    ("missing.h5", "no such file"),
])
@pytest.mark.parametrize("command", ["check", "explain"])
def test_broken_samples_files_are_one_line(capsys, tmp_path, name, message, command):
    path = _broken_files(tmp_path).get(name, tmp_path / name)
    extra = {"check": (), "explain": ("--input", "sample:0", "--rule", "lrp0", "--out", tmp_path / "out")}[command]
    code, _, err = cli(capsys, command, "--model", CNN, "--samples", path, *extra)
    assert_one_line_error(code, err, f"--samples {path}: {message}")


def test_broken_model_file_is_one_line(capsys, tmp_path):
    path = _broken_files(tmp_path)["text.h5"]
    for command in (("info",), ("check",), ("explain", "--input", "sample:0", "--rule", "lrp0", "--out", tmp_path)):
        code, _, err = cli(capsys, command[0], "--model", path, *command[1:])
        assert_one_line_error(code, err, f"--model {path}", "not an HDF5 file")


def test_model_or_samples_file_given_as_input(capsys, tmp_path):
    args = ("explain", "--model", CNN, "--rule", "lrp0", "--out", tmp_path, "--input")
    assert_one_line_error(*cli(capsys, *args, CNN)[::2], "this is an lrp_ref model file, not an input")
    assert_one_line_error(*cli(capsys, *args, SAMPLES)[::2], f"give --samples {SAMPLES}", "sample:all")


@pytest.mark.parametrize("shape", [(5, 5), (4, 196), (28, 28, 3), (2, 3, 28, 28)])
def test_wrong_shapes_list_the_accepted_layouts(capsys, tmp_path, shape):
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype=np.uint8))
    code, _, err = cli(capsys, "explain", "--model", CNN, "--input", tmp_path / "x.npy", "--rule", "lrp0",
                       "--out", tmp_path / "out")
    assert_one_line_error(code, err, f"--input {tmp_path / 'x.npy'}: has shape {shape}",
                          "accepted layouts: (1, 28, 28) or (N, 1, 28, 28), (28, 28) or (N, 28, 28), "
                          "(784,) or (N, 784)")


def test_candidate_of_the_wrong_shape(capsys, tmp_path):
    np.save(tmp_path / "batch.npy", raw_images(0, 1, 2))
    np.save(tmp_path / "one.npy", np.zeros((1, 28, 28)))
    code, _, err = cli(capsys, "compare", "--model", CNN, "--input", tmp_path / "batch.npy", "--rule", "lrp0",
                       "--candidate", tmp_path / "one.npy")
    assert_one_line_error(code, err, f"--candidate {tmp_path / 'one.npy'}", "has shape (1, 28, 28)",
                          "expected (3, 1, 28, 28) for the 3 sample(s) of --input")
    with h5py.File(tmp_path / "deep.h5", "w") as f:
        f["relevance/099"] = np.zeros((1, 10))
    code, _, err = cli(capsys, "compare", "--model", CNN, "--input", "sample:0", "--rule", "lrp0",
                       "--candidate", tmp_path / "deep.h5")
    assert_one_line_error(code, err, "boundary 099 does not exist; the model has boundaries 000..010")


# ----------------------------------------------------------------------------- --rule and other arguments


@pytest.mark.parametrize("spec, fragments", [
    ("gamma:gama=0.5", ["rule 'gamma' has no parameter 'gama' (did you mean 'gamma'?); its parameters: gamma, "
                        "stabilizer"]),
    ("lrp0:epsilon=1", ["rule 'lrp0' has no parameter 'epsilon'; its parameters: stabilizer"]),
    ("depth_based:n_upperr=1", ["composite 'depth_based' has no parameter 'n_upperr'", "n_upper, n_lower"]),
    ("epsilion", ["unknown rule or composite 'epsilion' (did you mean 'epsilon'?)", "rules: lrp0, epsilon",
                  "composites: epsilon_plus"]),
    ("epsilon:epsilon=1,epsilon=2", ["parameter 'epsilon' of 'epsilon' is given twice"]),
    ("epsilon:epsilon=big", ["epsilon='big' is not a number"]),
    ("epsilon:epsilon=1e+3", ["write 1e3, not 1e+3"]),
    ("epsilon:epsilon=-1", ["epsilon must be a finite number >= 0"]),
    ("depth_based:n_upper=1.5", ["n_upper='1.5' must be a whole number"]),
    ("depth_based:n_upper=9", ["do not fit in the 3 linear layers"]),
    ("zbox", ["zbox (zB) is an input-layer rule", "zbox+epsilon"]),
    ("epsilon+zbox", ["zbox (zB) is an input-layer rule"]),
    ("epsilon_plus+epsilon", ["'epsilon_plus' is a composite; both sides of FIRST+REST must be single rules"]),
    ("lrp0+epsilon+gamma", ["at most one '+' (FIRST+REST)"]),
])
def test_rule_errors_name_the_parameter_and_the_choices(capsys, tmp_path, spec, fragments):
    code, _, err = cli(capsys, "explain", "--model", CNN, "--input", "sample:0", "--rule", spec, "--out", tmp_path)
    assert_one_line_error(code, err, f"--rule {spec!r}", *fragments)


def test_epsilon_gamma_box_on_an_mlp_is_refused(capsys, tmp_path):
    code, _, err = cli(capsys, "explain", "--model", MLP, "--input", "sample:0", "--rule", "epsilon_gamma_box",
                       "--out", tmp_path)
    assert_one_line_error(code, err, "on the first Conv2d layer", "this model has no such layer",
                          "the same as --rule epsilon:epsilon=1e-06", "zbox+epsilon", "depth_based")
    # the spec the message names computes what the composite would have
    assert cli(capsys, "explain", "--model", MLP, "--input", "sample:0", "--rule", "epsilon:epsilon=1e-06",
               "--out", tmp_path)[0] == 0
    model = lrp_ref.load(MLP)
    composite = lrp_ref.composites.epsilon_gamma_box(low=0.0, high=1.0)
    expected = lrp_ref.explain(model, model_input(raw_images(0), model), composite).relevance[0]
    assert_allclose(np.load(tmp_path / "relevance.npy"), expected, rtol=0, atol=0)
    # on the CNN it is what its name says
    assert cli(capsys, "explain", "--model", CNN, "--input", "sample:0", "--rule", "epsilon_gamma_box",
               "--out", tmp_path)[0] == 0


def test_the_spec_a_refusal_suggests_runs_and_computes_the_composite(capsys, tmp_path):
    # one convolution, first: epsilon_gamma_box's zB reaches it but its gamma (other convolutions) does not; the
    # bounds come from the file's metadata, and the suggested --rule must be one the command line can read
    rng = np.random.default_rng(3)
    conv = lrp_ref.Conv2d(rng.normal(size=(2, 1, 3, 3)), np.zeros(2))
    dense = lrp_ref.Dense(rng.normal(size=(3, 2 * 26 * 26)) * 0.05, np.zeros(3))
    model = lrp_ref.Sequential([conv, lrp_ref.ReLU(), lrp_ref.Flatten(), dense])
    path = tmp_path / "one_conv.h5"
    lrp_ref.save(model, path, metadata={"input_shape": [1, 28, 28], "input_scale": 1 / 255, "input_offset": 0.0,
                                        "input_low": 0.0, "input_high": 1.0})
    args = ("explain", "--model", path, "--samples", SAMPLES, "--input", "sample:0", "--out", tmp_path)
    code, _, err = cli(capsys, *args, "--rule", "epsilon_gamma_box")
    assert_one_line_error(code, err, "the same as --rule ")
    suggested = err.split("the same as --rule ", 1)[1].split(";", 1)[0]
    assert "array" not in suggested, suggested
    code, _, err = cli(capsys, *args, "--rule", suggested)
    assert code == 0, err
    loaded = lrp_ref.load(path)
    composite = lrp_ref.composites.epsilon_gamma_box(low=0.0, high=1.0)
    expected = lrp_ref.explain(loaded, model_input(raw_images(0), loaded), composite).relevance[0]
    assert_allclose(np.load(tmp_path / "relevance.npy"), expected, rtol=0, atol=0)


@pytest.mark.parametrize("args, fragments", [
    (("--input", "sample:0", "--rule", "lrp0", "--taget", "3"), ["unrecognized arguments: --taget 3",
                                                                  "did you mean --target?"]),
    (("--input", "sample:0", "--rule", "lrp0", "--target", "12"), ["--target 12: the model has 10 outputs"]),
    (("--input", "sample:0", "--rule", "lrp0", "--input-range", "0-1"), ["argument --input-range: expected LOW,HIGH"]),
    (("--input", "sample:0", "--rule", "lrp0", "--input-range", "-1,1"), ["--input-range=-1,1"]),
    (("--input", "sample:x", "--rule", "lrp0"), ["expected sample:K, sample:K,L,... or sample:all"]),
    (("--input", "sample:3,40", "--rule", "lrp0"), ["holds samples 0..29; no sample 40"]),
    (("--input", "digit.jpg", "--rule", "lrp0"), ["--input digit.jpg: no such file; expected sample:K or a .npy"]),
    (("--input", "README.md", "--rule", "lrp0"), ["expected sample:K, .npy, .h5 or .png; got a .md file"]),
    (("--input", "sample:0", "--rule", "lrp0", "--inp", "sample:1"), ["unrecognized arguments: --inp"]),
])
def test_argument_errors_are_one_line(capsys, tmp_path, args, fragments):
    code, _, err = cli(capsys, "explain", "--model", CNN, "--out", tmp_path, *args)
    assert_one_line_error(code, err, *fragments)


def test_out_must_be_a_folder(capsys, tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    code, _, err = cli(capsys, "explain", "--model", CNN, "--input", "sample:0", "--rule", "lrp0",
                       "--out", tmp_path / "file")
    assert_one_line_error(code, err, f"--out {tmp_path / 'file'}: exists and is not a folder")


def test_batch_dependent_profile_says_so(capsys, tmp_path):
    code, out, err = cli(capsys, "explain", "--model", CNN, "--input", "sample:0,1", "--rule", "epsilon",
                         "--profile", "tutorial", "--out", tmp_path)
    assert code == 0, err
    assert "note: profile tutorial scales epsilon by the RMS of z over the whole batch" in out
    code, out, err = cli(capsys, "explain", "--model", CNN, "--input", "sample:0,1", "--rule", "epsilon",
                         "--out", tmp_path)
    assert code == 0, err
    assert "note:" not in out


@pytest.mark.parametrize("args, fragment", [
    (("--input", "3"), "--input 3: no such file (did you mean sample:3?)"),
    (("--input", "sample:0", "--model", str(CNN.with_suffix(""))), f"did you mean {CNN}?"),
])
def test_near_misses_get_a_suggestion(capsys, tmp_path, args, fragment):
    code, _, err = cli(capsys, "explain", "--model", CNN, "--rule", "lrp0", "--out", tmp_path, *args)
    assert_one_line_error(code, err, fragment)


def _tiny_models(tmp_path: Path) -> tuple[Path, Path]:
    """A 3-channel image model with per-channel preprocessing, and a vector model without metadata."""
    rng = np.random.default_rng(0)
    colour = lrp_ref.Sequential(
        [lrp_ref.Conv2d(rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)), lrp_ref.ReLU(), lrp_ref.Flatten(),
         lrp_ref.Dense(rng.normal(size=(10, 144)), rng.normal(size=10))],
        metadata={"input_shape": (3, 8, 8), "input_scale": np.full(3, 1 / 255), "input_offset": np.zeros(3),
                  "input_low": np.zeros(3), "input_high": np.ones(3)})
    vector = lrp_ref.Sequential([lrp_ref.Dense(rng.normal(size=(3, 5)), rng.normal(size=3))])
    lrp_ref.save(colour, tmp_path / "colour.h5")
    lrp_ref.save(vector, tmp_path / "vector.h5")
    return tmp_path / "colour.h5", tmp_path / "vector.h5"


def test_colour_model_takes_rgb_png_and_refuses_grey(capsys, tmp_path):
    colour, _ = _tiny_models(tmp_path)
    pixels = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    rgb, grey = _png(tmp_path / "rgb.png", pixels), _png(tmp_path / "grey.png", pixels[..., 0])
    code, _, err = cli(capsys, "explain", "--model", colour, "--input", rgb, "--rule", "zbox+epsilon",
                       "--out", tmp_path)
    assert code == 0, err
    model = lrp_ref.load(colour)
    x = pixels.transpose(2, 0, 1)[None] / 255.0
    expected = lrp_ref.explain(model, x, lrp_ref.catalog.from_spec("zbox+epsilon", (0.0, 1.0)))
    assert_allclose(np.load(tmp_path / "relevance.npy"), expected.relevance[0], rtol=1e-12, atol=1e-15)
    code, _, err = cli(capsys, "explain", "--model", colour, "--input", grey, "--rule", "lrp0", "--out", tmp_path)
    assert_one_line_error(code, err, "a grey PNG (mode L); the model takes 3 channels")


def test_vector_model_without_metadata(capsys, tmp_path):
    _, vector = _tiny_models(tmp_path)
    np.save(tmp_path / "v.npy", np.random.default_rng(2).normal(size=(4, 5)))
    code, out, err = cli(capsys, "explain", "--model", vector, "--input", tmp_path / "v.npy", "--rule", "epsilon",
                         "--out", tmp_path / "out")
    assert code == 0, err
    assert "the model declares no input_shape" in out and "not checked" in out and "no heatmaps" in out
    assert np.load(tmp_path / "out" / "relevance.npy").shape == (4, 5)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ledger.txt", "relevance.npy"]
    code, _, err = cli(capsys, "explain", "--model", vector, "--input", tmp_path / "v.npy", "--rule", "epsilon",
                       "--input-range", "0,1", "--out", tmp_path / "out")
    assert_one_line_error(code, err, "--input-range 0,1: the model declares no input range")
    code, _, err = cli(capsys, "compare-rules", "--model", vector, "--input", tmp_path / "v.npy", "--out", tmp_path)
    assert_one_line_error(code, err, "compare-rules draws heatmaps")


def test_a_closed_pipe_does_not_stop_the_work(tmp_path):
    """lrp-ref ... | head: the reader goes away, the files are still written and nothing is reported."""
    proc = subprocess.Popen([sys.executable, "-m", "lrp_ref", "explain", "--model", str(CNN), "--input",
                             "sample:0,1", "--rule", "lrp0", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait() == 0, err
    assert "error" not in err
    assert np.load(tmp_path / "relevance.npy").shape == (2, 1, 28, 28)


def test_compare_rules_draws_one_block_of_rows_per_model(tmp_path, capsys):
    code, out, _ = cli(capsys, "compare-rules", "--model", CNN, "--also-model", MLP, "--input", "sample:3",
                       "--out", tmp_path)
    assert code == 0
    assert "mnist_cnn: explaining class 1, f(x) = 8.93" in out and "mnist_mlp: explaining class 1, f(x) = 6.90" in out
    assert out.count("LRP-0") == 2  # a table per model
    assert (tmp_path / "compare_rules.png").is_file()
