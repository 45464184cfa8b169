"""The peak probes (csrc/peak): each path's multiply-accumulate loop does the operations it
reports, the reference has none, bad arguments raise, and the profile's peak comes from them."""
import math

import pytest

from qengine import _kernels as K
from qengine.errors import ISAError
from qengine.tools import profile

# int8 operations per probe round: 12 instructions x products per instruction x 2
OPS_PER_ROUND = {"avx512vnni": 12 * 64 * 2, "avx2": 12 * 16 * 2, "neondot": 12 * 16 * 2,
                 "neon": 12 * 4 * 2, "ref": 0}


@pytest.mark.parametrize("isa", K.available_isas())
def test_probe_counts_its_rounds(isa):
    for n in (0, 1, 7, 1000):
        assert K.int8_peak_probe(isa, n) == n * OPS_PER_ROUND[isa]


def test_probe_rejects_bad_arguments():
    with pytest.raises(ValueError, match="iterations"):
        K.int8_peak_probe("ref", -1)
    with pytest.raises(ValueError, match="iterations"):
        K.int8_peak_probe("ref", 1.5)
    with pytest.raises(ValueError, match="unknown ISA"):
        K.int8_peak_probe("sse9", 1)
    missing = [i for i in K.ISA_NAMES if i not in K.available_isas()]
    if missing:
        with pytest.raises(ISAError):
            K.int8_peak_probe(missing[0], 1)


@pytest.mark.parametrize("isa", K.available_isas())
def test_profile_peak_is_measured_once_per_path(isa, monkeypatch):
    monkeypatch.setattr(profile, "_MEASURED", {})
    calls = []
    real = K.int8_peak_probe
    monkeypatch.setattr(K, "int8_peak_probe", lambda i, n: calls.append(i) or real(i, n))
    peak = profile.peak_gops_per_core(isa, runs=2, seconds=0.002)
    if OPS_PER_ROUND[isa] == 0:
        assert peak is None
    else:
        assert peak > 0 and math.isfinite(peak)
    assert calls and set(calls) == {isa}
    n = len(calls)
    assert profile.peak_gops_per_core(isa) == peak and len(calls) == n   # cached
