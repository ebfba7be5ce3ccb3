"""ddpm_lib.checkpoint: atomic writes, clear errors on bad files, exported weights."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib import checkpoint as ck
from ddpm_lib.checkpoint import (atomic_savez, export_weights, latest_checkpoint, list_checkpoints,
                                 load_weights, read_npz)
from ddpm_lib.schedule import cosine_schedule, linear_schedule


def meta_arrays(**arrays):
    return dict(arrays, meta=np.array(json.dumps({"format": "test"})))


# ------------------------------------------------------------------------ atomic_savez
def test_atomic_savez_writes_and_leaves_no_tmp(tmp_path):
    path = tmp_path / "sub" / "dir" / "a.npz"              # directories are created
    out = atomic_savez(path, meta_arrays(x=np.arange(5)))
    assert out == str(path) and path.exists()
    assert os.listdir(path.parent) == ["a.npz"]
    data = read_npz(path)
    np.testing.assert_array_equal(data["x"], np.arange(5))
    assert data["meta"] == {"format": "test"}
    atomic_savez(path, meta_arrays(x=np.arange(3)))        # overwrite
    np.testing.assert_array_equal(read_npz(path)["x"], np.arange(3))
    assert os.listdir(path.parent) == ["a.npz"]


def test_failing_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    atomic_savez(path, meta_arrays(x=np.arange(10)))
    before = path.read_bytes()

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")            # some bytes, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.np, "savez", half_written)
    with pytest.raises(OSError, match="No space left"):
        atomic_savez(path, meta_arrays(x=np.zeros(10)))
    monkeypatch.undo()
    assert path.read_bytes() == before                      # the old file is intact
    assert os.listdir(tmp_path) == ["ckpt.npz"]             # and no .tmp is left behind
    np.testing.assert_array_equal(read_npz(path)["x"], np.arange(10))


def test_failing_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    atomic_savez(path, meta_arrays(x=np.arange(10)))
    before = path.read_bytes()

    def boom(src, dst):
        raise PermissionError("rename failed")

    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(PermissionError):
        atomic_savez(path, meta_arrays(x=np.zeros(10)))
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.npz"]


# ---------------------------------------------------------------------------- read_npz
@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.npz"
    atomic_savez(path, meta_arrays(w=np.random.default_rng(0).standard_normal(5000)))
    return path


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.1])
def test_read_npz_truncated(good_file, keep):
    raw = good_file.read_bytes()
    good_file.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ValueError, match="not a readable .npz file \\(corrupt or truncated\\?\\)"):
        read_npz(good_file)


def test_read_npz_corrupt_bytes(good_file):
    raw = bytearray(good_file.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\xff" * 64       # damage the array data (CRC fails)
    good_file.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_npz(good_file)


def test_read_npz_other_bad_files(tmp_path):
    (tmp_path / "text.npz").write_text("hello, not a zip")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_npz(tmp_path / "text.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_npz(tmp_path / "empty.npz")
    np.savez(tmp_path / "nometa.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="no 'meta' entry"):
        read_npz(tmp_path / "nometa.npz")
    np.savez(tmp_path / "badmeta.npz", meta=np.array("{not json"))
    with pytest.raises(ValueError, match="corrupt 'meta' entry"):
        read_npz(tmp_path / "badmeta.npz")
    np.savez(tmp_path / "pickled.npz", meta=np.array("{}"), obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable"):
        read_npz(tmp_path / "pickled.npz")                  # no pickles are ever loaded
    with pytest.raises(FileNotFoundError):
        read_npz(tmp_path / "missing.npz")


def test_list_and_latest_checkpoints(tmp_path):
    assert list_checkpoints(tmp_path / "nope") == [] and latest_checkpoint(None) is None
    assert latest_checkpoint(tmp_path) is None
    for step in (900, 10000, 50):
        atomic_savez(tmp_path / f"ckpt-{step:08d}.npz", meta_arrays())
    for other in ("ckpt-00099999.npz.tmp", "ckpt-latest.npz", "weights.npz", "ckpt-12.npzx"):
        (tmp_path / other).write_bytes(b"x")
    found = list_checkpoints(tmp_path)
    assert [s for s, _ in found] == [50, 900, 10000]
    assert latest_checkpoint(tmp_path) == str(tmp_path / "ckpt-00010000.npz")


# --------------------------------------------------------------- export / load_weights
@pytest.fixture(scope="module")
def exported(tiny_unet, tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    schedule = cosine_schedule(100)
    p16 = export_weights(tiny_unet, schedule, d / "w16.npz", extra={"note": "test"})
    p32 = export_weights(tiny_unet, schedule, d / "w32.npz", dtype="float32")
    return schedule, p16, p32


def test_export_load_round_trip_float16(tiny_unet, exported):
    schedule, p16, _ = exported
    data = read_npz(p16)
    assert data["meta"]["format"] == "ddpm_lib.weights/1" and data["meta"]["extra"] == {"note": "test"}
    assert all(data[k].dtype == np.float16 for k in data if k != "meta")
    model, sched = load_weights(p16)
    assert type(model).__name__ == "UNet" and model.get_config()["base_channels"] == 8
    np.testing.assert_array_equal(sched.betas, schedule.betas)
    for w, ref in zip(model.get_weights(), tiny_unet.get_weights()):
        assert w.dtype == np.float32 and w.shape == ref.shape
        np.testing.assert_array_equal(w, ref.astype(np.float16).astype(np.float32))
    x = tf.random.stateless_normal([2, 32, 32, 1], seed=[0, 0])
    t = tf.constant([3, 80])
    # float16 weights (rel. error 2**-11) perturb the output slightly, not more
    np.testing.assert_allclose(model(x, t).numpy(), tiny_unet(x, t).numpy(), atol=0.05)


def test_export_load_round_trip_float32_is_exact(tiny_unet, exported):
    _, _, p32 = exported
    model, _ = load_weights(p32)
    for w, ref in zip(model.get_weights(), tiny_unet.get_weights()):
        np.testing.assert_array_equal(w, ref)


def rewrite(src, dst, change):
    data = dict(np.load(src))
    meta = json.loads(str(data["meta"]))
    change(data, meta)
    data["meta"] = np.array(json.dumps(meta))
    atomic_savez(dst, data)
    return dst


def test_load_weights_mismatched_config(exported, tmp_path):
    _, p16, _ = exported

    def wider(data, meta):
        meta["model_config"]["base_channels"] = 16
    with pytest.raises(ValueError, match="has shape .* expected"):
        load_weights(rewrite(p16, tmp_path / "a.npz", wider))

    def count(data, meta):
        meta["n_weights"] += 1
    with pytest.raises(ValueError, match="weight arrays but UNet"):
        load_weights(rewrite(p16, tmp_path / "b.npz", count))

    def unbuildable(data, meta):
        meta["model_config"]["attention"] = "flash"
    with pytest.raises(ValueError, match="cannot build"):
        load_weights(rewrite(p16, tmp_path / "c.npz", unbuildable))

    def not_weights(data, meta):
        meta["format"] = "ddpm_lib.checkpoint/1"
    with pytest.raises(ValueError, match="not a ddpm_lib UNet or HoUNet weights file"):
        load_weights(rewrite(p16, tmp_path / "d.npz", not_weights))


def test_load_weights_missing_or_bad_arrays(exported, tmp_path):
    _, p16, _ = exported

    def drop(data, meta):
        del data["w0003"]
    with pytest.raises(ValueError, match="missing weight array w0003"):
        load_weights(rewrite(p16, tmp_path / "a.npz", drop))

    def poison(data, meta):
        data["w0000"] = data["w0000"].copy()
        data["w0000"].flat[0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        load_weights(rewrite(p16, tmp_path / "b.npz", poison))


def test_export_bad_arguments(tiny_unet, tiny_eps_cls, tmp_path):
    s = linear_schedule(10)
    with pytest.raises(ValueError, match="dtype must be"):
        export_weights(tiny_unet, s, tmp_path / "x.npz", dtype="bfloat16")
    with pytest.raises(ValueError, match="no weights yet"):
        export_weights(tiny_eps_cls(), s, tmp_path / "y.npz")
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()


def test_load_weights_dtype(exported):
    _, p16, _ = exported
    model, _ = load_weights(p16, dtype="mixed_bfloat16")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert all(w.dtype == np.float32 for w in model.get_weights())
    with pytest.raises(ValueError, match="dtype must be None or a Keras dtype policy"):
        load_weights(p16, dtype="float-ish")
