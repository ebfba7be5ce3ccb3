"""ddpm_lib.checkpoint: atomic writes, clear errors on bad files, exported weights."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib import checkpoint as ck
from ddpm_lib.checkpoint import (atomic_savez, atomic_write_json, export_weights, latest_checkpoint,
                                 list_checkpoints, load_weights, read_npz, variable_keys,
                                 WEIGHTS_FORMAT)
from ddpm_lib.schedule import cosine_schedule, linear_schedule
from ddpm_lib.trainer import Trainer


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


def test_atomic_write_json_and_the_fsyncs(tmp_path, monkeypatch):
    """One writer for every file: the file and then its directory are flushed to disk."""
    import stat
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(ck.os, "fsync", fsync)
    path = atomic_write_json(tmp_path / "run" / "train_config.json", {"lr": 2e-4, "mult": [1, 2]})
    assert json.loads(open(path).read()) == {"lr": 2e-4, "mult": [1, 2]}
    assert os.listdir(tmp_path / "run") == ["train_config.json"]
    atomic_savez(tmp_path / "a.npz", meta_arrays(x=np.arange(3)))
    assert synced == ["file", "dir", "file", "dir"]


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


# ------------------------------------------------------------------------ keys of the arrays
def tiny_ho(seed=0, **kwargs):
    import keras
    from ddpm_lib import HoUNet
    keras.utils.set_random_seed(seed)
    kw = dict(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, dropout=0.0, groups=4)
    kw.update(kwargs)
    return HoUNet(**kw)


def test_hounet_weights_are_keyed_by_their_paths(tiny_eps_cls, tiny_unet):
    # tiny_unet: a seed UNet built earlier in the process must not change a later model's paths.
    a, b = tiny_ho().build_for(), tiny_ho(name="other").build_for()
    assert a.weights[0].path == f"{a.name}/temb_dense0/kernel"
    keys = ck.variable_keys(a)
    assert keys == [v.path.split(f"{a.name}/", 1)[1] for v in a.weights] == ck.variable_keys(b)
    assert keys[:2] == ["temb_dense0/kernel", "temb_dense0/bias"] and "conv_out/bias" in keys
    assert "down0_res0/conv1/kernel" in keys and len(set(keys)) == len(keys)
    eps = tiny_eps_cls()                                # any other model: by position
    eps(tf.zeros([1, 8, 8, 1]), tf.zeros([1], tf.int32))
    assert ck.variable_keys(eps) == ["0000", "0001", "0002", "0003", "0004", "0005"]


def test_unet_weights_are_keyed_by_their_paths(tiny_unet_factory):
    """The seed UNet names every layer, so its keys are the same in every model a process builds."""
    a, b = tiny_unet_factory(seed=0), tiny_unet_factory(seed=0)
    keys = ck.variable_keys(a)
    assert keys == ck.variable_keys(b) == [v.path.split("/", 1)[1] for v in b.weights]
    assert keys[:2] == ["inc/conv1/kernel", "inc/norm1/gamma"] and keys[-1] == "outc/bias"
    assert {"down1/conv1/conv1/kernel", "sa1/mha/query/kernel", "bot2/key/kernel",
            "up3/time/dense/bias"} <= set(keys)
    assert len(set(keys)) == len(keys) == len(a.weights)


@pytest.mark.parametrize("mixed", [None, "mixed_float16"])
def test_optimizer_keys_are_stable_and_unique(mixed):
    keys = []
    for seed in (0, 1):                                  # two trainers in one process
        tr = Trainer(tiny_ho(seed, dtype=mixed), linear_schedule(10), batch_size=2, verbose=False,
                     mixed_precision=mixed)
        k = ck.optimizer_keys(tr.optimizer, tr.model)
        assert len(k) == len(tr.optimizer.variables) == len(set(k))
        keys.append(k)
    assert keys[0] == keys[1]
    assert "adamw/iteration" in keys[0] and "adamw/down0_res0/conv1/kernel/momentum" in keys[0]
    assert "adamw/conv_out/bias/velocity" in keys[0]
    if mixed:
        assert "lossscaleoptimizer/dynamic_scale" in keys[0]


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
    meta = data["meta"]
    assert meta["format"] == "ddpm_lib.weights/2" and meta["extra"] == {"note": "test"}
    assert meta["model_class"] == "UNet" and meta["keys"] == "path" and meta["timesteps"] == 100
    assert sorted(k for k in data if k != "meta") == sorted(f"weights/{k}" for k in ck.variable_keys(tiny_unet))
    assert all(data[k].dtype == np.float16 for k in data if k != "meta")
    model, sched = load_weights(p16)
    assert type(model).__name__ == "UNet" and model.get_config()["base_channels"] == 8
    assert model.trained_timesteps == 100
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


def test_hounet_export_is_keyed_by_path(tmp_path):
    model = tiny_ho().build_for()
    for v in model.weights:                                  # not zero-initialized: a real test
        v.assign(tf.random.stateless_normal(v.shape, seed=[len(v.path), 7]) * 0.1)
    path = export_weights(model, linear_schedule(30), tmp_path / "ho.npz", dtype="float32")
    data = read_npz(path)
    assert data["meta"]["model_class"] == "HoUNet" and data["meta"]["keys"] == "path"
    assert "weights/down0_res0/conv1/kernel" in data
    loaded, sched = load_weights(path)
    assert type(loaded).__name__ == "HoUNet" and sched.timesteps == 30 == loaded.trained_timesteps
    for w, ref in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(w.numpy(), ref.numpy())


def write_weights_v1(model, schedule, path, dtype="float16"):
    """An exported weights file exactly as ddpm_lib wrote it before version 2 (by position)."""
    weights = model.get_weights()
    meta = {"format": "ddpm_lib.weights/1", "model_class": type(model).__name__,
            "model_config": model.get_config(), "betas": schedule.betas.tolist(),
            "n_weights": len(weights), "extra": {}}
    arrays = {f"w{i:04d}": w.astype(dtype) for i, w in enumerate(weights)}
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("make", ["unet", "ho"])
def test_version_1_weights_still_load(make, tiny_unet, exported, tmp_path):
    model = tiny_unet if make == "unet" else tiny_ho().build_for()
    schedule = cosine_schedule(100)
    old = write_weights_v1(model, schedule, tmp_path / "v1.npz")
    new = export_weights(model, schedule, tmp_path / "v2.npz")
    (a, sa), (b, sb) = load_weights(old), load_weights(new)
    assert type(a) is type(b) and a.trained_timesteps == b.trained_timesteps == 100
    np.testing.assert_array_equal(sa.betas, sb.betas)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_position_keyed_version_2_unet_files_still_load(tiny_unet, tmp_path):
    """UNet files of version 2 written before the UNet named its layers were keyed by position."""
    path = export_weights(tiny_unet, cosine_schedule(100), tmp_path / "w.npz", dtype="float32")
    data = read_npz(path)
    keys = ck.variable_keys(tiny_unet)
    arrays = {f"weights/{i:04d}": data[f"weights/{k}"] for i, k in enumerate(keys)}
    arrays["meta"] = np.array(json.dumps(dict(data["meta"], keys="position")))
    np.savez(tmp_path / "old.npz", **arrays)
    model, _ = load_weights(tmp_path / "old.npz")
    for w, ref in zip(model.get_weights(), tiny_unet.get_weights()):
        np.testing.assert_array_equal(w, ref)


def test_the_shipped_seed_unet_file_is_keyed_by_path_with_its_original_weights():
    """The seed-UNet file was converted from version 1 (by position) to version 2 (by path):
    loading gives exactly its arrays, and the weights are those of the version-1 file (their
    fingerprint, pinned before the conversion)."""
    from importlib import resources
    from ddpm_lib.generate import model_fingerprint
    ref = resources.files("ddpm_lib") / "assets" / "reference" / "fashion_mnist_unet32.npz"
    with resources.as_file(ref) as path:
        raw = read_npz(path)
        model, schedule = load_weights(path)
    assert raw["meta"]["format"] == WEIGHTS_FORMAT and raw["meta"]["keys"] == "path"
    assert model.trained_timesteps == 1000 and raw["meta"]["extra"]["step"] == 7000
    keys = variable_keys(model)
    assert sorted(f"weights/{k}" for k in keys) == sorted(k for k in raw if k != "meta")
    for key, w in zip(keys, model.get_weights()):
        np.testing.assert_array_equal(w, raw[f"weights/{key}"].astype(np.float32))
    assert model_fingerprint(model) == "4df563f90cd0d861"


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

    def extra(data, meta):
        data["weights/9999"] = np.zeros(3, np.float16)
    with pytest.raises(ValueError, match="1 arrays this model does not have, e.g. 'weights/9999'"):
        load_weights(rewrite(p16, tmp_path / "b.npz", extra))

    def unbuildable(data, meta):
        meta["model_config"]["attention"] = "flash"
    with pytest.raises(ValueError, match="cannot build"):
        load_weights(rewrite(p16, tmp_path / "c.npz", unbuildable))

    def not_weights(data, meta):
        meta["format"] = "ddpm_lib.checkpoint/2"
    with pytest.raises(ValueError, match="not a ddpm_lib UNet or HoUNet weights file"):
        load_weights(rewrite(p16, tmp_path / "d.npz", not_weights))

    def by_position(data, meta):                  # a damaged file: path keys, meta says position
        meta["keys"] = "position"
    with pytest.raises(ValueError, match="has no array 'weights/0000'"):
        load_weights(rewrite(p16, tmp_path / "e.npz", by_position))


def test_load_weights_version_1_count(tiny_unet, tmp_path):
    old = write_weights_v1(tiny_unet, linear_schedule(10), tmp_path / "v1.npz")

    def count(data, meta):
        meta["n_weights"] += 1
    with pytest.raises(ValueError, match="weight arrays but UNet"):
        load_weights(rewrite(old, tmp_path / "b.npz", count))


def test_load_weights_missing_or_bad_arrays(exported, tmp_path):
    _, p16, _ = exported

    def drop(data, meta):
        del data["weights/inc/norm2/beta"]
    with pytest.raises(ValueError, match="has no array 'weights/inc/norm2/beta'"):
        load_weights(rewrite(p16, tmp_path / "a.npz", drop))

    def poison(data, meta):
        data["weights/inc/conv1/kernel"] = data["weights/inc/conv1/kernel"].copy()
        data["weights/inc/conv1/kernel"].flat[0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        load_weights(rewrite(p16, tmp_path / "b.npz", poison))


def test_export_bad_arguments(tiny_unet, tiny_eps_cls, tmp_path):
    s = linear_schedule(10)
    with pytest.raises(ValueError, match="dtype must be"):
        export_weights(tiny_unet, s, tmp_path / "x.npz", dtype="bfloat16")
    with pytest.raises(ValueError, match="no weights yet"):
        export_weights(tiny_eps_cls(), s, tmp_path / "y.npz")
    eps = tiny_eps_cls()
    eps(tf.zeros([1, 8, 8, 1]), tf.zeros([1], tf.int32))
    with pytest.raises(ValueError, match="saves a UNet or HoUNet; got a TinyEps"):
        export_weights(eps, s, tmp_path / "z.npz")
    assert not os.listdir(tmp_path)


def test_load_weights_dtype(exported):
    _, p16, _ = exported
    model, _ = load_weights(p16, dtype="mixed_bfloat16")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert all(w.dtype == np.float32 for w in model.get_weights())
    with pytest.raises(ValueError, match="dtype must be None or a Keras dtype policy"):
        load_weights(p16, dtype="float-ish")


# ------------------------------------------------------------------------ training checkpoints
def ho_trainer(tmp_path, seed=0, **kwargs):
    return Trainer(tiny_ho(seed), linear_schedule(20), batch_size=2, verbose=False,
                   checkpoint_dir=str(tmp_path), **kwargs)


def scramble(trainer, seed):
    """Give every variable distinct random values (a step-0 trainer has many zeros)."""
    for i, v in enumerate(trainer.model.weights + trainer.ema_model.weights + trainer.optimizer.variables):
        v.assign(tf.cast(tf.random.stateless_uniform(v.shape, seed=[seed, i], maxval=100), v.dtype))


def all_values(trainer):
    return [v.numpy() for v in trainer.model.weights + trainer.ema_model.weights + trainer.optimizer.variables]


def test_hounet_checkpoint_is_keyed_by_path(tmp_path):
    tr = ho_trainer(tmp_path)
    scramble(tr, 1)
    data = read_npz(tr.save())
    assert data["meta"]["format"] == "ddpm_lib.checkpoint/2" and data["meta"]["keys"] == "path"
    for key in ("model/down0_res0/conv1/kernel", "ema/down0_res0/conv1/kernel", "opt/adamw/iteration",
                "opt/adamw/down0_res0/conv1/kernel/momentum"):
        assert key in data
    fresh = ho_trainer(tmp_path / "other", seed=3)
    assert fresh.restore(latest_checkpoint(tmp_path)) == 0
    for a, b in zip(all_values(fresh), all_values(tr)):
        np.testing.assert_array_equal(a, b)


def write_checkpoint_v1(trainer, path):
    """A training checkpoint exactly as ddpm_lib wrote it before version 2 (by position)."""
    meta = {"format": "ddpm_lib.checkpoint/1", "step": trainer.step,
            "model_config": trainer.model.get_config(), "schedule": ck.schedule_hash(trainer.schedule),
            "hparams": trainer.hparams, "history": trainer.history}
    arrays = {"meta": np.array(json.dumps(meta))}
    for prefix, variables in (("model", trainer.model.weights), ("ema", trainer.ema_model.weights),
                              ("opt", trainer.optimizer.variables)):
        for i, v in enumerate(variables):
            arrays[f"{prefix}/{i:04d}"] = np.asarray(v.numpy())
    atomic_savez(path, arrays)
    return str(path)


@pytest.mark.parametrize("make", ["ho", "unet", "tiny"])
def test_version_1_checkpoints_still_restore(make, tmp_path, tiny_eps_cls, tiny_unet_factory):
    def trainer(seed):
        model = {"ho": lambda: tiny_ho(seed), "unet": lambda: tiny_unet_factory(seed=seed),
                 "tiny": tiny_eps_cls}[make]()
        return Trainer(model, linear_schedule(20), batch_size=2, verbose=False,
                       checkpoint_dir=str(tmp_path))
    old = trainer(0)
    scramble(old, 2)
    old.step, old.history = 7, [{"step": 7, "loss": 0.5, "time": 1.0}]
    write_checkpoint_v1(old, tmp_path / "ckpt-00000007.npz")
    new = trainer(1)
    assert new.restore() == 7 and new.history == old.history
    for a, b in zip(all_values(new), all_values(old)):
        np.testing.assert_array_equal(a, b)
    assert read_npz(new.save())["meta"]["format"] == "ddpm_lib.checkpoint/2"   # and resaves as v2


def test_corrupt_newest_checkpoint_falls_back_with_one_warning(tmp_path):
    tr = ho_trainer(tmp_path)
    scramble(tr, 4)
    for step in (2, 4):
        tr.step = step
        tr.save()
    raw = open(tmp_path / "ckpt-00000004.npz", "rb").read()
    (tmp_path / "ckpt-00000004.npz").write_bytes(raw[: len(raw) // 2])        # truncated
    fresh = ho_trainer(tmp_path, seed=5)
    with pytest.warns(UserWarning) as record:
        assert fresh.restore() == 2
    assert len(record) == 1, [str(r.message) for r in record]
    msg = str(record[0].message)
    assert "\n" not in msg and msg.startswith("ckpt-00000004.npz in ")
    assert msg.endswith("is corrupt or truncated; resuming from ckpt-00000002.npz instead.")
    for a, b in zip(all_values(fresh), all_values(tr)):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "ckpt-00000002.npz").write_bytes(b"")                            # all unreadable
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable checkpoint in"):
        ho_trainer(tmp_path).restore()


def test_check_same_run_one_line():
    ck.check_same_run({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2]}, "x")
    with pytest.raises(ValueError) as info:
        ck.check_same_run({"batch_size": 8, "lr": 1.0, "seed": 0}, {"batch_size": 4, "lr": 1.0, "seed": 2},
                          "'runs/a'", name=lambda k: "--" + k.replace("_", "-"))
    assert str(info.value) == ("'runs/a' holds a run with another configuration (--batch-size: saved 8, "
                               "given 4; --seed: saved 0, given 2); resume with the saved values or "
                               "start a new run.")


def test_sample_warns_when_T_differs_from_training(exported):
    """load_weights records the T of training; sample() with another T says so in one line."""
    import warnings
    from ddpm_lib.sampler import sample
    _, p16, _ = exported
    model, schedule = load_weights(p16)                        # trained with T = 100
    with pytest.warns(UserWarning) as record:
        sample(model, linear_schedule(10), (1, 32, 32, 1), method="ddim", steps=1, seed=0)
    msgs = [str(r.message) for r in record]
    assert msgs == ["the model was trained with T = 100 but the schedule has T = 10; sample with "
                    "the schedule it was trained with (load_weights returns it)."]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample(model, schedule, (1, 32, 32, 1), method="ddim", steps=1, seed=0)
