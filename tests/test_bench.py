"""bench/bench.py's machine description: the fp32 peak it divides by, and its argument checks."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench  # noqa: E402


@pytest.mark.parametrize("info, per_cycle", [
    # Intel with AVX-512: two 512-bit FMA units, 16 floats x 2 FLOP x 2
    (dict(vendor_id="GenuineIntel", **{"cpu family": "6"}, flags="fma avx2 avx512f amx_bf16"), 64),
    # AMD Zen 4 (family 25): AVX-512 runs on two 256-bit units, 8 x 2 x 2
    (dict(vendor_id="AuthenticAMD", **{"cpu family": "25"}, flags="fma avx2 avx512f avx512_bf16"), 32),
    (dict(vendor_id="AuthenticAMD", **{"cpu family": "23"}, flags="fma avx2"), 32),
    (dict(vendor_id="GenuineIntel", **{"cpu family": "6"}, flags="sse4_2"), 16),
    ({}, 16),
])
def test_fp32_flop_per_cycle(info, per_cycle):
    assert bench.fp32_flop_per_cycle(info) == per_cycle


@pytest.mark.parametrize("flag", ["--repeats", "--batch", "--train-steps"])
def test_counts_below_one_are_refused_before_any_timing(flag, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main([flag, "0", "--only", "train"])
    assert e.value.code == 2
    assert f"{flag} must be at least 1; got 0." in capsys.readouterr().err
