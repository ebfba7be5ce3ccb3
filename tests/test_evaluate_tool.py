"""tools/evaluate.py: bad inputs are refused in one line before any work; the sampler gets only
the settings its method uses."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import evaluate  # noqa: E402


class Stop(Exception):
    """Raised by the stand-in generate_images: the inputs got through to the work."""


@pytest.fixture(autouse=True)
def keep_environment(monkeypatch):
    """main() quiets TensorFlow with os.environ.setdefault: undone after each test."""
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))


@pytest.fixture
def no_work(monkeypatch):
    """No model is loaded and nothing sampled: every call into the work fails the test."""
    import ddpm_lib.checkpoint
    import ddpm_lib.generate
    import ddpm_lib.reference
    for module, name in ((ddpm_lib.checkpoint, "load_weights"), (ddpm_lib.reference, "load_reference"),
                         (ddpm_lib.generate, "generate_images")):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **k: pytest.fail(f"{_n} was called"))


BAD = [
    (["--method", "ddpm", "--eta", "0.5"],
     "--eta is DDIM's stochasticity and is used only with --method ddim; --method ddpm does not "
     "use it (leave --eta out)."),
    (["--method", "dpm_solver", "--eta", "0", "--steps", "10"],
     "--method dpm_solver does not use it (leave --eta out)."),
    (["--method", "ddim", "--variance", "beta"],
     "--variance is DDPM's choice of sigma_t^2 and is used only with --method ddpm; --method ddim "
     "does not use it (leave --variance out)."),
    (["--method", "dpm_solver", "--variance", "posterior"],
     "--method dpm_solver does not use it (leave --variance out)."),
    (["--eta", "nan"], "--eta must be a finite number; got nan."),
    (["--eta", "-1"], "--eta must be a finite number >= 0; got -1.0."),
    (["--eta", "1.5"], "--eta must be a finite number in [0, 1]; got 1.5"),
    (["--n", "0"], "--n must be a positive integer; got 0."),
    (["--batch-size", "-4"], "--batch-size must be a positive integer; got -4."),
    (["--steps", "0"], "--steps must be a positive integer; got 0."),
    (["--method", "euler"], "argument --method: invalid choice: 'euler'"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_before_any_work(extra, message, no_work, capsys):
    try:
        rc = evaluate.main(["--reference", "ho-unet", *extra])
    except SystemExit as e:                      # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err


def test_missing_weights_and_a_cache_dir_that_is_a_file(no_work, tmp_path, capsys):
    missing = str(tmp_path / "w.npz")
    assert evaluate.main(["--weights", missing]) == 2
    assert capsys.readouterr().err == f"error: --weights {missing!r}: no such file.\n"
    (tmp_path / "afile").write_text("x")
    assert evaluate.main(["--reference", "ho-unet", "--cache-dir", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err == (f"error: --cache-dir {str(tmp_path / 'afile')!r} is a file, "
                                       "not a directory.\n")


def test_unknown_reference_and_too_many_steps(tmp_path, monkeypatch, capsys):
    """Checked when the model is loaded, still before any sampling."""
    import ddpm_lib.generate
    from ddpm_lib.schedule import linear_schedule
    monkeypatch.setattr(ddpm_lib.generate, "generate_images", lambda *a, **k: pytest.fail("sampled"))
    assert evaluate.main(["--reference", "ho"]) == 2
    assert capsys.readouterr().err.startswith("error: --reference: unknown reference model 'ho'")
    import ddpm_lib.reference
    monkeypatch.setattr(ddpm_lib.reference, "load_reference", lambda name: (None, linear_schedule(50)))
    assert evaluate.main(["--reference", "ho-unet", "--steps", "51"]) == 2
    assert capsys.readouterr().err == ("error: --steps must be an integer in [1, 50] (the model's T); "
                                       "got 51.\n")


@pytest.mark.parametrize("extra, expected", [
    ([], dict(method="ddim", steps=None, eta=0.0)),
    (["--method", "ddim", "--steps", "50", "--eta", "0.5", "--clip-x0"],
     dict(method="ddim", steps=50, eta=0.5, clip_x0=True)),
    (["--method", "ddpm", "--steps", "100"], dict(method="ddpm", steps=100, variance="posterior")),
    (["--method", "ddpm", "--variance", "beta"], dict(method="ddpm", steps=None, variance="beta")),
    (["--method", "dpm_solver", "--steps", "20"], dict(method="dpm_solver", steps=20)),
])
def test_the_sampler_gets_only_what_its_method_uses(extra, expected, monkeypatch):
    import ddpm_lib.generate
    import ddpm_lib.reference
    from ddpm_lib.schedule import linear_schedule
    seen = {}

    def generate_images(model, schedule, n, batch_size, cache_dir, **kwargs):
        seen.update(kwargs, n=n, batch_size=batch_size)
        raise Stop
    monkeypatch.setattr(ddpm_lib.reference, "load_reference", lambda name: ("model", linear_schedule(1000)))
    monkeypatch.setattr(ddpm_lib.generate, "generate_images", generate_images)
    with pytest.raises(Stop):
        evaluate.main(["--reference", "ho-unet", "--n", "8", "--batch-size", "4", *extra])
    assert seen == dict(expected, n=8, batch_size=4)
