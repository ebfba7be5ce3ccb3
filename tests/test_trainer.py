"""ddpm_lib.trainer: Algorithm 1 learns, resumes exactly, refuses wrong resumes, stops on nan,
runs under tf.distribute and in mixed precision.

Speed: tracing the train step of even a tiny UNet takes ~10-40 s of CPU, so the UNet is trained by
four trainers only (one run that also checkpoints mid-way, one that resumes from it, and the same
pair after a warm start); the checks of the trainer's bookkeeping use ``TinyEps`` (conftest), whose
train step traces in about a second.
"""
import inspect
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib import checkpoint as ck
from ddpm_lib.schedule import linear_schedule
from ddpm_lib.data import make_dataset
from ddpm_lib.trainer import (LinearWarmup, Trainer, TrainingDivergedError, draw_t_eps,
                              ema_update, train_step)

N, M = 5, 3                      # exact resume: N steps, save, restore, M steps
STEPS_A = 48                     # the long run: also the "loss decreases" run
CFG = dict(batch_size=16, learning_rate=1e-3, seed=0, verbose=False)


def snapshot(trainer):
    return {"model": [v.numpy().copy() for v in trainer.model.weights],
            "ema": [v.numpy().copy() for v in trainer.ema_model.weights],
            "opt": [v.numpy().copy() for v in trainer.optimizer.variables]}


def assert_same_state(a, b, rtol=1e-6, atol=1e-7):
    for part in ("model", "ema", "opt"):
        assert len(a[part]) == len(b[part]) > 0
        for i, (x, y) in enumerate(zip(a[part], b[part])):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"{part}[{i}]")


@pytest.fixture(scope="module")
def images(sample_images):
    return sample_images[0]


@pytest.fixture(scope="module")
def schedule():
    return linear_schedule(100)


# ------------------------------------------------------- the UNet runs (module fixtures)
@pytest.fixture(scope="module")
def run_a(tiny_unet_factory, images, schedule, tmp_path_factory):
    """A tiny UNet trained STEPS_A steps in one go; saved after N steps, snapshotted after N + M."""
    ckdir = tmp_path_factory.mktemp("run_a")
    model = tiny_unet_factory(seed=0)
    tr = Trainer(model, schedule, checkpoint_dir=str(ckdir), checkpoint_every=10**6, **CFG)
    snaps = {}

    def callback(trainer, step, loss):
        if step == N:
            snaps["saved"] = trainer.save()
        if step == N + M:
            snaps[N + M] = snapshot(trainer)

    tr.fit(images, STEPS_A, log_every=1, callback=callback)
    return tr, snaps


@pytest.fixture(scope="module")
def run_c(tiny_unet_factory, images, schedule, run_a):
    """A new trainer (other initial weights, to show restore overwrites them) resumed at step N."""
    _, snaps = run_a
    model = tiny_unet_factory(seed=1)
    tr = Trainer(model, schedule, checkpoint_dir=None, **CFG)
    step = tr.restore(snaps["saved"])
    tr.fit(images, M, log_every=1)
    return tr, step


def test_loss_decreases_on_the_sample(run_a):
    tr, _ = run_a
    losses = np.array([h["loss"] for h in tr.history])
    assert len(losses) == STEPS_A and tr.step == STEPS_A
    assert np.all(np.isfinite(losses))
    first, last = losses[:10].mean(), losses[-10:].mean()
    assert last < 0.7 * first, (first, last)
    assert [h["step"] for h in tr.history] == list(range(1, STEPS_A + 1))


def test_exact_resume(run_a, run_c):
    """N + M steps in one go == N steps, save, new Trainer, restore, M steps.

    Every random number is a function of (seed, step), so the two computations are the same float32
    operations on the same inputs; on CPU they agree to the last bit. The tolerance (rtol 1e-6,
    atol 1e-7) only allows for a non-deterministic reduction order on other hardware.
    """
    a, snaps = run_a
    c, step = run_c
    assert step == N and c.step == N + M
    assert_same_state(snaps[N + M], snapshot(c))
    # the resumed run also logged the same losses as the straight one, after restoring its history
    la = [h["loss"] for h in a.history[:N + M]]
    lc = [h["loss"] for h in c.history]
    np.testing.assert_allclose(lc, la, rtol=1e-6)
    assert int(c.optimizer.iterations.numpy()) == N + M


