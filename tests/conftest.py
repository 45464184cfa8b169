"""Shared fixtures: every kernel test runs on every ISA path this CPU has."""
from __future__ import annotations

import os

import pytest

import qengine  # noqa: F401  (applies QENGINE_ISA / QENGINE_NUM_THREADS)
from qengine import _kernels


def _isas_under_test() -> list[str]:
    """All available paths; QENGINE_TEST_ISAS=avx2,ref narrows the list (e.g. under sanitizers)."""
    avail = _kernels.available_isas()
    only = os.environ.get("QENGINE_TEST_ISAS")
    if only:
        wanted = [s.strip() for s in only.split(",") if s.strip()]
        return [s for s in avail if s in wanted]
    return avail


ISAS = _isas_under_test()


@pytest.fixture(params=ISAS)
def isa(request):
    """Select each available kernel path in turn; restore the previous one afterwards."""
    before = _kernels.get_isa()
    _kernels.set_isa(request.param)
    try:
        yield request.param
    finally:
        _kernels.set_isa(before)


@pytest.fixture(params=[1, 2])
def threads(request):
    """Run with 1 and with 2 pool threads; restore the previous count afterwards."""
    before = _kernels.get_num_threads()
    _kernels.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        _kernels.set_num_threads(before)
