"""``python -m ddpm_lib train|sample|export`` end to end, on the shipped sample, with tiny networks.

A real process only where the process is the point (a user's first command, its clean standard
error, the same command in a new process, kill -9); everything else calls the CLI's ``main()``
in this process, which is the same code without TensorFlow's start-up time."""
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

from types import SimpleNamespace

import numpy as np
import pytest

import ddpm_lib
from ddpm_lib import checkpoint as ck
from ddpm_lib.checkpoint import load_weights
from ddpm_lib.cli import main

# TensorFlow's C++ start-up lines, printed at import before any ddpm_lib code runs (the same
# pattern as tools/execute_notebook.py); everything else on stderr is the command's own.
TF_STARTUP_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+\s+\d+ (port|cudart_stub|cpu_feature_guard|cuda_platform|cuda_diagnostics"
    r"|cuda_executor|dso_loader)\.cc:\d+\] .*"
    r"|To enable the following instructions: .*in other operations, rebuild TensorFlow .*)$")


def own_lines(stderr):
    return [ln for ln in stderr.splitlines() if ln.strip() and not TF_STARTUP_LINE.match(ln)]


def tiny(batch_size=8):
    return ["--data", "sample", "--arch", "seed", "--base-channels", "8", "--time-dim", "32",
            "--attention", "origin",
            "--timesteps", "50", "--batch-size", str(batch_size), "--lr", "1e-3", "--log-every", "1",
            "--quiet"]


TINY = tiny()


def cli(python_runner, *args, check=True):
    """``python -m ddpm_lib args...`` in a new process."""
    return python_runner(["-m", "ddpm_lib", *map(str, args)], check=check)


def run_main(argv):
    """main()'s exit status; argparse's own errors leave through SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def in_process(*args):
    """``main(args)`` in this process, with what it prints; fails like ``cli`` on a non-zero exit."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_main([str(a) for a in args])
    assert rc == 0, f"{args[:3]} exited with {rc}\n--- stdout\n{out.getvalue()}\n--- stderr\n{err.getvalue()}"
    return SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def trained(python_runner, tmp_path_factory):
    """Train 3 steps from scratch (a new process, as a user starts), then ask for 5 (in process):
    the second run resumes at step 3."""
    d = tmp_path_factory.mktemp("cli") / "run"
    first = cli(python_runner, "train", "--checkpoint-dir", d, "--steps", 3, *TINY)
    second = in_process("train", "--checkpoint-dir", d, "--steps", 5, *TINY,
                        "--export", d.parent / "from_train.npz")
    return d, first, second


def history_lines(stdout):
    return [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]


def test_train_from_scratch(trained):
    d, first, _ = trained
    assert "starting from scratch" in first.stdout
    assert "2000 training images" in first.stdout
    assert [h["step"] for h in history_lines(first.stdout)] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in history_lines(first.stdout))
    assert own_lines(first.stderr) == []
    cfg = json.loads((d / "train_config.json").read_text())
    assert cfg["base_channels"] == 8 and cfg["timesteps"] == 50 and cfg["channels"] == 1
    assert cfg["arch"] == "seed" and cfg["attention"] == "origin" and "groups" not in cfg


def test_train_resumes(trained):
    d, _, second = trained
    assert "resumed at step 3" in second.stdout
    assert [h["step"] for h in history_lines(second.stdout)] == [4, 5]
    assert "step 5" in second.stdout
    assert [s for s, _ in ck.list_checkpoints(d)] == [3, 5]
    meta = ck.read_npz(ck.latest_checkpoint(d))["meta"]
    assert meta["step"] == 5 and [h["step"] for h in meta["history"]] == [1, 2, 3, 4, 5]
    assert meta["format"] == "ddpm_lib.checkpoint/2" and meta["keys"] == "path"   # the seed UNet names its layers too
    assert not [f for f in os.listdir(d) if f.endswith(".tmp")]