def test_checkpoint_contents(run_a):
    _, snaps = run_a
    data = ck.read_npz(snaps["saved"])
    meta = data["meta"]
    assert os.path.basename(snaps["saved"]) == f"ckpt-{N:08d}.npz"
    assert meta["format"] == "ddpm_lib.checkpoint/2" and meta["step"] == N
    assert meta["hparams"]["batch_size"] == 16 and meta["hparams"]["seed"] == 0
    assert len(meta["history"]) == N
    assert {k.split("/")[0] for k in data if k != "meta"} == {"model", "ema", "opt"}


def test_warm_start_continues_and_resumes_exactly(run_a, tiny_unet_factory, images, schedule,
                                                  tmp_path):
    """Exported EMA weights restart a lost run: both networks take them, the step count continues,
    the optimizer is fresh (it counts its own steps 0, 1, ...); a Trainer of another run or one
    already training is refused. Then, as in test_exact_resume: warm start, N steps, save, new
    Trainer, restore, M steps == warm start, N + M steps in one go (a checkpoint holds both counts).
    """
    a, _ = run_a
    path = a.export(tmp_path / "w.npz", dtype="float32")
    straight = Trainer(tiny_unet_factory(seed=1), schedule, checkpoint_dir=str(tmp_path),
                       checkpoint_every=10**6, **CFG)
    assert straight.warm_start(str(path)) == STEPS_A == straight.step
    for ema, w, v in zip(a.ema_model.get_weights(), straight.model.get_weights(),
                         straight.ema_model.get_weights()):
        np.testing.assert_array_equal(w, ema)
        np.testing.assert_array_equal(v, ema)
    assert int(straight.optimizer.iterations.numpy()) == 0
    other = Trainer(tiny_unet_factory(seed=1), schedule, checkpoint_dir=None, **dict(CFG, batch_size=8))
    with pytest.raises(ValueError, match="batch_size: saved 16, given 8"):
        other.warm_start(str(path))
    saved = {}

    def callback(trainer, step, loss):
        if step == STEPS_A + N:
            saved["path"] = trainer.save()
    straight.fit(images, N + M, log_every=1, callback=callback)
    assert [h["step"] for h in straight.history] == list(range(1, STEPS_A + N + M + 1))  # goes on
    assert straight.history[:STEPS_A] == a.history[:STEPS_A]
    with pytest.raises(ValueError, match=f"step 0; this one is at step {STEPS_A + N + M}"):
        straight.warm_start(str(path))
    resumed = Trainer(tiny_unet_factory(seed=2), schedule, checkpoint_dir=None, **CFG)
    assert resumed.restore(saved["path"]) == STEPS_A + N
    resumed.fit(images, M, log_every=1)
    assert resumed.step == straight.step == STEPS_A + N + M
    assert int(resumed.optimizer.iterations.numpy()) == N + M     # the fresh optimizer's count
    assert_same_state(snapshot(straight), snapshot(resumed))
    np.testing.assert_allclose([h["loss"] for h in resumed.history],
                               [h["loss"] for h in straight.history], rtol=1e-6)


# ------------------------------------------------------- bookkeeping with TinyEps
def tiny_trainer(tiny_eps_cls, schedule, seed=0, width=8, init_seed=0, **kw):
    keras.utils.set_random_seed(init_seed)
    cfg = dict(CFG, seed=seed)
    cfg.update(kw)
    return Trainer(tiny_eps_cls(width=width), schedule, **cfg)


