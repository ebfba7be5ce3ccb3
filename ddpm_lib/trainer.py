"""Training: Algorithm 1 of Ho et al. (2020), with AdamW, EMA, checkpoints and exact resume.

Algorithm 1 is the two public functions ``draw_t_eps`` (lines 3-4) and ``train_step`` (line 5),
with x_0 ~ q(x_0) (line 2) the batches of ``data.make_dataset``. The :class:`Trainer` is the
machinery around them: the loop, ``ema_update``, logging, checkpoints, ``tf.distribute``,
float16 loss scaling and gradient clipping.

Class-conditional models (``HoUNet(num_classes=K)``) train as in Ho & Salimans' Algorithm 1
("Classifier-Free Diffusion Guidance", 2022): each batch comes with its labels y, and
``drop_labels`` replaces each label by the null class K with probability p_uncond, so one network
learns the conditional eps_theta(x_t, t, y) and the unconditional eps_theta(x_t, t, null).

Every random number is *stateless*: the k-th batch, its times t, its noise eps (and its dropped
labels) are functions of ``(seed, k)`` only. The full state of training is therefore the weights,
the EMA weights, the optimizer variables and the step, exactly what a checkpoint holds, so
training N + M steps in one go and training N, stopping, restoring and training M more give the
same weights.
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import tensorflow as tf
import keras

from . import checkpoint as ckpt_io
from . import validate
from .data import check_images, check_mode, make_dataset, preprocess
from .ho_unet import copy_unconditional_weights
from .losses import simple_loss

__all__ = ["Trainer", "TrainingDivergedError", "LinearWarmup", "draw_t_eps", "drop_labels",
           "train_step", "ema_update"]

# One random stream per quantity: its seed is the run's seed plus this offset (the validation
# draws use the offset alone, so every run is validated on the same t and eps).
T_SEED, EPS_SEED, VALIDATION_SEED, DROP_SEED = 1_000_003, 2_000_003, 3_000_003, 4_000_003


def draw_t_eps(x0, step, seed, timesteps):
    """Lines 3-4 of Algorithm 1 for the batch ``x0`` of global step ``step``: (t, eps).

    Stateless: the same ``(seed, step)`` always gives the same draws. t is a code index
    (0..T-1 is the paper's 1..T). The Trainer calls this in its tf.data pipeline, on the global
    batch, so the draws do not depend on the number of replicas or on XLA.
    """
    b = tf.shape(x0)[0]
    step = tf.cast(step, tf.int64)
    t = tf.random.stateless_uniform(                             # 3: t ~ Uniform({1, ..., T})
        [b], seed=tf.stack([tf.constant(seed + T_SEED, tf.int64), step]),
        minval=0, maxval=timesteps, dtype=tf.int32, alg="philox")
    eps = tf.random.stateless_normal(                            # 4: eps ~ N(0, I)
        tf.shape(x0), seed=tf.stack([tf.constant(seed + EPS_SEED, tf.int64), step]), alg="philox")
    return t, eps


def drop_labels(y, step, seed, p_uncond, null):
    """Ho & Salimans' "c <- null with probability p_uncond" for the labels ``y`` of global step ``step``.

    Each label is replaced by ``null`` (the model's null class K) independently with probability
    ``p_uncond`` (they found 0.1 or 0.2 best). Stateless like ``draw_t_eps``: the same ``(seed, step)``
    drops the same labels. Returns int32 labels.
    """
    step = tf.cast(step, tf.int64)
    u = tf.random.stateless_uniform(tf.shape(y), seed=tf.stack(
        [tf.constant(seed + DROP_SEED, tf.int64), step]), alg="philox")
    return tf.where(u < p_uncond, tf.constant(null, tf.int32), tf.cast(y, tf.int32))


def train_step(model, optimizer, schedule, x0, t, eps, global_batch_size=None, clip=None, y=None):
    """Line 5 of Algorithm 1: one gradient step on L_simple for the batch (x0, t, eps); returns the loss.

    The loss is eq. (14) averaged over the global batch (``global_batch_size``, for
    ``tf.distribute``; ``None``: this batch). ``optimizer.scale_loss`` is float16 loss scaling
    (a no-op for other optimizers); ``clip``, if given, maps the gradients to clipped ones.
    ``y``: the labels (after ``drop_labels``) of a class-conditional model, which then predicts
    eps_theta(x_t, t, y) (Ho & Salimans' Algorithm 1); ``None`` for an unconditional one.
    """
    with tf.GradientTape() as tape:
        x_t = schedule.q_sample(x0, t, eps)                      # 5: sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
        if y is None:
            eps_pred = model(x_t, t, training=True)              # 5: eps_theta(x_t, t)
        else:
            eps_pred = model(x_t, t, y=y, training=True)         # 5: eps_theta(x_t, t, y)
        loss = tf.nn.compute_average_loss(                       # 5: ||eps - eps_theta(x_t, t)||^2
            simple_loss(eps, eps_pred, per_example=True), global_batch_size=global_batch_size)
        scaled = optimizer.scale_loss(loss)
    grads = tape.gradient(scaled, model.trainable_variables)    # 5: its gradient in theta
    if clip is not None:
        grads = clip(grads)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))   # 5: take the step
    return loss


def ema_update(ema_weights, weights, ema_decay, step):
    """theta_ema <- d theta_ema + (1 - d) theta, with d = min(ema_decay, (1 + step) / (10 + step)).

    The warm-up of d (as in TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) makes
    the average useful early in training; ``step`` counts the optimizer's updates so far.
    """
    step = tf.cast(step, tf.float32)
    decay = tf.minimum(ema_decay, (1.0 + step) / (10.0 + step))
    for e, w in zip(ema_weights, weights):
        e.assign(decay * e + (1.0 - decay) * tf.cast(w, e.dtype))


class TrainingDivergedError(FloatingPointError):
    """The loss became nan or inf; the last good checkpoint is left untouched."""


@keras.saving.register_keras_serializable(package="ddpm_lib")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate rising linearly from 0 to ``peak`` over ``warmup_steps``, then constant."""

    def __init__(self, peak, warmup_steps):
        self.peak, self.warmup_steps = float(peak), int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        return self.peak * tf.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


class Trainer:
    """Train a noise-prediction model with L_simple (Algorithm 1).

    Args:
        model: a ``UNet`` (or any Keras model called as ``model(x_t, t)``), built or not.
        schedule: the :class:`~ddpm_lib.schedule.Schedule`.
        batch_size: global batch size (split across replicas under a strategy).
        learning_rate, weight_decay: AdamW's. Keras multiplies the weight decay by the learning
            rate (w -= lr * wd * w each step), tensorflow-addons did not: the default 1e-4 is the
            seed's number in Keras' convention, a very light decay (the seed's tfa 1e-4 at
            lr 1e-3 would be weight_decay=0.1 here). See the book's migration note.
        warmup_steps: linear learning-rate warm-up (Ho et al. use 5000 on CIFAR-10).
        grad_clip: global gradient-norm clip (1.0 in Ho et al.); None disables it.
        ema_decay: decay of the exponential moving average of the weights; the effective decay
            is ``min(ema_decay, (1 + step) / (10 + step))`` so the average is useful early.
        image_size, mode: how images are brought to the network's size (see ``data.preprocess``).
        seed: the one seed of every random number in training.
        checkpoint_dir, checkpoint_every, keep_checkpoints: where, how often and how many.
        jit_compile: compile the train step with XLA (its random streams differ from non-XLA
            ones for the same seed: resume with the same setting).
        mixed_precision: None, ``"mixed_float16"`` or ``"mixed_bfloat16"``; must match the model's
            dtype policy (build it with ``UNet(..., dtype="mixed_bfloat16")``). float16 uses loss
            scaling.
        strategy: a ``tf.distribute`` strategy; the model's weights are created in its scope.
        verbose: show a progress bar.
        p_uncond: for a class-conditional model (``num_classes`` set), the probability that a
            label is replaced by the null class (``drop_labels``; Ho & Salimans found 0.1 or 0.2 best);
            unused by an unconditional model.

    A class-conditional model is trained on ``fit(images, steps, labels=...)``; it can start from
    an unconditional model's exported weights with :meth:`fine_tune_from`.
    """

    def __init__(self, model, schedule, *, batch_size=64, learning_rate=2e-4, weight_decay=1e-4,
                 warmup_steps=0, grad_clip=1.0, ema_decay=0.999, image_size=32, mode="pad",
                 seed=0, checkpoint_dir=None, checkpoint_every=1000, keep_checkpoints=3,
                 jit_compile=False, mixed_precision=None, strategy=None, verbose=True, p_uncond=0.1):
        batch_size = validate.positive_int(batch_size, "batch_size")
        checkpoint_every = validate.positive_int(checkpoint_every, "checkpoint_every")
        if keep_checkpoints is not None:
            keep_checkpoints = validate.non_negative_int(keep_checkpoints, "keep_checkpoints")
        seed = validate.non_negative_int(seed, "seed")
        learning_rate = validate.positive_number(learning_rate, "learning_rate")
        weight_decay = validate.finite_number(weight_decay, "weight_decay", minimum=0)
        warmup_steps = validate.non_negative_int(warmup_steps, "warmup_steps")
        if grad_clip is not None:
            grad_clip = validate.positive_number(grad_clip, "grad_clip (or None)")
        ema_decay = validate.fraction(ema_decay, "ema_decay")
        p_uncond = validate.fraction(p_uncond, "p_uncond")
        image_size = validate.positive_int(image_size, "image_size")
        check_mode(mode)
        if mixed_precision not in (None, "mixed_float16", "mixed_bfloat16"):
            raise ValueError(
                f'mixed_precision must be None, "mixed_float16" or "mixed_bfloat16"; got {mixed_precision!r}.')
        policy = model.dtype_policy.name
        if mixed_precision is not None and policy != mixed_precision:
            raise ValueError(
                f"mixed_precision={mixed_precision!r} but the model's dtype policy is {policy!r}; "
                f"build the model with dtype={mixed_precision!r}, e.g. UNet(dtype={mixed_precision!r}).")
        if mixed_precision is None and policy.startswith("mixed"):
            mixed_precision = policy
        self.model, self.schedule = model, schedule
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by the {replicas} replicas of the strategy.")
        self.batch_size, self.image_size, self.mode = batch_size, image_size, mode
        self.seed, self.verbose = int(seed), verbose
        self.ema_decay, self.jit_compile, self.mixed_precision = ema_decay, jit_compile, mixed_precision
        self.grad_clip = grad_clip
        self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.hparams = dict(batch_size=batch_size, learning_rate=learning_rate,
                            weight_decay=weight_decay, warmup_steps=warmup_steps,
                            grad_clip=grad_clip, ema_decay=ema_decay, image_size=image_size,
                            mode=mode, seed=self.seed)
        self.num_classes = getattr(model, "num_classes", None)   # None: unconditional
        self.p_uncond = p_uncond
        if self.num_classes is not None:
            self.hparams["p_uncond"] = p_uncond

        channels = getattr(model, "image_channels", 1)
        with self.strategy.scope():
            if not model.built or not model.weights:
                model(tf.zeros([1, image_size, image_size, channels]), tf.zeros([1], tf.int32))
            config = dict(model.get_config(), name=f"{model.name}_ema")
            self.ema_model = model.__class__.from_config(config)
            self.ema_model(tf.zeros([1, image_size, image_size, channels]), tf.zeros([1], tf.int32))
            self.ema_model.set_weights(model.get_weights())
            lr = LinearWarmup(learning_rate, warmup_steps) if warmup_steps else learning_rate
            # Clipping is done in _clip_gradients, on the gradient summed over replicas.
            opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)
            if mixed_precision == "mixed_float16":
                opt = keras.optimizers.LossScaleOptimizer(opt)
            opt.build(model.trainable_variables)
            self.optimizer = opt
        self.step = 0
        self.history = []          # one dict per logged step
        self._train_fn = None

    # ----------------------------------------------------------------- the step
    def _replica_step(self, x0, t, eps, y=None):
        return train_step(self.model, self.optimizer, self.schedule, x0, t, eps,
                          global_batch_size=self.batch_size, clip=self._clip_gradients, y=y)

    def _clip_gradients(self, grads):
        """Clip the global norm of the *global* gradient (summed over replicas) to ``grad_clip``.

        Under a strategy the optimizer sums the replicas' gradients itself, so each replica hands
        it 1/replicas of the clipped sum. With float16 loss scaling the gradients are still
        scaled, so the limit is scaled too.
        """
        if self.grad_clip is None:
            return grads
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1:
            grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        limit = tf.constant(self.grad_clip, tf.float32)
        if self.mixed_precision == "mixed_float16":
            limit = limit * tf.cast(self.optimizer.dynamic_scale, tf.float32)
        grads, _ = tf.clip_by_global_norm(grads, limit)
        if replicas > 1:
            grads = [g / replicas for g in grads]
        return grads

    def _make_train_fn(self):
        def step_fn(batch):
            per_replica = self.strategy.run(self._replica_step, args=batch)
            loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            ema_update(self.ema_model.weights, self.model.weights, self.ema_decay,
                       self.optimizer.iterations)
            return loss
        return tf.function(step_fn, jit_compile=self.jit_compile)

    def _dataset(self, images, start_step, labels=None):
        ds = make_dataset(images, self.batch_size, self.image_size, self.mode, seed=self.seed,
                          start_step=start_step, labels=labels)
        if labels is None:
            ds = ds.enumerate(start=start_step).map(              # 2: x0 ~ q(x0), then lines 3-4
                lambda step, x0: (x0, *draw_t_eps(x0, step, self.seed, self.schedule.timesteps)))
        else:                                   # (x0, y) ~ q(x0, y), then y <- null w.p. p_uncond
            ds = ds.enumerate(start=start_step).map(
                lambda step, x0_y: (x0_y[0], *draw_t_eps(x0_y[0], step, self.seed,
                                                         self.schedule.timesteps),
                                    drop_labels(x0_y[1], step, self.seed, self.p_uncond,
                                                self.num_classes)))
        return self.strategy.experimental_distribute_dataset(ds)

    def _check_labels(self, labels, n, name="labels"):
        """``labels`` checked against the model: required by a conditional one, refused otherwise."""
        if self.num_classes is None:
            if labels is not None:
                raise ValueError(f"{name} were given but the model is unconditional (no "
                                 "num_classes); train a class-conditional model, e.g. "
                                 "HoUNet(num_classes=10), or leave the labels out.")
            return None
        if labels is None:
            raise ValueError(f"the model is class-conditional (num_classes={self.num_classes}); "
                             f"pass {name}, one per image.")
        return validate.class_labels(labels, self.num_classes, name=name, batch=n).numpy()

    # ------------------------------------------------------------------ public
    def fit(self, images, steps, val_images=None, val_every=None, log_every=50, callback=None,
            labels=None, val_labels=None):
        """Train for ``steps`` more steps on uint8 ``images`` (N, H, W[, C]); return the history.

        ``labels`` (integers in [0, K), one per image) and ``val_labels`` are required for a
        class-conditional model and refused for an unconditional one; the validation loss of a
        conditional model is that of eps_theta(x_t, t, y) with the true labels.

        ``val_images``: held-out images; every ``val_every`` steps (default: at each checkpoint
        and at the end) the loss on a fixed subset, with fixed t and noise, is logged for the
        model (``val_loss``) and its EMA (``val_loss_ema``).
        ``callback(trainer, step, loss)`` is called after every step.
        Each history record holds ``step``, ``loss`` (mean since the last record) and ``time``:
        seconds since this ``fit`` call began (it restarts at every call, e.g. after a restore,
        and the first record includes the one-off tracing of the train step).
        """
        images = check_images(np.asarray(images))
        steps = validate.non_negative_int(steps, "steps")
        log_every = validate.positive_int(log_every, "log_every")
        labels = self._check_labels(labels, len(images))
        if val_every is not None:
            val_every = validate.positive_int(val_every, "val_every")
        if val_images is not None:
            val_labels = self._check_labels(val_labels, len(val_images), "val_labels")
            self._set_validation(val_images, val_labels)
        val_every = val_every or self.checkpoint_every
        if self._train_fn is None:
            self._train_fn = self._make_train_fn()
        start, end = self.step, self.step + int(steps)
        if steps == 0:
            return self.history
        it = iter(self._dataset(images, start, labels))
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm
            bar = tqdm(total=end, initial=start, desc="training", unit="step", dynamic_ncols=True)
        t0, window = time.perf_counter(), []
        try:
            while self.step < end:
                loss = float(self._train_fn(next(it)))
                if not math.isfinite(loss):
                    last = ckpt_io.latest_checkpoint(self.checkpoint_dir)
                    raise TrainingDivergedError(
                        f"the loss became {loss} at step {self.step + 1}; training stopped and "
                        f"nothing was saved. Last good checkpoint: "
                        f"{os.path.basename(last) if last else 'none'}"
                        f"{' in ' + repr(self.checkpoint_dir) if last else ''}. Lower the learning "
                        "rate (or enable grad_clip) and resume from it with trainer.restore().")
                self.step += 1
                window.append(loss)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}")
                if self.step % log_every == 0 or self.step == end:
                    rec = {"step": self.step, "loss": float(np.mean(window)),
                           "time": time.perf_counter() - t0}
                    window = []
                    if self._val is not None and (self.step % val_every == 0 or self.step == end):
                        rec.update(self.validation_loss())
                    self.history.append(rec)
                if self.checkpoint_dir and (self.step % self.checkpoint_every == 0 or self.step == end):
                    self.save()
                if callback is not None:
                    callback(self, self.step, loss)
        finally:
            if bar is not None:
                bar.close()
        return self.history

    _val = None
    _val_fn = None

    def _set_validation(self, val_images, val_labels=None, n=512):
        x = preprocess(check_images(np.asarray(val_images))[:n], self.image_size, self.mode)
        t = tf.random.stateless_uniform([x.shape[0]], seed=[VALIDATION_SEED, 0], minval=0,
                                        maxval=self.schedule.timesteps, dtype=tf.int32, alg="philox")
        eps = tf.random.stateless_normal(x.shape, seed=[VALIDATION_SEED, 1], alg="philox")
        y = None if val_labels is None else tf.constant(val_labels[:n], tf.int32)
        self._val = (self.schedule.q_sample(x, t, eps), t, eps, y)

    def validation_loss(self):
        """L_simple of the model and of its EMA on the fixed validation set (same t, same eps)."""
        if self._val is None:
            raise ValueError("no validation images; pass val_images to fit() first.")
        x_t, t, eps, y = self._val
        if self._val_fn is None:
            def per_example(model, x, t, eps, y):
                kw = {} if y is None else {"y": y}
                return simple_loss(eps, model(x, t, training=False, **kw), per_example=True)
            self._val_fn = {key: tf.function(lambda x, t, eps, y, m=m: per_example(m, x, t, eps, y))
                            for key, m in (("val_loss", self.model), ("val_loss_ema", self.ema_model))}
        out = {}
        for key, fn in self._val_fn.items():
            b = self.batch_size
            losses = [fn(x_t[i:i + b], t[i:i + b], eps[i:i + b], None if y is None else y[i:i + b])
                      for i in range(0, x_t.shape[0], b)]
            out[key] = float(tf.reduce_mean(tf.concat(losses, 0)))
        return out

    # ------------------------------------------------------------- checkpoints
    def _meta(self):
        return {"step": self.step, "model_config": self.model.get_config(),
                "schedule": ckpt_io.schedule_hash(self.schedule), "hparams": self.hparams,
                "history": self.history}

    def save(self, path=None):
        """Write a checkpoint (atomically) and prune old ones; returns its path."""
        if path is None:
            if not self.checkpoint_dir:
                raise ValueError("no checkpoint_dir was given to the Trainer and no path to save().")
            path = os.path.join(self.checkpoint_dir, f"ckpt-{self.step:08d}.npz")
        ckpt_io.write_checkpoint(path, self._meta(), self.model, self.ema_model, self.optimizer)
        if self.checkpoint_dir and self.keep_checkpoints:
            for _, old in ckpt_io.list_checkpoints(self.checkpoint_dir)[:-self.keep_checkpoints]:
                os.remove(old)
        return path

    def _identity(self):
        """This Trainer's ``_run_identity``, to compare with a file's."""
        return _run_identity(self.hparams, self.model.get_config(), ckpt_io.schedule_hash(self.schedule))

    def restore(self, path=None):
        """Load a checkpoint and return its step (0 when there is none).

        The default ``path`` is the newest checkpoint in ``checkpoint_dir``; if that file is
        corrupt or truncated, a ``UserWarning`` says so and the newest readable one is used.
        The model, the schedule and the data order (batch size, seed, image size, mode) must be
        those of the run that saved it, for an exact resume.
        """
        if path is None:
            path, data = ckpt_io.read_latest_checkpoint(self.checkpoint_dir)
            if path is None:
                return 0
        else:
            data = ckpt_io.read_npz(path)
        ckpt_io.check_checkpoint(path, data)
        meta = data["meta"]
        ckpt_io.check_same_run(_run_identity(meta["hparams"], meta["model_config"], meta["schedule"]),
                               self._identity(), repr(path),
                               advice="an exact resume needs the same model, schedule and data order")
        ckpt_io.assign_checkpoint(path, data, self.model, self.ema_model, self.optimizer)
        self.step = int(meta["step"])
        self.history = list(meta.get("history", []))
        return self.step

    def warm_start(self, path):
        """Start from exported weights when a run's checkpoints are lost; returns the step.

        The network and its EMA both take the weights of ``path`` (a file of :meth:`export`),
        and the step count (hence the data order and the draws of t and eps) and the history
        continue from the step they were exported at. The optimizer starts afresh, so its learning-rate
        warm-up and the EMA's decay warm-up run again: this is *not* an exact resume (use
        :meth:`restore` whenever a checkpoint exists). Only a Trainer at step 0 can be warm-started.
        A float16 file (``export``'s default, as the shipped reference weights) is accepted: the
        weights are then the EMA weights rounded to float16 (11 significant bits), not
        the EMA weights themselves; ``export(path, dtype="float32")`` keeps them exactly.
        """
        if self.step:
            raise ValueError(f"warm_start needs a Trainer at step 0; this one is at step {self.step}.")
        data = ckpt_io.read_npz(path)
        extra = data["meta"].get("extra") or {}
        if "step" not in extra or "hparams" not in extra:
            raise ValueError(f"{path!r} does not record the step and settings it was exported at; "
                             "it was not written by Trainer.export.")
        model, schedule = ckpt_io.load_weights(path, image_size=self.image_size)
        ckpt_io.check_same_run(_run_identity(extra["hparams"], model.get_config(), ckpt_io.schedule_hash(schedule)),
                               self._identity(), repr(path),
                               advice="a warm start needs the same model, schedule and data order")
        weights = model.get_weights()
        self.model.set_weights(weights)
        self.ema_model.set_weights(weights)
        self.step = int(extra["step"])
        self.history = list(extra.get("history", []))
        return self.step

    def fine_tune_from(self, path):
        """Start a class-conditional model from an *unconditional* model's exported weights.

        The cheap way to a classifier-free-guidance model (Ho & Salimans, 2022): the network and
        its EMA take every weight of the unconditional HoUNet in ``path`` (a file of :meth:`export`)
        and a zero class embedding (``ho_unet.copy_unconditional_weights``), so training starts
        from a model that predicts the unconditional eps for every label, the null class
        included. Unlike :meth:`warm_start` this starts a *new* run: the step stays 0 (the data
        order, t, eps and label drops are this Trainer's) and the optimizer starts afresh. The
        file's architecture (but for ``num_classes``) and schedule must be this Trainer's.
        Only a Trainer at step 0 can be fine-tuned from a file.
        """
        if self.step:
            raise ValueError(f"fine_tune_from needs a Trainer at step 0; this one is at step "
                             f"{self.step}.")
        if self.num_classes is None:
            raise ValueError("fine_tune_from needs a class-conditional model (HoUNet(num_classes=K)); "
                             "this Trainer's model is unconditional (use warm_start for the same run).")
        source, schedule = ckpt_io.load_weights(path, image_size=self.image_size)
        ckpt_io.check_same_run({"schedule": ckpt_io.schedule_hash(schedule)},
                               {"schedule": ckpt_io.schedule_hash(self.schedule)}, repr(path),
                               advice="a fine-tune needs the schedule the model was trained with")
        for model in (self.model, self.ema_model):
            copy_unconditional_weights(model, source)

    def export(self, path, dtype="float16"):
        """Save the EMA weights for sampling (``ddpm_lib.checkpoint.load_weights`` reads them)."""
        return ckpt_io.export_weights(self.ema_model, self.schedule, path, dtype=dtype,
                                      extra={"step": self.step, "hparams": self.hparams,
                                             "history": self.history})


def _run_identity(hparams, model_config, schedule_fingerprint):
    """What a checkpoint or export must share with a Trainer to continue its run: the data order
    (batch size, seed, image size and mode), the network and the schedule."""
    return dict({k: hparams.get(k) for k in ("batch_size", "seed", "image_size", "mode")},
                model_config=_arch(json.loads(json.dumps(model_config))), schedule=schedule_fingerprint)


def _arch(config):
    """A model config without its name: what must match for weights to fit (an old file's
    config completed by ``checkpoint.saved_model_config``)."""
    return {k: v for k, v in ckpt_io.saved_model_config(config).items() if k != "name"}
