"""benchmarks/tile_variants.py: every variant's rewrite applies to the present tile sources
(so the experiment keeps working as the tile changes, or fails with a clear message), and each
rewrite is the one it documents. The builds themselves take a minute each and are not run."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))
import tile_variants as tv  # noqa: E402


def _u8_row(asm):
    i = asm.index(tv._ROW_START)
    return asm[i:asm.index(tv._ROW_END, i)]


def _k_group_6x64(asm):
    i = asm.index("#define QE_ASM_K_GROUP_6x64")
    return asm[i:asm.index("/* The k loop of GROUP", i)]


def test_every_variant_applies_to_the_present_sources():
    src = tv._read_sources()
    assert tv.patch("base", src) == {tv.ASM: src[tv.ASM], tv.TILE: src[tv.TILE]}
    cut = tv.patch("cut", src)[tv.ASM]
    assert "vcvtdq2ps" in _u8_row(src[tv.ASM]) and "vcvtdq2ps" not in _u8_row(cut)
    assert _k_group_6x64(cut) == _k_group_6x64(src[tv.ASM])
    for name, insn in tv.INSNS.items():
        asm = tv.patch(name, src)[tv.ASM]
        assert _u8_row(asm) == _u8_row(cut)
        assert _k_group_6x64(asm).count(insn) == 4, name
        assert '"zmm6", "zmm7"' in asm
    fz = tv.patch("float-zp", src)
    row = _u8_row(fz[tv.ASM])
    assert "vpaddsw" not in row and "vpmaxub" not in row and row.count("vmulps") == 4
    assert ".fm = 12582912.0f" in fz[tv.TILE]


def test_unknown_variant_and_a_moved_anchor_are_named():
    src = tv._read_sources()
    with pytest.raises(ValueError, match="unknown variant 'fma'"):
        tv.patch("fma", src)
    moved = dict(src, **{tv.ASM: src[tv.ASM].replace(tv._ROW_START, "#define OTHER")})
    with pytest.raises(RuntimeError, match="QE_ASM_U8_ROW.*update benchmarks/tile_variants.py"):
        tv.patch("cut", moved)