def test_determinism_with_a_seed(tiny_eps_cls, images, schedule):
    runs = []
    for seed in (0, 0, 1):
        tr = tiny_trainer(tiny_eps_cls, schedule, seed=seed)
        tr.fit(images, 4, log_every=1)
        runs.append((np.array([h["loss"] for h in tr.history]), snapshot(tr)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert_same_state(runs[0][1], runs[1][1], rtol=0, atol=0)
    # another seed draws other t and eps: other losses and weights
    assert np.max(np.abs(runs[0][0] - runs[2][0])) > 1e-4


def test_ema_update_formula(tiny_eps_cls, images, schedule):
    """ema <- d ema + (1 - d) w with d = min(ema_decay, (1 + k) / (10 + k)), k = optimizer steps."""
    tr = tiny_trainer(tiny_eps_cls, schedule, ema_decay=0.9)
    ema = [v.numpy().astype(np.float64) for v in tr.model.weights]      # EMA starts at the weights
    for v, e in zip(tr.ema_model.weights, ema):
        np.testing.assert_array_equal(v.numpy(), e)
    for k in (1, 2, 3):
        tr.fit(images, 1)
        d = min(0.9, (1 + k) / (10 + k))
        ema = [d * e + (1 - d) * w.numpy() for e, w in zip(ema, tr.model.weights)]
        for v, e in zip(tr.ema_model.weights, ema):
            np.testing.assert_allclose(v.numpy(), e, rtol=1e-6, atol=1e-7)
    assert tr.step == 3


def test_validation_loss(tiny_eps_cls, images, schedule):
    tr = tiny_trainer(tiny_eps_cls, schedule)
    with pytest.raises(ValueError, match="no validation images"):
        tr.validation_loss()
    hist = tr.fit(images[:1000], 4, val_images=images[1000:1100], val_every=2, log_every=1)
    assert [("val_loss" in h) for h in hist] == [False, True, False, True]
    assert all(np.isfinite(h["val_loss"]) and np.isfinite(h["val_loss_ema"]) for h in hist[1::2])
    v = tr.validation_loss()
    assert v == tr.validation_loss() and set(v) == {"val_loss", "val_loss_ema"}


@pytest.fixture
def saved_tiny(tiny_eps_cls, schedule, tmp_path):
    """A TinyEps trainer's checkpoint (step 0: no training needed to test restore's checks)."""
    tr = tiny_trainer(tiny_eps_cls, schedule, checkpoint_dir=str(tmp_path))
    return tr.save()


@pytest.mark.parametrize("change, match", [
    (dict(batch_size=8), "batch_size: saved 16, given 8"),
    (dict(seed=1), "seed: saved 0, given 1"),
    (dict(image_size=16), "image_size: saved 32, given 16"),
    (dict(mode="resize"), "mode: saved 'pad', given 'resize'"),
    (dict(width=16), "holds a run with another configuration .model_config: saved"),
    (dict(schedule=linear_schedule(100, beta_end=0.03)), "schedule: saved"),
])
def test_restore_refuses_another_configuration(tiny_eps_cls, schedule, saved_tiny, change, match):
    change = dict(change)
    sched = change.pop("schedule", schedule)
    tr = tiny_trainer(tiny_eps_cls, sched, **change)
    with pytest.raises(ValueError, match=match):
        tr.restore(saved_tiny)
    assert tr.step == 0


def test_restore_other_files(tiny_eps_cls, schedule, saved_tiny, tmp_path, tiny_unet):
    tr = tiny_trainer(tiny_eps_cls, schedule, checkpoint_dir=str(tmp_path / "empty"))
    assert tr.restore() == 0                                   # nothing to resume from
    assert tr.restore(saved_tiny) == 0                         # step-0 checkpoint of the same config
    weights = ck.export_weights(tiny_unet, schedule, tmp_path / "w.npz")
    with pytest.raises(ValueError, match="not a ddpm_lib training checkpoint"):
        tr.restore(weights)
    bad = tmp_path / "ckpt-00000009.npz"
    bad.write_bytes(open(saved_tiny, "rb").read()[:500])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        tr.restore(str(bad))


def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(tiny_eps_cls, images, schedule, tmp_path):
    tr = tiny_trainer(tiny_eps_cls, schedule, checkpoint_dir=str(tmp_path), checkpoint_every=1,
                      keep_checkpoints=2)
    tr.fit(images, 3)
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [2, 3]        # pruned to the newest 2
    before = {p: open(p, "rb").read() for _, p in ck.list_checkpoints(tmp_path)}
    w = tr.model.weights[0]
    w.assign(tf.fill(w.shape, float("nan")))                              # poison the weights
    with pytest.raises(TrainingDivergedError, match="ckpt-00000003.npz") as info:
        tr.fit(images, 5)
    assert "loss became nan at step 4" in str(info.value)
    assert isinstance(info.value, FloatingPointError)
    assert tr.step == 3
    after = {p: open(p, "rb").read() for _, p in ck.list_checkpoints(tmp_path)}
    assert after == before                                                 # nothing overwritten
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    # and training can resume from it
    fresh = tiny_trainer(tiny_eps_cls, schedule, checkpoint_dir=str(tmp_path))
    assert fresh.restore() == 3
    assert all(np.all(np.isfinite(v.numpy())) for v in fresh.model.weights)


def test_huge_learning_rate_diverges(tiny_eps_cls, images, schedule, tmp_path):
    tr = tiny_trainer(tiny_eps_cls, schedule, learning_rate=1e30, grad_clip=None,
                      checkpoint_dir=str(tmp_path), checkpoint_every=1)
    with pytest.raises(TrainingDivergedError, match="Lower the learning rate"):
        tr.fit(images, 20)
    assert tr.step < 20
    good = ck.list_checkpoints(tmp_path)
    assert good and good[-1][0] == tr.step
    assert ck.read_npz(good[-1][1])["meta"]["step"] == tr.step


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=True), "batch_size must be a positive integer"),
    (dict(batch_size=16.0), "batch_size must be a positive integer"),
    (dict(checkpoint_every=0), "checkpoint_every must be a positive integer"),
    (dict(checkpoint_every=np.int64(-2)), "checkpoint_every must be a positive integer"),
    (dict(keep_checkpoints=-1), "keep_checkpoints must be a non-negative integer"),
    (dict(seed=1.5), "seed must be a non-negative integer"),
    (dict(learning_rate=0.0), "learning_rate must be a finite number > 0"),
    (dict(learning_rate=float("nan")), "learning_rate must be a finite number"),
    (dict(learning_rate="1e-3"), "learning_rate must be a finite number"),
    (dict(weight_decay=-1e-4), "weight_decay must be a finite number >= 0"),
    (dict(warmup_steps=-5), "warmup_steps must be a non-negative integer"),
    (dict(warmup_steps=10.0), "warmup_steps must be a non-negative integer"),
    (dict(grad_clip=0.0), r"grad_clip \(or None\) must be a finite number > 0"),
    (dict(ema_decay=1.0), r"ema_decay must be a finite number in \[0, 1\)"),
    (dict(ema_decay=-0.1), r"ema_decay must be a finite number in \[0, 1\)"),
    (dict(p_uncond=1.0), r"p_uncond must be a finite number in \[0, 1\)"),
    (dict(image_size=0), "image_size must be a positive integer"),
    (dict(image_size=32.0), "image_size must be a positive integer"),
    (dict(mode="crop"), 'mode must be "pad" or "resize"'),
    (dict(mixed_precision="float16"), "mixed_precision must be"),
    (dict(mixed_precision="mixed_bfloat16"), "build the model with dtype='mixed_bfloat16'"),
])
def test_bad_trainer_arguments(tiny_eps_cls, schedule, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Trainer(tiny_eps_cls(), schedule, **dict(CFG, **kwargs))


def test_bad_fit_and_save_arguments(tiny_eps_cls, images, schedule):
    tr = tiny_trainer(tiny_eps_cls, schedule)
    for steps in (-1, 2.0, True):
        with pytest.raises(ValueError, match="steps must be a non-negative integer"):
            tr.fit(images, steps)
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="log_every must be a positive integer"):
            tr.fit(images, 1, log_every=bad)
    with pytest.raises(ValueError, match="uint8"):
        tr.fit(images.astype(np.int32), 1)
    with pytest.raises(ValueError, match="no checkpoint_dir"):
        tr.save()
    assert tr.fit(images, 0) == [] and tr.step == 0