def test_train_refuses_another_configuration(trained, capsys):
    # in-process (the CLI's own main()): the check runs before TensorFlow builds anything
    d, _, _ = trained
    assert main(["train", "--checkpoint-dir", str(d), "--steps", "7", *tiny(batch_size=4)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "holds a run with another configuration (--batch-size: saved 8, given 4)" in err
    assert "use the saved values to resume, or a new --checkpoint-dir" in err
    assert [s for s, _ in ck.list_checkpoints(d)] == [3, 5]          # nothing was touched


def test_sample_writes_a_png(trained, tmp_path):
    from PIL import Image
    d, _, _ = trained
    png, gif = tmp_path / "x.png", tmp_path / "r.gif"
    proc = in_process("sample", "--checkpoint-dir", d, "--n", 4, "--method", "ddim",
                      "--steps", 5, "--out", png, "--gif", gif)
    assert "4 images" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.size == (4 * 34 + 2, 36)            # 4 images of 32x32 in one row, 2-pixel gaps
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames > 1


def test_export_is_loadable(trained, tmp_path):
    d, _, _ = trained
    out = tmp_path / "weights.npz"
    proc = in_process("export", "--checkpoint-dir", d, "--out", out)
    assert "float16" in proc.stdout
    model, schedule = load_weights(out)
    assert model.get_config()["base_channels"] == 8 and schedule.timesteps == 50
    assert model.trained_timesteps == 50
    # the exported weights are the checkpoint's EMA weights, rounded to float16
    ckpt = ck.read_npz(ck.latest_checkpoint(d))
    ema = [ckpt[f"ema/{k}"] for k in ck.variable_keys(model)]
    for w, e in zip(model.get_weights(), ema):
        np.testing.assert_array_equal(w, e.astype(np.float16).astype(np.float32))
    assert ck.read_npz(out)["meta"]["extra"]["step"] == 5
    # `train --export` wrote the same weights at the end of the resumed run
    from_train = ck.read_npz(d.parent / "from_train.npz")
    assert "exported EMA weights of step 5" in trained[2].stdout
    exported = ck.read_npz(out)
    assert set(exported) == set(from_train)
    for key in (k for k in from_train if k != "meta"):
        np.testing.assert_array_equal(exported[key], from_train[key])


def test_export_of_a_step_the_run_has_passed_is_refused(trained, tmp_path, capsys):
    """`train --steps 3 --export X` on a run at step 5 trains nothing and must not write step 5's
    weights under a name that promises step 3 (as a re-run training script once did)."""
    d, _, _ = trained
    out = tmp_path / "step3.npz"
    assert main(["train", "--checkpoint-dir", str(d), "--steps", "3", *TINY, "--export", str(out)]) == 2
    captured = capsys.readouterr()
    assert "already at step 5 >= --steps 3; nothing to do" in captured.out
    assert captured.err == (f"error: the run is at step 5, past --steps 3, so its weights of step 3 no "
                            f"longer exist; --export {str(out)!r} was not written (`python -m ddpm_lib "
                            "export` writes the current ones).\n")
    assert not out.exists() and [s for s, _ in ck.list_checkpoints(d)][-1] == 5


def test_init_weights_warm_starts_a_new_run(trained, tmp_path, capsys, monkeypatch):
    """`train --init-weights` starts a new checkpoint dir at an exported run's step (in process).
    A file of another run is refused in one line naming the flags, before the data are
    loaded and before anything is written, so the corrected command then runs in the same dir."""
    import ddpm_lib.data
    d, _, _ = trained
    weights, new = tmp_path / "w32.npz", tmp_path / "new"
    assert main(["export", "--checkpoint-dir", str(d), "--out", str(weights), "--dtype", "float32"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(ddpm_lib.data, "load_sample", lambda: pytest.fail("the data were loaded"))
        assert main(["train", "--checkpoint-dir", str(new), "--steps", "6", *tiny(batch_size=4),
                     "--init-weights", str(weights)]) == 2
    assert capsys.readouterr().err == (
        f"error: --init-weights {str(weights)!r} holds a run with another configuration "
        "(--batch-size: saved 8, given 4); a warm start continues the run that exported them: "
        "give its settings.\n")
    assert not new.exists()                                  # no train_config.json to block the retry
    # --steps at the start step trains nothing, to keep this fast (test_trainer trains on)
    assert main(["train", "--checkpoint-dir", str(new), "--steps", "5", *TINY,
                 "--init-weights", str(weights)]) == 0
    out = capsys.readouterr().out
    assert "warm-started from" in out and "EMA weights of step 5" in out
    assert json.loads((new / "train_config.json").read_text())["warm_start"] == {
        "file": "w32.npz", "step": 5, "dtype": "float32"}
    assert "rounded" not in out
    # another network is named by its flags too
    assert main(["train", "--checkpoint-dir", str(tmp_path / "other"), "--steps", "6",
                 *TINY, "--base-channels", "16", "--init-weights", str(weights)]) == 2
    assert "(--base-channels: saved 8, given 16)" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_init_weights_says_float16_and_records_a_fine_tune(trained, tmp_path, capsys):
    """A float16 export (the default) warm-starts too, and the line and train_config.json say
    so; a fine-tune (--conditional from an unconditional file) is recorded as `fine_tuned_from`,
    not as a warm start. --steps at the start step trains nothing, to keep this fast."""
    from ddpm_lib.ho_unet import HoUNet
    from ddpm_lib.schedule import linear_schedule
    d, _, _ = trained
    w16 = tmp_path / "w16.npz"
    assert main(["export", "--checkpoint-dir", str(d), "--out", str(w16)]) == 0
    capsys.readouterr()
    assert main(["train", "--checkpoint-dir", str(tmp_path / "warm"), "--steps", "5", *TINY,
                 "--init-weights", str(w16)]) == 0
    out = capsys.readouterr().out
    assert f"warm-started from {w16} (float16 weights, rounded): EMA weights of step 5" in out
    cfg = json.loads((tmp_path / "warm" / "train_config.json").read_text())
    assert cfg["warm_start"] == {"file": "w16.npz", "step": 5, "dtype": "float16"}
    # fine-tune: an unconditional HoUNet's float16 export, never trained
    net = dict(image_channels=1, image_size=32, base_channels=8, channel_mult=(1,), groups=4,
               num_res_blocks=1, attn_resolutions=(32,), dropout=0.0)
    unconditional = tmp_path / "u.npz"
    ck.export_weights(HoUNet(**net).build_for(), linear_schedule(20), unconditional)
    arch = ["--data", "sample", "--base-channels", "8", "--channel-mult", "1", "--groups", "4",
            "--num-res-blocks", "1", "--attn-resolutions", "32", "--timesteps", "20", "--quiet",
            "--conditional", "--steps", "0", "--init-weights", str(unconditional)]
    assert main(["train", "--checkpoint-dir", str(tmp_path / "bad"), *arch, "--schedule", "cosine"]) == 2
    assert capsys.readouterr().err == (
        f"error: --init-weights {str(unconditional)!r} holds a run with another configuration "
        "(--schedule: saved 'linear', given 'cosine'); a fine-tune needs the unconditional "
        "model's architecture and schedule.\n")
    assert not (tmp_path / "bad").exists()
    assert main(["train", "--checkpoint-dir", str(tmp_path / "cond"), *arch]) == 0
    out = capsys.readouterr().out
    assert f"fine-tuning from the unconditional weights {unconditional} (float16 weights, rounded)" in out
    cfg = json.loads((tmp_path / "cond" / "train_config.json").read_text())
    assert cfg["fine_tuned_from"] == {"file": "u.npz", "dtype": "float16"} and "warm_start" not in cfg
    assert cfg["num_classes"] == 10


def test_sample_clip_x0_matches_the_library(trained, tmp_path):
    """`sample --clip-x0 --out x.npz` stores the uint8 images of sample(..., clip_x0=True)."""
    from ddpm_lib.data import to_uint8
    from ddpm_lib.sampler import sample
    d, _, _ = trained
    weights, out = tmp_path / "w.npz", tmp_path / "x.npz"
    in_process("export", "--checkpoint-dir", d, "--out", weights, "--dtype", "float32")
    in_process("sample", "--weights", weights, "--n", 3, "--method", "ddim", "--steps", 4,
               "--seed", 5, "--clip-x0", "--out", out)
    model, schedule = load_weights(weights)
    ref = sample(model, schedule, (3, 32, 32, 1), method="ddim", steps=4, seed=5, clip_x0=True)
    got = ck.read_npz(out)["images"]
    np.testing.assert_array_equal(got, to_uint8(ref.numpy()))
    plain = sample(model, schedule, (3, 32, 32, 1), method="ddim", steps=4, seed=5)
    assert np.mean(got != to_uint8(plain.numpy())) > 0.05      # and the flag did change the images


def test_sample_dpm_solver_matches_the_library(trained, tmp_path, capsys):
    """`sample --method dpm_solver` (in process) stores the images of sample(method="dpm_solver")."""
    from ddpm_lib.data import to_uint8
    from ddpm_lib.sampler import sample
    d, _, _ = trained
    weights, out = tmp_path / "w.npz", tmp_path / "x.npz"
    assert main(["export", "--checkpoint-dir", str(d), "--out", str(weights), "--dtype", "float32"]) == 0
    assert main(["sample", "--weights", str(weights), "--n", "2", "--method", "dpm_solver",
                 "--steps", "3", "--out", str(out)]) == 0
    model, schedule = load_weights(weights)
    ref = sample(model, schedule, (2, 32, 32, 1), method="dpm_solver", steps=3, seed=0)
    np.testing.assert_array_equal(ck.read_npz(out)["images"], to_uint8(ref.numpy()))


def test_sample_variance_reaches_ddpm(tmp_path, capsys):
    """`sample --method ddpm --variance beta` (in process, a tiny untrained HoUNet) stores the
    images of sample(variance="beta"); without --variance, those of the default "posterior"."""
    from ddpm_lib.data import to_uint8
    from ddpm_lib.ho_unet import HoUNet
    from ddpm_lib.sampler import sample
    from ddpm_lib.schedule import linear_schedule
    net = dict(image_channels=1, image_size=8, base_channels=8, channel_mult=(1,), groups=4,
               num_res_blocks=1, attn_resolutions=(), dropout=0.0)
    weights = tmp_path / "w.npz"
    ck.export_weights(HoUNet(**net).build_for(), linear_schedule(20), weights, dtype="float32")
    model, schedule = load_weights(weights, image_size=8)
    images = {}
    for variance in ("beta", None):
        out = tmp_path / f"{variance}.npz"
        assert main(["sample", "--weights", str(weights), "--image-size", "8", "--n", "2",
                     "--method", "ddpm", "--steps", "4", *(["--variance", variance] if variance else []),
                     "--out", str(out)]) == 0
        images[variance] = ck.read_npz(out)["images"]
        ref = sample(model, schedule, (2, 8, 8, 1), method="ddpm", steps=4, seed=0,
                     variance=variance or "posterior")
        np.testing.assert_array_equal(images[variance], to_uint8(ref.numpy()))
    assert np.mean(images["beta"] != images[None]) > 0.05       # the flag changed the images


@pytest.mark.parametrize("name", [None, "seed-unet"])
def test_sample_reference_by_name(name, tmp_path):
    """`sample --reference [NAME]`: the book's reference model without a name, the named one with."""
    from ddpm_lib.data import to_uint8
    from ddpm_lib.sampler import sample
    out = tmp_path / "x.npz"
    assert main(["sample", "--reference", *([name] if name else []), "--n", "2", "--method", "ddim",
                 "--steps", "2", "--eta", "0", "--out", str(out)]) == 0
    model, schedule = ddpm_lib.load_reference(name)
    assert type(model).__name__ == ("UNet" if name else "HoUNet")
    ref = sample(model, schedule, (2, 32, 32, 1), method="ddim", steps=2, seed=0)
    np.testing.assert_array_equal(ck.read_npz(out)["images"], to_uint8(ref.numpy()))


def test_sample_reference_conditional_with_guidance(tmp_path):
    """`sample --reference conditional --labels ... --guidance w`: the library's guided samples."""
    from ddpm_lib.data import to_uint8
    from ddpm_lib.sampler import sample
    out = tmp_path / "x.npz"
    assert main(["sample", "--reference", "conditional", "--labels", "7,8", "--guidance", "2",
                 "--n", "2", "--method", "ddim", "--steps", "2", "--out", str(out)]) == 0
    model, schedule = ddpm_lib.load_reference("conditional")
    ref = sample(model, schedule, (2, 32, 32, 1), method="ddim", steps=2, seed=0,
                 labels=np.array([7, 8]), guidance=2.0)
    np.testing.assert_array_equal(ck.read_npz(out)["images"], to_uint8(ref.numpy()))


def test_corrupt_newest_checkpoint_is_skipped_with_one_warning(trained, tmp_path, capsys):
    import shutil
    d = tmp_path / "run"
    shutil.copytree(trained[0], d)
    raw = (d / "ckpt-00000005.npz").read_bytes()
    (d / "ckpt-00000005.npz").write_bytes(raw[: len(raw) // 3])             # truncated
    out = tmp_path / "w.npz"
    assert main(["export", "--checkpoint-dir", str(d), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"warning: ckpt-00000005.npz in {str(d)!r} is corrupt or truncated; "
                            "resuming from ckpt-00000003.npz instead.\n")
    assert "of step 3 to" in captured.out and ck.read_npz(out)["meta"]["extra"]["step"] == 3


# ------------------------------------------------------------- reproducible, and exact resume
TINY_HO = ["--data", "sample", "--base-channels", "8", "--channel-mult", "1,2", "--groups", "4",
           "--num-res-blocks", "1", "--timesteps", "50", "--batch-size", "4", "--quiet"]
HO_STEPS = 12
HO_RUN = [*TINY_HO, "--steps", HO_STEPS, "--checkpoint-every", 1, "--log-every", 1]


@pytest.fixture(scope="module")
def ho_run(python_runner, tmp_path_factory):
    """An uninterrupted --arch ho run of HO_STEPS steps (a checkpoint after every step)."""
    d = tmp_path_factory.mktemp("ho") / "a"
    cli(python_runner, "train", "--checkpoint-dir", d, *HO_RUN)
    return d


def same_final_checkpoint(a, b):
    x, y = (ck.read_npz(ck.latest_checkpoint(d)) for d in (a, b))
    keys = [k for k in x if k != "meta"]
    assert set(keys) == set(k for k in y if k != "meta") and len(keys) > 100
    assert x["meta"]["step"] == y["meta"]["step"] == HO_STEPS
    assert [h["loss"] for h in x["meta"]["history"]] == [h["loss"] for h in y["meta"]["history"]]
    return all(np.array_equal(x[k], y[k]) for k in keys)


def test_train_ho_unet_twice_gives_the_same_weights(ho_run, tmp_path):
    """--arch ho (the default) trains Ho et al.'s UNet; --seed fixes the initial weights too: the
    same command in this process (after other runs) gives the weights of the one in a new process."""
    in_process("train", "--checkpoint-dir", tmp_path / "b", *HO_RUN)
    cfg = json.loads((ho_run / "train_config.json").read_text())
    assert cfg["arch"] == "ho" and cfg["channel_mult"] == [1, 2] and "attention" not in cfg
    meta = ck.read_npz(ck.latest_checkpoint(ho_run))["meta"]
    assert meta["model_config"]["channel_mult"] == [1, 2] and meta["keys"] == "path"
    assert same_final_checkpoint(ho_run, tmp_path / "b")


def test_kill_9_and_resume_is_bit_exact(ho_run, tmp_path):
    """SIGKILL after the first checkpoint, resume with the same command: the uninterrupted weights."""
    d = tmp_path / "killed"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "ddpm_lib", "train", "--checkpoint-dir", str(d),
                             *map(str, HO_RUN)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not ck.list_checkpoints(d) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL                         # killed, not finished
    killed_at = ck.list_checkpoints(d)[-1][0]
    assert 1 <= killed_at < HO_STEPS
    resumed = in_process("train", "--checkpoint-dir", d, *HO_RUN)
    assert f"resumed at step {killed_at}" in resumed.stdout
    assert same_final_checkpoint(ho_run, d)


# ----------------------------------------------------------------------------- bad inputs
def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture
def inputs(tmp_path):
    """A folder with the files the bad-input cases name; ``{name}`` in an argument is its path."""
    (tmp_path / "afile").write_text("not a directory, not an .npz")
    (tmp_path / "adir").mkdir()
    rng = np.random.default_rng(0)
    write_npz(tmp_path / "nokey.npz", pictures=np.zeros((4, 28, 28), np.uint8))
    write_npz(tmp_path / "float255.npz", images=rng.uniform(0, 255, (4, 28, 28)))
    write_npz(tmp_path / "chw.npz", images=np.zeros((4, 3, 28, 28), np.uint8))
    write_npz(tmp_path / "few.npz", images=np.zeros((20, 28, 28), np.uint8),
              labels=np.repeat(np.arange(10), 2))
    write_npz(tmp_path / "huge.npz", images=np.zeros((4, 40, 40), np.uint8))
    write_npz(tmp_path / "floatlabels.npz", images=np.zeros((4, 28, 28), np.uint8),
              labels=np.array([0.0, 1.0, 2.0, 3.0]))
    write_npz(tmp_path / "neglabels.npz", images=np.zeros((4, 28, 28), np.uint8),
              labels=np.array([0, -1, 2, 3], np.int64))
    write_npz(tmp_path / "fewlabels.npz", images=np.zeros((4, 28, 28), np.uint8),
              labels=np.array([0, 1, 2], np.int64))
    (tmp_path / "dir.png").mkdir()
    return tmp_path


def fill(args, folder):
    return [a.format(**{p.name.split(".")[0]: str(p) for p in folder.iterdir()}, tmp=str(folder))
            for a in args]


TRAIN = ["train", "--checkpoint-dir", "{tmp}/run", "--steps", "2", *TINY_HO]
BAD_TRAIN = [
    (["--steps", "-5"], "--steps must be a non-negative integer; got -5."),
    (["--steps", "x"], "argument --steps: invalid int value: 'x'"),
    (["--batch-size", "0"], "--batch-size must be a positive integer; got 0."),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a positive integer; got 0."),
    (["--log-every", "-1"], "--log-every must be a positive integer; got -1."),
    (["--warmup", "-1"], "--warmup must be a non-negative integer; got -1."),
    (["--lr", "nan"], "--lr must be a finite number; got nan."),
    (["--lr", "0"], "--lr must be a finite number > 0; got 0.0."),
    (["--grad-clip", "inf"], "--grad-clip must be a finite number; got inf."),
    (["--weight-decay=-1e-4"], "--weight-decay must be a finite number >= 0; got -0.0001."),
    (["--ema-decay", "1"], "--ema-decay must be a finite number in [0, 1); got 1.0."),
    (["--dropout", "1.5"], "--dropout must be a finite number in [0, 1); got 1.5."),
    (["--timesteps", "0"], "--timesteps must be a positive integer; got 0."),
    (["--image-size", "0"], "--image-size must be a positive integer; got 0."),
    (["--arch", "seed", "--image-size", "36"], "--image-size must be divisible by 8 for --arch seed; got 36."),
    (["--groups", "3"], "--arch ho: groups=3 must divide every width"),
    (["--channel-mult", "1,x"], "argument --channel-mult: expected comma-separated integers, e.g. 1,2,2; got '1,x'"),
    (["--channel-mult", "1,2,2,2,2,2,2"], "--arch ho: image_size=32 must be divisible by 64"),
    (["--image-size", "16", "--attn-resolutions", "8"],
     "the images are 28 pixels wide or high, larger than --image-size 16; give --image-size >= 28."),
    (["--data", "npz"], "--data npz needs --data-npz FILE (an .npz with uint8 'images')."),
    (["--data-npz", "{nokey}"], "--data-npz is read only with --data npz (got --data sample)."),
    (["--data", "npz", "--data-npz", "{tmp}/missing.npz"], "missing.npz': no such file."),
    (["--data", "npz", "--data-npz", "{afile}"], "--data-npz '{afile}' is not a readable .npz file with uint8 'images'."),
    (["--data", "npz", "--data-npz", "{adir}"], "--data-npz '{adir}': a directory, not a file."),
    (["--data", "npz", "--data-npz", "{nokey}"], "has no array 'images'; it has ['pictures']"),
    (["--data", "npz", "--data-npz", "{float255}"], "float images must lie in [0, 1]"),
    (["--data", "npz", "--data-npz", "{chw}"], "images look channels-first or odd: shape (4, 3, 28, 28)"),
    (["--data", "npz", "--data-npz", "{few}"], "fewer than test_per_class=1000. (see --test-per-class)"),
    (["--data", "npz", "--data-npz", "{huge}"], "the images are 40 pixels wide or high, larger than --image-size 32"),
    (["--data", "npz", "--data-npz", "{floatlabels}"], "'labels' must hold one non-negative integer "
     "class per image, shape (4,); got dtype float64, shape (4,), smallest 0.0."),
    (["--data", "npz", "--data-npz", "{neglabels}", "--conditional"], "'labels' must hold one "
     "non-negative integer class per image, shape (4,); got dtype int64, shape (4,), smallest -1."),
    (["--data", "npz", "--data-npz", "{fewlabels}"], "got dtype int64, shape (3,), smallest 0."),
    (["--checkpoint-dir", "{afile}"], "--checkpoint-dir '{afile}' is a file, not a directory."),
    (["--export", "{tmp}/missing/w.npz"], "--export '{tmp}/missing/w.npz': the folder '{tmp}/missing' does not exist"),
    (["--export", "{adir}"], "--export '{adir}' is a directory; give a file name."),
    (["--mixed-precision", "float8"], "argument --mixed-precision: invalid choice: 'float8'"),
]
SAMPLE = ["sample", "--reference", "--n", "2", "--out", "{tmp}/x.png"]
BAD_SAMPLE = [
    (["--eta", "nan"], "--eta must be a finite number; got nan."),
    (["--eta", "-1", "--method", "ddim"], "--eta must be a finite number >= 0; got -1.0."),
    (["--eta", "2", "--method", "ddim"], "--eta must be a finite number in [0, 1]; got 2.0 (above 1, "
                                         "sigma_t of DDIM's eq. 16 can exceed sqrt(1 - alpha_bar_prev))."),
    (["--eta", "0.5"], "--eta is DDIM's stochasticity and is used only with --method ddim; "
                       "--method ddpm does not use it (leave --eta out)."),
    (["--method", "dpm_solver", "--eta", "0", "--steps", "10"],
     "--method dpm_solver does not use it (leave --eta out)."),
    (["--method", "ddim", "--variance", "beta"],
     "--variance is DDPM's choice of sigma_t^2 and is used only with --method ddpm; "
     "--method ddim does not use it (leave --variance out)."),
    (["--method", "dpm_solver", "--variance", "posterior", "--steps", "10"],
     "--method dpm_solver does not use it (leave --variance out)."),
    (["--n", "0"], "--n must be a positive integer; got 0."),
    (["--steps", "0"], "--steps must be a positive integer; got 0."),
    (["--steps", "5000"], "--steps must be an integer in [1, 1000] (the model's T); got 5000."),
    (["--image-size", "-32"], "--image-size must be a positive integer; got -32."),
    (["--image-size", "20"], "--image-size 20 does not fit this model"),
    (["--method", "euler"], "argument --method: invalid choice: 'euler'"),
    (["--variance", "big"], "argument --variance: invalid choice: 'big'"),
    (["--out", "{tmp}/missing/x.png"], "--out '{tmp}/missing/x.png': the folder '{tmp}/missing' does not exist"),
    (["--out", "{tmp}/x.txt"], "--out must end with .png (or another image format Pillow writes, e.g. .jpg) or .npz"),
    (["--out", "{dir}"], "--out '{dir}' is a directory; give a file name."),
    (["--gif", "{tmp}/r.png"], "--gif must end with .gif; got '{tmp}/r.png'."),
]
BAD_SOURCE = [
    (["sample", "--checkpoint-dir", "{afile}"], "--checkpoint-dir '{afile}' is not a directory (it is a file)."),
    (["sample", "--checkpoint-dir", "{tmp}/nothere"], "is not a directory (it does not exist)."),
    (["sample", "--checkpoint-dir", "{adir}"], "no checkpoint (ckpt-*.npz) in '{adir}'"),
    (["sample", "--weights", "{tmp}/w.npz"], "--weights '{tmp}/w.npz': no such file."),
    (["sample", "--weights", "{afile}"], "--weights '{afile}': '{afile}' is not a readable .npz file (corrupt or truncated?)"),
    (["sample", "--weights", "{nokey}"], "--weights '{nokey}': '{nokey}' has no 'meta' entry; it was not written by ddpm_lib."),
    (["sample"], "one of the arguments --weights --checkpoint-dir --reference is required"),
    (["sample", "--reference", "ho", "--out", "{tmp}/x.png"],
     "--reference: unknown reference model 'ho'; expected one of ['conditional', 'ho-unet', 'ho-unet-step6000', 'seed-unet']"),
    (["export", "--checkpoint-dir", "{adir}", "--out", "{tmp}/w.npz"], "no checkpoint (ckpt-*.npz) in '{adir}'"),
    (["export", "--checkpoint-dir", "{tmp}/nothere", "--out", "{tmp}/w.npz"], "is not a directory (it does not exist)."),
    (["export", "--checkpoint-dir", "{adir}", "--out", "{tmp}/missing/w.npz"], "the folder '{tmp}/missing' does not exist"),
    (["export", "--checkpoint-dir", "{adir}", "--out", "{tmp}/w.npz", "--dtype", "int8"], "invalid choice: 'int8'"),
    (["train", "--steps", "1"], "the following arguments are required: --checkpoint-dir"),
    (["fit"], "argument command: invalid choice: 'fit'"),
]
CASES = ([(TRAIN + extra, msg) for extra, msg in BAD_TRAIN] + [(SAMPLE + extra, msg) for extra, msg in BAD_SAMPLE]
         + BAD_SOURCE)


@pytest.mark.parametrize("argv, message", CASES, ids=[f"{c[0][0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line(argv, message, inputs, capsys):
    """Each bad input: exit status 2, one line on stderr, nothing written, before any work."""
    before = sorted(p.name for p in inputs.iterdir())
    rc = run_main(fill(argv, inputs))
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fill([message], inputs)[0] in err
    assert sorted(p.name for p in inputs.iterdir()) == before          # nothing was written


def test_an_unwritable_out_folder_is_refused_before_work(inputs, capsys, monkeypatch):
    """A folder the user cannot write to (simulated: tests may run as root, who can write
    anywhere): sample --out and train --export stop with one line before any work."""
    readonly = inputs / "readonly"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if os.path.abspath(path) == str(readonly) and mode & os.W_OK else real_access(path, mode, **kw)))
    for argv, flag in ((SAMPLE[:-1] + [f"{readonly}/x.png"], "--out"),
                       (TRAIN + ["--export", f"{readonly}/w.npz"], "--export")):
        rc = run_main(fill(argv, inputs))
        err = capsys.readouterr().err
        assert rc == 2 and err == (f"error: {flag} '{readonly}/{'x.png' if flag == '--out' else 'w.npz'}': "
                                   f"the folder '{readonly}' is not writable.\n"), err
    assert os.listdir(readonly) == []


def test_sample_help_says_what_steps_and_eta_do(capsys):
    """dpm_solver without --steps runs all T steps: the help says so and suggests 10-20."""
    with pytest.raises(SystemExit) as e:
        main(["sample", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--steps STEPS model calls (default: all T, e.g. 1000, for every method, dpm_solver " \
           "included: it needs only 10-20)" in text
    assert "only with --method ddim" in text


def test_bad_input_in_a_real_process(tmp_path):
    """As a user runs it, with no TF_CPP_MIN_LOG_LEVEL set: exit status 2 and exactly one line on
    stderr (TensorFlow's C++ start-up lines hidden by the command itself), no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    for args, message in ((["train", "--checkpoint-dir", tmp_path / "r", "--steps", -5, "--data", "sample"],
                           "error: --steps must be a non-negative integer; got -5."),
                          (["sample", "--reference", "--eta", "nan", "--out", tmp_path / "x.png"],
                           "error: --eta must be a finite number; got nan.")):
        proc = subprocess.run([sys.executable, "-m", "ddpm_lib", *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2 and proc.stderr == message + "\n", proc.stderr
    assert os.listdir(tmp_path) == []


def test_debug_keeps_tensorflow_log_lines(tmp_path):
    """--debug leaves standard error alone (TensorFlow's C++ lines too): the traceback shows."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "ddpm_lib", "sample", "--reference", "--eta", "nan",
                           "--out", str(tmp_path / "x.png"), "--debug"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("UsageError: --eta must be a finite number; got nan.")


def test_no_internet_says_which_flags_to_use(python_runner, tmp_path, monkeypatch):
    """--data fashion_mnist without a network (a proxy that refuses) and without a cached copy."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    proc = cli(python_runner, "train", "--data", "fashion_mnist", "--checkpoint-dir", tmp_path / "r",
               "--steps", 1, check=False)
    lines = own_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: could not download fashion_mnist (")
    assert lines[0].endswith("without internet use --data npz --data-npz FILE (a local .npz with "
                             "uint8 'images') or --data sample (the 2,000 images shipped with ddpm_lib).")
    assert not (tmp_path / "r").exists()


def test_debug_raises_instead(tmp_path, capsys):
    """--debug lets the exception (and so its traceback) through."""
    from ddpm_lib.cli import UsageError
    argv = ["sample", "--reference", "--eta", "nan", "--out", str(tmp_path / "x.png")]
    with pytest.raises(UsageError, match="--eta must be a finite number; got nan."):
        main(argv + ["--debug"])
    assert capsys.readouterr().err == ""


def test_an_unexpected_failure_is_one_line_too(tmp_path, capsys, monkeypatch):
    import ddpm_lib.cli as cli_module

    def broken(args):
        raise RuntimeError("disk on fire\nsecond line")
    monkeypatch.setattr(cli_module, "cmd_export", broken)
    assert main(["export", "--checkpoint-dir", str(tmp_path), "--out", str(tmp_path / "w.npz")]) == 1
    assert capsys.readouterr().err == "error: disk on fire second line (--debug shows the traceback)\n"
