"""Class-conditional HoUNet and classifier-free guidance (Ho & Salimans, 2022): the null class,
the zero-initialized class embedding, label dropout, guided eps in every sampler, bad inputs.

Kept cheap: every network is the smallest HoUNet (8x8 images, one level, no attention but the
middle one), the sampling loops run eagerly wherever that proves the property, and a compiled
``sample`` (one trace of the network each) only where the compiled path itself is tested."""
import json
import re
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib import reference, sampler
from ddpm_lib.checkpoint import export_weights, load_weights, saved_model_config, variable_keys
from ddpm_lib.data import load_sample, preprocess, to_uint8
from ddpm_lib.cli import main
from ddpm_lib.ho_unet import HoUNet, copy_unconditional_weights
from ddpm_lib.sampler import ddim_loop, ddpm_loop, dpm_solver_loop, guided_eps, sample
from ddpm_lib.schedule import linear_schedule
from ddpm_lib.trainer import Trainer, drop_labels, train_step

K = 3                                  # classes of the tiny models; label K is the null class
S = 8                                  # image size of the tiny models
ARCH = dict(image_size=S, base_channels=8, channel_mult=(1,), num_res_blocks=1,
            attn_resolutions=(), dropout=0.0, groups=4)


def perturbed(model, seed=0, scale=0.05):
    """The model with every weight moved by noise (the zero-initialized layers, too)."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + scale * rng.standard_normal(w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def tiny(num_classes=K, seed=0, build=True, **kw):
    keras.utils.set_random_seed(seed)
    model = HoUNet(**dict(ARCH, **kw), num_classes=num_classes)
    return model.build_for() if build else model


@pytest.fixture(scope="module")
def cond():
    return perturbed(tiny())


@pytest.fixture(scope="module")
def uncond():
    return tiny(None)


@pytest.fixture(scope="module")
def schedule():
    return linear_schedule(20)


X = tf.random.stateless_normal([4, S, S, 1], seed=[0, 1])
T = tf.constant([0, 5, 10, 19])
Y = tf.constant([0, 1, 2, 1])


# ------------------------------------------------------------------------------ the network
def test_unconditional_network_is_unchanged(uncond):
    """num_classes=None: no class embedding, the config and weight names of older files."""
    u, c = uncond, tiny(K)
    assert "num_classes" not in u.get_config() and u.num_classes is None
    assert c.get_config()["num_classes"] == K
    extra = sorted(set(variable_keys(c)) - set(variable_keys(u)))
    assert extra == ["class_embedding/embeddings"] and set(variable_keys(u)) < set(variable_keys(c))
    emb = c.class_embedding.embeddings.numpy()
    assert emb.shape == (K + 1, 4 * 8) and np.all(emb == 0)          # K labels + null, width 4c
    assert c.count_params() == u.count_params() + (K + 1) * 32


def test_labels_change_the_output_and_none_is_the_null_class(cond):
    out = cond(X, T, Y)
    assert out.shape == X.shape and out.dtype == tf.float32
    other = cond(X, T, tf.constant([2, 0, 1, 0])).numpy()
    assert np.min(np.max(np.abs(other - out.numpy()), axis=(1, 2, 3))) > 1e-4   # every image
    null = cond(X, T, tf.fill([4], K)).numpy()
    np.testing.assert_array_equal(cond(X, T).numpy(), null)
    np.testing.assert_array_equal(cond(X, T, y=None).numpy(), null)
    assert np.max(np.abs(null - out.numpy())) > 1e-4


def test_zero_embedding_starts_at_the_unconditional_model():
    """copy_unconditional_weights: every shared weight copied, the class embedding zero, so the
    conditional eps equals the unconditional eps exactly, for every label and the null class."""
    u = perturbed(tiny(None, seed=1), seed=1)
    c = perturbed(tiny(K, seed=2), seed=2)                  # its embedding is not zero now
    assert copy_unconditional_weights(c, u) is c
    assert np.all(c.class_embedding.embeddings.numpy() == 0)
    ref = u(X, T).numpy()
    assert np.max(np.abs(ref)) > 0.1
    for y in ([0, 0, 0, 0], [1, 2, 0, 3], [K] * 4):
        np.testing.assert_array_equal(c(X, T, tf.constant(y)).numpy(), ref)
    np.testing.assert_array_equal(c(X, T).numpy(), ref)


@pytest.mark.parametrize("which, match", [
    ("both conditional", "unconditional must be an unconditional HoUNet"),
    ("both unconditional", "model must be a class-conditional HoUNet"),
    ("other width", r"same architecture; they differ in base_channels \(8 vs 4\)"),
])
def test_copy_unconditional_weights_refuses(which, match):
    # unbuilt networks: the checks come before any weights are created
    target = tiny(None, build=False) if which == "both unconditional" else tiny(K, build=False)
    source = {"both conditional": lambda: tiny(K, build=False),
              "both unconditional": lambda: tiny(None, build=False),
              "other width": lambda: tiny(None, build=False, base_channels=4)}[which]()
    with pytest.raises(ValueError, match=match):
        copy_unconditional_weights(target, source)
    assert not target.weights and not source.weights


def test_a_file_without_the_scale_loads_with_scale_1(cond, tmp_path):
    """Conditional files written before class_embedding_scale existed used the embedding
    unscaled: load_weights builds them with s = 1, and they compute what they computed."""
    one = tiny(class_embedding_scale=1.0)
    one.set_weights(cond.get_weights())
    path = export_weights(one, linear_schedule(20), tmp_path / "old.npz", dtype="float32")
    data = dict(np.load(path))
    meta = json.loads(str(data["meta"]))
    del meta["model_config"]["class_embedding_scale"]
    data["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **data)
    loaded, _ = load_weights(tmp_path / "old.npz", image_size=S)
    assert loaded.class_embedding_scale == 1.0
    np.testing.assert_array_equal(loaded(X, T, Y).numpy(), one(X, T, Y).numpy())


@pytest.mark.parametrize("scale", [np.float32(2.0), 3])
def test_config_round_trip_of_the_scale(scale):
    model = tiny(class_embedding_scale=scale, build=False)
    config = json.loads(json.dumps(model.get_config()))          # as a weights file stores it
    assert config["class_embedding_scale"] == float(scale)
    assert HoUNet.from_config(config).class_embedding_scale == float(scale)


def test_config_round_trip_and_export(cond, tmp_path):
    clone = HoUNet.from_config(cond.get_config()).build_for()
    clone.set_weights(cond.get_weights())
    np.testing.assert_array_equal(clone(X, T, Y).numpy(), cond(X, T, Y).numpy())
    path = export_weights(cond, linear_schedule(20), tmp_path / "cond.npz", dtype="float32")
    assert "weights/class_embedding/embeddings" in np.load(path).files      # keyed by path
    loaded, schedule = load_weights(path, image_size=S)
    assert isinstance(loaded, HoUNet) and loaded.num_classes == K and schedule.timesteps == 20
    np.testing.assert_array_equal(loaded(X, T, Y).numpy(), cond(X, T, Y).numpy())


@pytest.mark.parametrize("y, match", [
    ([0, 1, 2, K + 1], r"y must be integers in \[0, 3\] \(3 = the null class\); got \[4\]"),
    ([0, -1, 2, 1], r"y must be integers in \[0, 3\].*got \[-1\]"),
    ([0.0, 1.0, 2.0, 1.0], r"of shape \(batch,\) \(cast it"),
    ([[0, 1, 2, 1]], r"of shape \(batch,\).*shape \(1, 4\)"),
    ([0, 1], r"y must have shape \(4,\), the images' batch size; got shape \(2,\)"),
])
def test_bad_labels(cond, y, match):
    with pytest.raises(ValueError, match=match):
        cond(X, T, tf.constant(y))


def test_unconditional_model_refuses_labels(uncond):
    with pytest.raises(ValueError, match=r"unconditional \(num_classes=None\) and takes no labels"):
        uncond(X, T, Y)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes must be a positive integer; got 0"):
        HoUNet(**ARCH, num_classes=0)


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf"), True, "50"])
def test_bad_class_embedding_scale(scale):
    with pytest.raises(ValueError, match="class_embedding_scale must be a finite number"):
        HoUNet(**ARCH, num_classes=K, class_embedding_scale=scale)


def test_the_class_embedding_enters_times_its_scale(cond):
    """temb + s * embedding[y]: the network with scale s and embedding E computes what the one
    with scale 1 and embedding s * E computes (to float32 rounding), and s is in the config."""
    assert cond.class_embedding_scale == 50.0 and cond.get_config()["class_embedding_scale"] == 50.0
    one = tiny(class_embedding_scale=1.0)
    one.set_weights(cond.get_weights())                          # scale 1, embedding E: differs
    assert np.max(np.abs(one(X, T, Y).numpy() - cond(X, T, Y).numpy())) > 1e-3
    one.class_embedding.embeddings.assign(50.0 * cond.class_embedding.embeddings)
    np.testing.assert_allclose(one(X, T, Y).numpy(), cond(X, T, Y).numpy(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ guided eps
class FakeCond:
    """eps(x, t, y) = (y + 1) x + t / 100: a known function of the label; records its calls."""
    num_classes, image_channels = K, 1

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, y=None, training=None):
        self.calls.append((int(x.shape[0]), y is not None))
        y = tf.fill(tf.shape(t), K) if y is None else y
        scale = tf.cast(y + 1, tf.float32)[:, None, None, None]
        return scale * x + tf.cast(t, tf.float32)[:, None, None, None] / 100.0


def fake_eps(x, t, y):
    return (np.asarray(y, np.float64) + 1)[:, None, None, None] * np.asarray(x, np.float64) + \
        np.asarray(t, np.float64)[:, None, None, None] / 100.0


@pytest.mark.parametrize("w", [0.5, 3.0])
def test_guided_eps_is_equation_6_in_one_call(w, f32):
    m = FakeCond()
    got = guided_eps(m, X, T, Y, w).numpy()
    e_y, e_null = fake_eps(X, T, Y), fake_eps(X, T, [K] * 4)
    ref = (1 + w) * e_y - w * e_null                                     # by hand, float64
    f32(got, ref, scale=np.abs((1 + w) * e_y) + np.abs(w * e_null), what="eps~")
    assert m.calls == [(8, True)]                            # one call on [x, x] with [y, null]


def test_guided_eps_without_guidance_or_labels():
    m = FakeCond()
    np.testing.assert_array_equal(guided_eps(m, X, T, Y, 0.0).numpy(),
                                  m(X, T, Y).numpy())           # w = 0: eps(x, t, y)
    np.testing.assert_array_equal(guided_eps(m, X, T).numpy(), m(X, T).numpy())
    assert m.calls == [(4, True), (4, True), (4, False), (4, False)]   # no null half; no y at all


class Guided:
    """An unconditional stand-in that computes eps~ from two *separate* calls of ``model``."""

    def __init__(self, model, labels, w):
        self.model, self.labels, self.w, self.image_channels = model, labels, w, model.image_channels

    def __call__(self, x, t, training=None):
        null = tf.fill(tf.shape(t), self.model.num_classes)
        e_y = self.model(x, t, y=self.labels, training=training)
        if self.w == 0:
            return e_y
        return (1 + self.w) * e_y - self.w * self.model(x, t, y=null, training=training)


LOOPS = {"ddpm": (ddpm_loop, {}), "ddim": (ddim_loop, dict(eta=1.0)),
         "dpm_solver": (dpm_solver_loop, {})}


@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpm_solver"])
def test_every_sampler_uses_the_guided_eps(cond, schedule, method):
    """Each loop with labels=y, guidance=w == the same loop on eps~ computed by hand (eagerly, the
    network itself); w = 0 is plain conditional sampling (bit for bit). sample() hands labels and
    guidance to this loop (compiled, on a stand-in model that is cheap to trace)."""
    loop, kw = LOOPS[method]
    kw = dict(kw, steps=3, seed=3)               # 3 steps: DPM-Solver++ takes a second-order one
    x_T = tf.random.stateless_normal([4, S, S, 1], seed=[3, 0])
    got = {}
    for w in (0.0, 2.0):
        got[w] = loop(cond, schedule, x_T, labels=Y, guidance=w, **kw).numpy()
        ref = loop(Guided(cond, Y, w), schedule, x_T, **kw).numpy()
        if w == 0:
            np.testing.assert_array_equal(got[w], ref)
        else:             # one call on 2 x batch vs two calls: the same numbers up to float32 order
            np.testing.assert_allclose(got[w], ref, rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(got[2.0] - got[0.0])) > 1e-3           # guidance changes the images
    fake = FakeCond()
    compiled = sample(fake, schedule, None, x_T=x_T, method=method, labels=Y, guidance=2.0,
                      **dict(kw, eta=1.0)).numpy()
    np.testing.assert_allclose(compiled, loop(Guided(fake, Y, 2.0), schedule, x_T, **kw).numpy(),
                               rtol=1e-5, atol=1e-5)
    plain = loop(fake, schedule, x_T, labels=Y, **kw).numpy()
    assert np.max(np.abs(compiled - plain)) > 1e-3


def test_conditional_model_without_labels_samples_the_null_class(cond, schedule):
    """Compiled sample() of a conditional model without labels == the loop on eps(x_t, t, null)."""
    x_T = tf.random.stateless_normal([2, S, S, 1], seed=[4, 0])
    kw = dict(steps=3, seed=4)
    got = sample(cond, schedule, None, x_T=x_T, method="ddim", **kw).numpy()
    ref = ddim_loop(Guided(cond, tf.fill([2], K), 0.0), schedule, x_T, **kw).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)      # compiled vs eager
    for y in range(K):                                             # no label is the null class
        other = ddim_loop(cond, schedule, x_T, labels=tf.fill([2], y), **kw).numpy()
        assert np.max(np.abs(got - other)) > 1e-3


def test_labels_are_an_input_not_a_retrace(schedule):
    model = perturbed(tiny(seed=5), seed=5)
    x_T = tf.random.stateless_normal([2, S, S, 1], seed=[0, 0])
    kw = dict(method="ddim", steps=2, seed=0, guidance=1.0)
    a = sample(model, schedule, None, x_T=x_T, labels=[0, 0], **kw)
    b = sample(model, schedule, None, x_T=x_T, labels=[2, 2], **kw)
    assert np.max(np.abs(a.numpy() - b.numpy())) > 1e-3
    fns = list(sampler._CACHE[model].values())
    assert len(fns) == 1 and fns[0].experimental_get_tracing_count() == 1
    # the compiled loop's eps~ is eq. 6 of this network, for the labels of this call
    ref = ddim_loop(Guided(model, tf.constant([2, 2]), 1.0), schedule, x_T, 0, steps=2).numpy()
    np.testing.assert_allclose(b.numpy(), ref, rtol=1e-5, atol=1e-5)
    sample(model, schedule, None, x_T=x_T, labels=[1, 1], **dict(kw, guidance=2.0))
    assert len(sampler._CACHE[model]) == 2                    # guidance is part of the key


@pytest.mark.parametrize("kwargs, match", [
    (dict(labels=[0, 1, 2, K]), r"labels must be integers in \[0, 3\); got \[3\]"),
    (dict(labels=[0, 1, 2, -1]), r"labels must be integers in \[0, 3\); got \[-1\]"),
    (dict(labels=[0.0, 1.0, 2.0, 1.0]), r"labels must be integers in \[0, 3\) of shape \(batch,\)"),
    (dict(labels=[0, 1]), r"labels must have shape \(4,\), the images' batch size"),
    (dict(labels=[[0, 1, 2, 1]]), r"of shape \(batch,\).*shape \(1, 4\)"),
    (dict(labels=[0, 1, 2, 1], guidance=-1.0), "guidance must be a finite number >= 0; got -1.0"),
    (dict(labels=[0, 1, 2, 1], guidance=float("nan")), "guidance must be a finite number; got nan"),
    (dict(labels=[0, 1, 2, 1], guidance=float("inf")), "guidance must be a finite number; got inf"),
    (dict(labels=[0, 1, 2, 1], guidance="2"), "guidance must be a finite number; got '2'"),
    (dict(guidance=1.0), r"guidance=1.0 needs labels"),
])
def test_sample_bad_inputs(cond, schedule, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample(cond, schedule, (4, S, S, 1), method="ddim", steps=2, **kwargs)


def test_sample_refuses_labels_for_an_unconditional_model(uncond, schedule):
    with pytest.raises(ValueError, match=r"labels were given but the model is unconditional \(HoUNet"):
        sample(uncond, schedule, (4, S, S, 1), steps=2, labels=[0, 1, 2, 1])


# -------------------------------------------------------------------------- label dropout
def test_drop_labels_rate_and_reproducibility():
    y = tf.constant(np.arange(100_000) % 10, tf.int32)
    for p in (0.1, 0.2):
        a = drop_labels(y, 7, seed=0, p_uncond=p, null=10).numpy()
        dropped = a == 10
        # a binomial(100000, p) count: 5 standard deviations is about 0.5% of the labels
        assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / y.shape[0]), dropped.mean()
        np.testing.assert_array_equal(a[~dropped], y.numpy()[~dropped])   # the rest unchanged
    a = drop_labels(y, 7, seed=0, p_uncond=0.2, null=10).numpy()
    np.testing.assert_array_equal(drop_labels(y, tf.constant(7, tf.int64), 0, 0.2, 10).numpy(), a)
    for step, seed in ((8, 0), (7, 1)):
        assert np.mean(drop_labels(y, step, seed, 0.2, 10).numpy() != a) > 0.1
    assert np.all(drop_labels(y, 7, 0, 0.0, 10).numpy() == y.numpy())


def test_train_step_with_labels_is_l_simple(cond, schedule):
    model = HoUNet.from_config(dict(cond.get_config(), name="ts")).build_for()
    model.set_weights(cond.get_weights())
    x0 = np.random.default_rng(0).uniform(-1, 1, (4, S, S, 1)).astype(np.float32)
    eps = tf.random.stateless_normal(x0.shape, seed=[1, 2])
    x_t = schedule.q_sample(x0, T, eps)
    ref = float(np.mean((eps.numpy() - model(x_t, T, Y).numpy().astype(np.float64)) ** 2))
    loss = train_step(model, keras.optimizers.AdamW(1e-3), schedule, x0, T, eps, y=Y)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)


# ------------------------------------------------------------------------------ the Trainer
N, M = 3, 2
NULL = 10                              # the null class of the trainers' models (10 classes)
TCFG = dict(batch_size=4, learning_rate=1e-3, seed=0, verbose=False, p_uncond=0.5,
            image_size=S, mode="resize")


def tiny_trainer(schedule, num_classes=10, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return Trainer(HoUNet(**ARCH, num_classes=num_classes), schedule, **dict(TCFG, **kw))


def state(tr):
    return [v.numpy().copy() for v in tr.model.weights + tr.ema_model.weights + tr.optimizer.variables]


@pytest.fixture(scope="module")
def data(sample_images):
    images, labels = sample_images
    return images[:200], labels[:200]


@pytest.fixture(scope="module")
def fine_tuned(schedule, data, tmp_path_factory):
    """An unconditional Trainer's export (its EMA weights moved off their initialization, where
    the last convolution is zero) and a conditional Trainer with p_uncond = 0 fine-tuned from it:
    its eps right after fine_tune_from, then 2 steps of training."""
    images, labels = data
    u = tiny_trainer(schedule, num_classes=None, seed=3)
    perturbed(u.ema_model, seed=3)
    path = u.export(tmp_path_factory.mktemp("fine_tune") / "u.npz", dtype="float32")
    c = tiny_trainer(schedule, seed=4, p_uncond=0.0)
    returned = c.fine_tune_from(str(path))
    x, t = tf.random.stateless_normal([3, S, S, 1], seed=[5, 6]), tf.constant([1, 10, 19])
    y = tf.constant([0, 9, NULL])
    start = dict(returned=returned, step=c.step, ref=u.ema_model(x, t).numpy(),
                 eps=[m(x, t, y).numpy() for m in (c.model, c.ema_model)])
    c.fit(images, 2, labels=labels)
    return SimpleNamespace(path=path, trainer=c, start=start)


def test_conditional_training_resumes_exactly(schedule, data, fine_tuned, tmp_path):
    """N + M steps in one go == N steps, save, restore into a new Trainer, M steps (label drops
    included: they are a function of (seed, step))."""
    images, labels = data
    a = tiny_trainer(schedule, checkpoint_dir=str(tmp_path), checkpoint_every=N)
    saved = {}
    a.fit(images, N + M, labels=labels, log_every=1,
          callback=lambda tr, step, loss: saved.setdefault("path", tr.save()) if step == N else None)
    assert a.hparams["p_uncond"] == 0.5
    c = tiny_trainer(schedule, seed=1)
    assert c.restore(saved["path"]) == N
    c.fit(images, M, labels=labels, log_every=1)
    for x, y in zip(state(a), state(c)):
        np.testing.assert_array_equal(x, y)
    assert [h["loss"] for h in c.history] == [h["loss"] for h in a.history]
    # The drops enter training: an embedding row changes only if its label reached the model
    # (a zero row with a zero gradient stays zero under AdamW). The class embedding starts at
    # zero in both runs; p_uncond = 0.5 trains the null class and the labels seen, p_uncond = 0
    # (the fine-tuned run) the labels seen but never the null class.
    for tr, p_uncond, null_trained in ((a, 0.5, True), (fine_tuned.trainer, 0.0, False)):
        assert tr.p_uncond == p_uncond and tr.step > 0
        for emb in (tr.model.class_embedding.embeddings, tr.ema_model.class_embedding.embeddings):
            emb = emb.numpy()
            assert np.any(emb[:NULL] != 0), f"p_uncond={p_uncond}: no label was trained"
            assert np.any(emb[NULL] != 0) == null_trained, f"p_uncond={p_uncond}: null class"


def test_fit_checks_the_labels(schedule, data, tiny_eps_cls):
    images, labels = data
    tr = tiny_trainer(schedule)
    for kwargs, match in ((dict(), "the model is class-conditional \\(num_classes=10\\); pass labels"),
                          (dict(labels=labels[:10]), r"labels must have shape \(200,\)"),
                          (dict(labels=labels.astype(np.float32)), "labels must be integers"),
                          (dict(labels=np.full(200, 10)), r"labels must be integers in \[0, 10\)"),
                          (dict(labels=labels, val_images=images), "pass val_labels")):
        with pytest.raises(ValueError, match=match):
            tr.fit(images, 1, **kwargs)
    assert tr.step == 0 and tr._train_fn is None                    # refused before any work
    keras.utils.set_random_seed(0)
    plain = Trainer(tiny_eps_cls(), schedule, **dict(TCFG))
    with pytest.raises(ValueError, match="labels were given but the model is unconditional"):
        plain.fit(images, 1, labels=labels)
    with pytest.raises(ValueError, match=r"p_uncond must be a finite number in \[0, 1\); got 1.0"):
        tiny_trainer(schedule, p_uncond=1.0)


def test_fine_tune_from_an_unconditional_export(schedule, data, fine_tuned):
    images, labels = data
    start, c, path = fine_tuned.start, fine_tuned.trainer, fine_tuned.path
    assert start["returned"] is None and start["step"] == 0
    assert np.max(np.abs(start["ref"])) > 0.1
    for eps in start["eps"]:                      # the model and its EMA, labels 0, 9 and null
        np.testing.assert_array_equal(eps, start["ref"])
    assert [h["step"] for h in c.history][-1] == 2
    # the validation loss of a conditional model is that of eps(x_t, t, y) with the given labels
    losses = []
    for y in (labels[:8], (labels[:8] + 1) % 10):
        c.fit(images, 0, labels=labels, val_images=images[:8], val_labels=y)
        losses.append(c.validation_loss()["val_loss"])
    assert np.all(np.isfinite(losses)) and losses[0] != losses[1]
    with pytest.raises(ValueError, match="needs a Trainer at step 0; this one is at step 2"):
        c.fine_tune_from(str(path))
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        tiny_trainer(schedule, num_classes=None).fine_tune_from(str(path))
    with pytest.raises(ValueError, match="schedule: saved"):
        tiny_trainer(linear_schedule(30)).fine_tune_from(str(path))
    keras.utils.set_random_seed(0)
    wide = Trainer(HoUNet(**dict(ARCH, base_channels=4), num_classes=10), schedule, **TCFG)
    with pytest.raises(ValueError, match=r"differ in base_channels \(4 vs 8\)"):
        wide.fine_tune_from(str(path))


# -------------------------------------------------------------------------------- CLI, reference
CLI_ARCH = ["--data", "sample", "--base-channels", "8", "--channel-mult", "1", "--groups", "4",
            "--num-res-blocks", "1", "--attn-resolutions", "32", "--timesteps", "20",
            "--batch-size", "4", "--quiet", "--log-every", "1"]


def test_cli_fine_tunes_a_conditional_model(tmp_path, capsys):
    """an unconditional run exports its (initial) weights; `train --conditional --init-weights`
    starts a conditional run from them at step 0 with the labels of the data."""
    assert main(["train", "--checkpoint-dir", str(tmp_path / "u"), "--steps", "0", *CLI_ARCH,
                 "--export", str(tmp_path / "u.npz")]) == 0
    assert main(["train", "--checkpoint-dir", str(tmp_path / "c"), "--steps", "2", *CLI_ARCH,
                 "--conditional", "--p-uncond", "0.2", "--init-weights", str(tmp_path / "u.npz"),
                 "--seed", "1", "--export", str(tmp_path / "c.npz")]) == 0
    out = capsys.readouterr().out
    assert "fine-tuning from the unconditional weights" in out and "step 2" in out
    cfg = json.loads((tmp_path / "c" / "train_config.json").read_text())
    assert cfg["num_classes"] == 10 and cfg["p_uncond"] == 0.2
    assert json.loads((tmp_path / "u" / "train_config.json").read_text())["num_classes"] is None
    model, _ = load_weights(tmp_path / "c.npz")
    assert model.num_classes == 10
    # resuming with another p_uncond is another run
    assert main(["train", "--checkpoint-dir", str(tmp_path / "c"), "--steps", "3", *CLI_ARCH,
                 "--conditional", "--p-uncond", "0.3", "--seed", "1"]) == 2
    assert "--p-uncond: saved 0.2, given 0.3" in capsys.readouterr().err
    # the scale is recorded; a run recorded before the scale existed resumes with s = 1
    assert cfg["class_embedding_scale"] == 50.0
    old_config = {k: v for k, v in load_weights(tmp_path / "c.npz")[0].get_config().items()
                  if k != "class_embedding_scale"}
    assert saved_model_config(old_config)["class_embedding_scale"] == 1.0
    assert "class_embedding_scale" not in saved_model_config(dict(old_config, num_classes=None))
    # sample --labels --guidance: the images of sample(labels=, guidance=), labels repeated to --n
    assert main(["sample", "--weights", str(tmp_path / "c.npz"), "--n", "4", "--labels", "0,9",
                 "--guidance", "2", "--method", "ddim", "--steps", "2", "--seed", "1",
                 "--out", str(tmp_path / "x.npz")]) == 0
    ref = sample(model, linear_schedule(20), (4, 32, 32, 1), method="ddim", steps=2, seed=1,
                 labels=[0, 9, 0, 9], guidance=2.0)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npz")["images"], to_uint8(ref.numpy()))
    capsys.readouterr()
    for weights, extra, message in (
            ("c.npz", ["--labels", "0,10"], r"--labels must be integers in [0, 10); got [10]."),
            ("c.npz", ["--guidance", "1"], "--guidance 1.0 needs --labels (classifier-free "
                                           "guidance steers towards a class)."),
            ("c.npz", ["--labels", "1", "--guidance", "-1"],
             "--guidance must be a finite number >= 0; got -1.0."),
            ("u.npz", ["--labels", "1"], "--labels needs a class-conditional model (train "
                                         "--conditional); this one is unconditional.")):
        assert main(["sample", "--weights", str(tmp_path / weights), "--n", "2", "--steps", "2",
                     "--out", str(tmp_path / "y.png"), *extra]) == 2
        assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize("extra, message", [
    (["--conditional", "--arch", "seed"], "--conditional needs --arch ho (HoUNet); got --arch seed."),
    (["--conditional", "--p-uncond", "1"], r"--p-uncond must be a finite number in [0, 1); got 1.0."),
])
def test_cli_bad_conditional_flags(tmp_path, capsys, extra, message):
    assert main(["train", "--checkpoint-dir", str(tmp_path / "r"), "--steps", "1", "--data",
                 "sample", *extra]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


# The shipped model's L_simple with the true label over that with the null class: measured 0.669
# at t = 701 (0.891 averaged over t = 501, 701 and 901, where the scale-1 model of an earlier
# fine-tune, which did not follow its labels, gave 0.996).
LABEL_GAIN = 0.85


def test_load_reference_conditional():
    """The shipped class-conditional HoUNet(num_classes=10) loads and uses its labels: on 100
    shipped sample images (10 per class) noised to paper t = 701, its eps with the true label has
    a lower L_simple than with the null class (by a third when written), and the null class lower
    than a wrong label (the next class)."""
    assert reference.REFERENCE_MODELS["conditional"] == "fashion_mnist_ho_unet_cond.npz"
    model, schedule = reference.load_reference("conditional")
    assert isinstance(model, HoUNet) and model.num_classes == 10 and schedule.timesteps == 1000
    images, labels = load_sample()
    pick = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(10)])
    x0 = tf.constant(preprocess(images[pick]))
    y = labels[pick].astype(np.int32)
    t = tf.fill([len(pick)], 700)
    eps = tf.random.stateless_normal(x0.shape, seed=[700, 0])
    x_t = schedule.q_sample(x0, t, eps)
    loss = {}
    for name, yy in (("true", y), ("null", np.full_like(y, 10)), ("wrong", (y + 1) % 10)):
        pred = model(x_t, t, y=tf.constant(yy), training=False)
        loss[name] = float(tf.reduce_mean((eps - pred) ** 2))
    assert loss["true"] < LABEL_GAIN * loss["null"] and loss["null"] < loss["wrong"], loss


# ------------------------------------------------- exact scores: a Gaussian mixture's classes
def toy_mixture():
    from ddpm_lib.mixture import GaussianMixture
    return GaussianMixture(weights=[0.5, 0.3, 0.2], means=[[-1.0, -0.4], [0.9, 0.5], [0.1, 1.1]],
                           covs=[[[0.05, 0.03], [0.03, 0.04]], [[0.02, 0.0], [0.0, 0.06]],
                                 [[0.01, 0.0], [0.0, 0.01]]])


def test_mixture_eps_is_the_exact_conditional_and_unconditional_eps():
    from ddpm_lib.mixture import MixtureEps
    mix, sched = toy_mixture(), linear_schedule(1000)
    model = MixtureEps(mix, sched)
    x = mix.diffuse(sched.alpha_bars[299]).sample(6, seed=1)
    t = np.full(6, 299)
    np.testing.assert_array_equal(model(x, t), mix.optimal_eps(sched, x, 299))
    np.testing.assert_array_equal(model(x, t, y=np.full(6, 3)), mix.optimal_eps(sched, x, 299))
    y = np.array([0, 1, 2, 0, 1, 2])
    want = np.stack([mix.component(k).optimal_eps(sched, x[i:i + 1], 299)[0] for i, k in enumerate(y)])
    np.testing.assert_array_equal(model(x, t, y=y), want)
    with pytest.raises(ValueError, match=r"y must be integers in \[0, 3\] \(3 = the null class\)"):
        model(x, t, y=np.full(6, 4))
    with pytest.raises(ValueError, match=r"y must have shape \(6,\), the images' batch size"):
        model(x, t, y=np.zeros(5, int))
    with pytest.raises(ValueError, match=r"t must be code indices in \[0, 1000\)"):
        model(x, np.full(6, 1000))
    with pytest.raises(ValueError, match="one time per call"):
        model(x, np.arange(6))
    with pytest.raises(ValueError, match=r"k must be a component index in \[0, 2\]; got 3."):
        mix.component(3)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guidance_is_classifier_guidance_with_the_implicit_classifier(w):
    """Ho & Salimans' eq. 6 on exact eps: (1 + w) eps(x, y) - w eps(x) equals
    -sqrt(1 - alpha_bar) [grad log q(x_t | y) + w grad log q(y | x_t)], the classifier-guided eps
    (Dhariwal & Nichol 2021) with the Bayes classifier q(y | x_t). Its gradient here is a central
    finite difference of the mixture's log responsibilities (float64)."""
    from ddpm_lib.mixture import MixtureEps
    mix, sched = toy_mixture(), linear_schedule(1000)
    t = 199
    q_t = mix.diffuse(sched.alpha_bars[t])
    x = q_t.sample(8, seed=2)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    guided = guided_eps(MixtureEps(mix, sched), tf.constant(x, tf.float32), tf.fill([8], t),
                        labels=y, guidance=w).numpy()
    h, grad = 1e-5, np.zeros_like(x)
    for j in range(2):
        step = np.zeros(2)
        step[j] = h
        up, down = (np.log(q_t.responsibilities(x + s))[np.arange(8), y] for s in (step, -step))
        grad[:, j] = (up - down) / (2 * h)                           # grad log q(y | x_t)
    score_y = np.stack([mix.diffuse(sched.alpha_bars[t]).component(k).score(x[i:i + 1])[0]
                        for i, k in enumerate(y)])
    want = -np.sqrt(1 - sched.alpha_bars[t]) * (score_y + w * grad)
    np.testing.assert_allclose(guided, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_exact_guidance_sharpens_the_classes():
    """DDIM with exact guided eps: the larger w, the surer the Bayes classifier q(y | x_0) of the
    asked class (the trade-off chapter 11 measures on images)."""
    from ddpm_lib.mixture import MixtureEps
    mix, sched = toy_mixture(), linear_schedule(1000)
    model = MixtureEps(mix, sched)
    x_T = tf.random.stateless_normal((300, 2), seed=[3, 0])
    y = np.arange(300) % 3
    sure = []
    for w in (0.0, 1.0, 4.0):
        x0 = ddim_loop(model, sched, x_T, seed=0, steps=50, labels=y, guidance=w).numpy()
        sure.append(float(mix.responsibilities(x0)[np.arange(300), y].mean()))
    assert sure[0] < sure[1] < sure[2] and sure[2] > 0.99, sure