def test_linear_warmup():
    lr = LinearWarmup(1e-3, 10)
    got = [float(lr(s)) for s in (0, 4, 9, 10, 1000)]
    np.testing.assert_allclose(got, [1e-4, 5e-4, 1e-3, 1e-3, 1e-3], rtol=1e-6)
    assert LinearWarmup.from_config(lr.get_config()).get_config() == {"peak": 1e-3, "warmup_steps": 10}


# ----------------------------------------------------------------- mixed precision
def test_mixed_bfloat16_smoke(tiny_unet_factory, images, schedule):
    model = tiny_unet_factory(dtype="mixed_bfloat16")
    tr = Trainer(model, schedule, **CFG)
    assert tr.mixed_precision == "mixed_bfloat16"            # taken from the model's policy
    tr.fit(images, 2, log_every=1)
    losses = [h["loss"] for h in tr.history]
    assert len(losses) == 2 and all(np.isfinite(losses))
    out = model(tf.zeros([2, 32, 32, 1]), tf.constant([1, 2]))
    assert out.dtype == tf.float32 and np.all(np.isfinite(out.numpy()))
    assert all(v.dtype == "float32" and np.all(np.isfinite(v.numpy())) for v in tr.ema_model.weights)


# ------------------------------------------------------------------ tf.distribute
MIRRORED_SCRIPT = r'''
import json
import tensorflow as tf
# two logical CPUs: must happen before anything initialises TensorFlow's devices
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
import keras
from keras import layers
from ddpm_lib import Trainer, linear_schedule
from ddpm_lib.data import load_sample

# TINY_EPS_SOURCE

images = load_sample()[0][:256]
schedule = linear_schedule(100)


def run(strategy, clip, steps=5):
    keras.utils.set_random_seed(0)                    # same initial weights in both runs
    tr = Trainer(TinyEps(width=16), schedule, batch_size=16, learning_rate=1e-3, grad_clip=clip,
                 seed=0, strategy=strategy, verbose=False)
    tr.fit(images, steps, log_every=1)
    return tr


def maxdiff(xs, ys):
    return max(float(np.max(np.abs(x.numpy() - y.numpy()))) for x, y in zip(xs, ys))


out = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}
for clip in (None, 0.1):
    a = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), clip)
    b = run(None, clip)
    out[str(clip)] = dict(
        replicas=a.strategy.num_replicas_in_sync,
        loss_mirrored=[h["loss"] for h in a.history], loss_single=[h["loss"] for h in b.history],
        w_diff=maxdiff(a.model.weights, b.model.weights),
        ema_diff=maxdiff(a.ema_model.weights, b.ema_model.weights))
try:
    Trainer(TinyEps(), schedule, batch_size=15, verbose=False,
            strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    out["odd_batch"] = "accepted"
except ValueError as e:
    out["odd_batch"] = str(e)
print("RESULT " + json.dumps(out))
'''


