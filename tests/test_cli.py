"""``python -m ddpm_lib train|sample|export`` end to end, on the shipped sample, with a tiny UNet."""
import json
import os

import numpy as np
import pytest

from ddpm_lib import checkpoint as ck
from ddpm_lib.checkpoint import load_weights



def tiny(batch_size=8):
    return ["--data", "sample", "--arch", "seed", "--base-channels", "8", "--time-dim", "32",
            "--attention", "origin",
            "--timesteps", "50", "--batch-size", str(batch_size), "--lr", "1e-3", "--log-every", "1",
            "--quiet"]


TINY = tiny()


def cli(python_runner, *args, check=True):
    return python_runner(["-m", "ddpm_lib", *map(str, args)], check=check)


@pytest.fixture(scope="module")
def trained(python_runner, tmp_path_factory):
    """Train 3 steps from scratch, then ask for 5: the second run resumes at step 3."""
    d = tmp_path_factory.mktemp("cli") / "run"
    first = cli(python_runner, "train", "--checkpoint-dir", d, "--steps", 3, *TINY)
    second = cli(python_runner, "train", "--checkpoint-dir", d, "--steps", 5, *TINY,
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
    cfg = json.loads((d / "train_config.json").read_text())
    assert cfg["base_channels"] == 8 and cfg["timesteps"] == 50 and cfg["channels"] == 1
    assert cfg["arch"] == "seed" and cfg["attention"] == "origin" and "groups" not in cfg


TINY_HO = ["--data", "sample", "--base-channels", "8", "--channel-mult", "1,2", "--groups", "4",
           "--num-res-blocks", "1", "--timesteps", "50", "--batch-size", "4", "--quiet"]


def test_train_ho_unet_twice_gives_the_same_weights(python_runner, tmp_path):
    """--arch ho (the default) trains Ho et al.'s UNet; --seed fixes the initial weights too."""
    for name in ("a", "b"):
        cli(python_runner, "train", "--checkpoint-dir", tmp_path / name, "--steps", 2, *TINY_HO)
    cfg = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert cfg["arch"] == "ho" and cfg["channel_mult"] == [1, 2] and "attention" not in cfg
    a, b = (ck.read_npz(ck.latest_checkpoint(tmp_path / n)) for n in ("a", "b"))
    assert a["meta"]["model_config"]["channel_mult"] == [1, 2]
    keys = [k for k in a if k != "meta"]
    assert len(keys) > 100 and all(np.array_equal(a[k], b[k]) for k in keys)


def test_bad_channel_mult_is_one_line(python_runner, tmp_path):
    proc = cli(python_runner, "train", "--checkpoint-dir", tmp_path, "--steps", 1, *TINY_HO,
               "--channel-mult", "1,x", check=False)
    assert proc.returncode == 2 and "expected comma-separated integers" in proc.stderr


def test_train_resumes(trained):
    d, _, second = trained
    assert "resumed at step 3" in second.stdout
    assert [h["step"] for h in history_lines(second.stdout)] == [4, 5]
    assert "step 5" in second.stdout
    assert [s for s, _ in ck.list_checkpoints(d)] == [3, 5]
    meta = ck.read_npz(ck.latest_checkpoint(d))["meta"]
    assert meta["step"] == 5 and [h["step"] for h in meta["history"]] == [1, 2, 3, 4, 5]
    assert not [f for f in os.listdir(d) if f.endswith(".tmp")]


def test_train_refuses_another_configuration(trained):
    # in-process (the CLI's own main()): the check runs before TensorFlow builds anything
    from ddpm_lib.cli import main
    d, _, _ = trained
    with pytest.raises(SystemExit) as info:
        main(["train", "--checkpoint-dir", str(d), "--steps", "7", *tiny(batch_size=4)])
    msg = str(info.value)
    assert "holds a run with another configuration" in msg
    assert "--batch-size: saved 8, given 4" in msg
    assert [s for s, _ in ck.list_checkpoints(d)] == [3, 5]          # nothing was touched


def test_sample_writes_a_png(trained, python_runner, tmp_path):
    from PIL import Image
    d, _, _ = trained
    png, gif = tmp_path / "x.png", tmp_path / "r.gif"
    proc = cli(python_runner, "sample", "--checkpoint-dir", d, "--n", 4, "--method", "ddim",
               "--steps", 5, "--out", png, "--gif", gif)
    assert "4 images" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.size == (4 * 34 + 2, 36)            # 4 images of 32x32 in one row, 2-pixel gaps
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames > 1


def test_export_is_loadable(trained, python_runner, tmp_path):
    d, _, _ = trained
    out = tmp_path / "weights.npz"
    proc = cli(python_runner, "export", "--checkpoint-dir", d, "--out", out)
    assert "float16" in proc.stdout
    model, schedule = load_weights(out)
    assert model.get_config()["base_channels"] == 8 and schedule.timesteps == 50
    # the exported weights are the checkpoint's EMA weights, rounded to float16
    ckpt = ck.read_npz(ck.latest_checkpoint(d))
    ema = [ckpt[f"ema/{i:04d}"] for i in range(len(model.weights))]
    for w, e in zip(model.get_weights(), ema):
        np.testing.assert_array_equal(w, e.astype(np.float16).astype(np.float32))
    assert ck.read_npz(out)["meta"]["extra"]["step"] == 5
    # `train --export` wrote the same weights at the end of the resumed run
    from_train = ck.read_npz(d.parent / "from_train.npz")
    assert "exported EMA weights" in trained[2].stdout
    exported = ck.read_npz(out)
    assert set(exported) == set(from_train)
    for key in (k for k in from_train if k != "meta"):
        np.testing.assert_array_equal(exported[key], from_train[key])


def test_sample_without_a_checkpoint(tmp_path):
    from ddpm_lib.cli import main
    with pytest.raises(SystemExit, match=r"no checkpoint \(ckpt-\*\.npz\)"):
        main(["sample", "--checkpoint-dir", str(tmp_path), "--n", "2", "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()


def test_sample_clip_x0_matches_the_library(trained, python_runner, tmp_path):
    """`sample --clip-x0 --out x.npz` stores the uint8 images of sample(..., clip_x0=True)."""
    from ddpm_lib.data import to_uint8
    from ddpm_lib.sampler import sample
    d, _, _ = trained
    weights, out = tmp_path / "w.npz", tmp_path / "x.npz"
    cli(python_runner, "export", "--checkpoint-dir", d, "--out", weights, "--dtype", "float32")
    cli(python_runner, "sample", "--weights", weights, "--n", 3, "--method", "ddim", "--steps", 4,
        "--seed", 5, "--clip-x0", "--out", out)
    model, schedule = load_weights(weights)
    ref = sample(model, schedule, (3, 32, 32, 1), method="ddim", steps=4, seed=5, clip_x0=True)
    got = ck.read_npz(out)["images"]
    # the same float32 computation in another process: allow one uint8 level for rounding
    assert np.max(np.abs(got.astype(int) - to_uint8(ref.numpy()).astype(int))) <= 1
    plain = sample(model, schedule, (3, 32, 32, 1), method="ddim", steps=4, seed=5)
    assert np.mean(got != to_uint8(plain.numpy())) > 0.05      # and the flag did change the images
