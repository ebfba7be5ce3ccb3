"""bench/flops.py's analytic FLOP counts against TensorFlow's own count of the traced forward pass.

The independent count: trace ``model(x, t, training=False)`` for one image with ``tf.function``,
and run ``tf.compat.v1.profiler`` (``float_operation``) on the concrete function's graph. The
profiler has no FLOP statistics for ``Einsum`` (Keras' MultiHeadAttention projections and
products, HoUNet's two attention products), so those ops are counted here from their equation
and static shapes (2 x the product of all index sizes, a multiply-add being 2 FLOPs).

Two checks per model:

* exact: the FLOPs of the ops the analytic count models (Conv2D, MatMul and Einsum) equal it;
* total: everything the profiler counts (plus the Einsums) is above the analytic count by at most
  what flops.py deliberately leaves out, the element-wise ops: bias additions, GroupNorm/LayerNorm
  means, variances and scalings, SiLU/GELU products, softmax and residual additions. They grow
  like the width C while the convolutions grow like C^2, so their share is largest for narrow
  networks. Measured (TF 2.21): +1.25% for the reference HoUNet and its small variant, +1.1% for
  the base-32 seed UNet (+0.4% at base 64), +3.8% to +8.4% for the base-8/16 test networks.
  Tolerances: ``WIDE`` (3%) for base width >= 32, ``NARROW`` (10%) below.
"""
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

from flops import ho_unet_flops, unet_flops  # noqa: E402
from ddpm_lib import HoUNet, UNet  # noqa: E402

WIDE, NARROW = 0.03, 0.10     # most profiler total / analytic - 1: the element-wise ops left out
COUNTED_OPS = ("Conv2D", "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")

REFERENCE_HO = dict(image_channels=1, image_size=32, base_channels=32, channel_mult=(1, 2, 2),
                    num_res_blocks=2, attn_resolutions=(16,), dropout=0.0, groups=8)


def einsum_flops(op):
    """2 x the product of the sizes of all indices of a two-operand Einsum op."""
    equation = op.get_attr("equation").decode()
    inputs, _ = equation.split("->")
    assert "." not in inputs, equation
    sizes = {}
    for letters, tensor in zip(inputs.split(","), op.inputs):
        for letter, n in zip(letters, tensor.shape.as_list()):
            assert n is not None, f"{op.name}: dynamic shape"
            sizes[letter] = n
    return 2 * int(np.prod(list(sizes.values())))


def profiled_flops(model, image_size, image_channels):
    """(FLOPs of Conv2D/MatMul/Einsum ops, FLOPs of all ops) of one forward pass on one image."""
    model(tf.zeros([1, image_size, image_size, image_channels]), tf.zeros([1], tf.int32))  # build
    fn = tf.function(lambda x, t: model(x, t, training=False))
    graph = fn.get_concrete_function(
        tf.TensorSpec([1, image_size, image_size, image_channels], tf.float32),
        tf.TensorSpec([1], tf.int32)).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    root = tf.compat.v1.profiler.profile(graph, cmd="scope", options=opts)
    per_op, stack = {}, list(root.children)
    while stack:
        node = stack.pop()
        per_op[node.name] = node.float_ops
        stack.extend(node.children)
    assert sum(per_op.values()) == root.total_float_ops
    counted = total = 0
    for op in graph.get_operations():
        flops = einsum_flops(op) if op.type == "Einsum" else per_op.get(op.name, 0)
        if op.type == "Einsum":
            assert op.name not in per_op          # the profiler does not count it
        total += flops
        counted += flops if op.type in COUNTED_OPS else 0
    return counted, total


def check(model, analytic, image_size, image_channels):
    counted, total = profiled_flops(model, image_size, image_channels)
    assert counted == analytic, (counted, analytic, counted / analytic)
    uncounted = WIDE if model.base_channels >= 32 else NARROW
    assert analytic <= total <= (1 + uncounted) * analytic, total / analytic


@pytest.mark.parametrize("kw", [
    REFERENCE_HO,
    # odd sizes: 3 channels, 16x16, attention at two levels, a width change at every level
    dict(image_channels=3, image_size=16, base_channels=16, channel_mult=(1, 2, 3),
         num_res_blocks=1, attn_resolutions=(16, 4), dropout=0.1, groups=8),
], ids=["reference", "rgb16"])
def test_ho_unet_flops_matches_profiler(kw):
    model = HoUNet(**kw)
    if kw is REFERENCE_HO:
        model.build_for()
        assert model.count_params() == 1_623_169
    check(model, ho_unet_flops(model), kw["image_size"], kw["image_channels"])


@pytest.mark.parametrize("kw,size", [
    (dict(base_channels=8, time_dim=32, attention="origin"), 32),
    (dict(base_channels=8, time_dim=32, attention="seed", image_channels=3), 16),
], ids=["origin32", "seed16-rgb"])
def test_unet_flops_matches_profiler(kw, size):
    model = UNet(**kw)
    check(model, unet_flops(model, image_size=size), size, model.image_channels)