def _mirrored_script(tiny_eps_cls):
    return MIRRORED_SCRIPT.replace("# TINY_EPS_SOURCE", inspect.getsource(tiny_eps_cls))


@pytest.fixture(scope="module")
def mirrored(tiny_eps_cls, python_runner):
    proc = python_runner(["-c", _mirrored_script(tiny_eps_cls)])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_mirrored_strategy_matches_single_device(mirrored):
    """Two logical CPUs, global batch 16 (8 a replica) vs one device, same seed, grad_clip=None.

    The replicas' gradients are summed by an all-reduce instead of inside one batch reduction, so
    they differ by float32 rounding (~1e-7 relative); Adam turns that into weight differences of
    ~1e-8 after 5 steps here (measured), ~1e-6 with a tiny UNet. We allow atol 1e-5 on weights and
    rtol 1e-5 on the losses: far below the effect of a real discrepancy (e.g. the per-replica
    clipping below moves weights by ~1e-3, a wrong loss scaling by ~lr = 1e-3 a step).
    """
    assert mirrored["logical_cpus"] == 2
    r = mirrored["None"]
    assert r["replicas"] == 2
    np.testing.assert_allclose(r["loss_mirrored"], r["loss_single"], rtol=1e-5)
    assert r["w_diff"] < 1e-5 and r["ema_diff"] < 1e-5, r
    assert "divisible by the 2 replicas" in mirrored["odd_batch"]


def test_mirrored_strategy_with_grad_clip_matches_single_device(mirrored):
    r = mirrored["0.1"]
    np.testing.assert_allclose(r["loss_mirrored"], r["loss_single"], rtol=1e-5)
    assert r["w_diff"] < 1e-5 and r["ema_diff"] < 1e-5, r


# ------------------------------------------------- Algorithm 1 as public functions
def test_draw_t_eps_is_stateless_and_in_range():
    x0 = tf.zeros([64, 8, 8, 1])
    t, eps = draw_t_eps(x0, 3, seed=0, timesteps=100)
    assert t.dtype == tf.int32 and t.shape == (64,) and eps.shape == x0.shape
    assert 0 <= int(tf.reduce_min(t)) and int(tf.reduce_max(t)) < 100
    t2, eps2 = draw_t_eps(x0, tf.constant(3, tf.int64), seed=0, timesteps=100)
    np.testing.assert_array_equal(t.numpy(), t2.numpy())
    np.testing.assert_array_equal(eps.numpy(), eps2.numpy())
    for other in (dict(step=4, seed=0), dict(step=3, seed=1)):
        t3, eps3 = draw_t_eps(x0, other["step"], seed=other["seed"], timesteps=100)
        assert np.any(t3.numpy() != t.numpy()) and np.max(np.abs(eps3.numpy() - eps.numpy())) > 0.1


def test_train_step_loss_is_l_simple(tiny_eps_cls, schedule):
    """The loss train_step returns is eq. (14) at the weights before the step, in float64."""
    model = tiny_eps_cls()
    x0 = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 1)).astype(np.float32)
    t, eps = draw_t_eps(x0, 0, seed=0, timesteps=schedule.timesteps)
    ab = schedule.alpha_bars[t.numpy()][:, None, None, None]
    x_t = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps.numpy()
    eps_pred = model(x_t.astype(np.float32), t).numpy().astype(np.float64)
    ref = np.mean((eps.numpy() - eps_pred) ** 2)
    before = [w.numpy().copy() for w in model.trainable_variables]
    opt = keras.optimizers.AdamW(1e-3)
    loss = train_step(model, opt, schedule, x0, t, eps)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    assert any(np.max(np.abs(a - w.numpy())) > 0 for a, w in zip(before, model.trainable_variables))


def test_trainer_runs_the_public_algorithm1(tiny_eps_cls, images, schedule):
    """Trainer.fit for two steps == make_dataset + draw_t_eps + train_step + ema_update by hand,
    with the trainer's optimizer and clipping: the same weights, bit for bit."""
    tr = tiny_trainer(tiny_eps_cls, schedule, seed=3)
    model = tiny_eps_cls.from_config(tr.model.get_config())
    model(tf.zeros([1, 32, 32, 1]), tf.zeros([1], tf.int32))
    model.set_weights(tr.model.get_weights())
    ema = tiny_eps_cls.from_config(dict(tr.model.get_config(), name="ema_by_hand"))
    ema(tf.zeros([1, 32, 32, 1]), tf.zeros([1], tf.int32))
    ema.set_weights(tr.model.get_weights())
    opt = keras.optimizers.AdamW(learning_rate=tr.hparams["learning_rate"],
                                 weight_decay=tr.hparams["weight_decay"])
    opt.build(model.trainable_variables)
    clip = lambda g: tf.clip_by_global_norm(g, tr.grad_clip)[0]      # noqa: E731

    @tf.function
    def by_hand(x0, step):
        t, eps = draw_t_eps(x0, step, tr.seed, schedule.timesteps)
        loss = train_step(model, opt, schedule, x0, t, eps, global_batch_size=tr.batch_size, clip=clip)
        ema_update(ema.weights, model.weights, tr.ema_decay, opt.iterations)
        return loss

    ds = make_dataset(images, tr.batch_size, tr.image_size, tr.mode, seed=tr.seed)
    for step, x0 in enumerate(ds.take(2)):
        by_hand(x0, tf.constant(step, tf.int64))
    tr.fit(images, 2)
    for a, b in zip(tr.model.weights + tr.ema_model.weights, model.weights + ema.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_ema_update_function():
    e, w = keras.Variable(np.float32([1.0, 2.0])), keras.Variable(np.float32([3.0, -2.0]))
    ema_update([e], [w], 0.999, 5)                    # d = min(0.999, 6 / 15) = 0.4
    np.testing.assert_allclose(e.numpy(), [0.4 * 1 + 0.6 * 3, 0.4 * 2 - 0.6 * 2], rtol=1e-6)
