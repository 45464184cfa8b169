"""Experimental builds of the AVX-512 VNNI 6 x 64 tile, each timed by tile_cost.py: what the
tile's uint8 output pipeline costs, and which vector instructions slow its k loop.

    python benchmarks/tile_variants.py [--variants base cut mulps ...] [--ks 147 576 1152]

Each variant copies the repository to a temporary directory, rewrites the tile's inline asm
(csrc/gemm/qgemm_avx512vnni_asm.h, and for float-zp qgemm_avx512vnni.c), builds the extension
there (about a minute) and runs `tile_cost.py --ks ...` on it; the repository itself is never
touched. Only the uint8 column of tile_cost's output means anything for the cut builds (their
outputs are wrong on purpose). Variants:
  base      the tile as it is
  cut       the uint8 pipeline cut to its store (no conversion, scale, packs): the pipeline's
            cost is base minus cut
  <insn>    cut, plus four instructions of one kind in every k group on the free zmm6/zmm7
            (cvtdq2ps, cvtps2dq, mulps, addps, minps, maxps, paddd, paddsw, packssdw, pmaxub,
            vpermd, vpermt2b): how much of the k loop's vector pipes that kind takes
  float-zp  a bit-identical pipeline with the zero point and both clamps in float (vminps,
            vmaxps, +1.5*2^23, +(zp - 1.5*2^23), cvtps2dq, packs): 33 instructions per row
            against 19, all but the 4 multiplies of kinds that leave the k loop alone
Needs an x86 machine with AVX-512 VNNI and the build tools (setuptools, Cython, a C compiler).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASM = "csrc/gemm/qgemm_avx512vnni_asm.h"
TILE = "csrc/gemm/qgemm_avx512vnni.c"

_ROW_START = "#define QE_ASM_U8_ROW(dst, z0, z1, z2, z3)"
_ROW_END = "/* The tile's ROWS"
_GROUP = ('    QE_ASM_BCAST(OA "(%[a3]", ",%[lda],2)", "zmm5") '
          'QE_ASM_DOT4("zmm5", "zmm28", "zmm29", "zmm30", "zmm31")\n')
_CLOBBER = '"zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm8"'

# the injected instructions: (mnemonic, operands) written four times per k group
INSNS = {
    "cvtdq2ps": "vcvtdq2ps %%zmm7, %%zmm6", "cvtps2dq": "vcvtps2dq %%zmm7, %%zmm6",
    "mulps": "vmulps %%zmm7, %%zmm7, %%zmm6", "addps": "vaddps %%zmm7, %%zmm7, %%zmm6",
    "minps": "vminps %%zmm7, %%zmm7, %%zmm6", "maxps": "vmaxps %%zmm7, %%zmm7, %%zmm6",
    "paddd": "vpaddd %%zmm7, %%zmm7, %%zmm6", "paddsw": "vpaddsw %%zmm7, %%zmm7, %%zmm6",
    "packssdw": "vpackssdw %%zmm7, %%zmm7, %%zmm6", "pmaxub": "vpmaxub %%zmm7, %%zmm7, %%zmm6",
    "vpermd": "vpermd %%zmm7, %%zmm7, %%zmm6", "vpermt2b": "vpermt2b %%zmm7, %%zmm7, %%zmm6",
}

_FLOAT_ZP_ROW = r'''#define QE_ASM_ROW4(op, z0, z1, z2, z3) op(z0) op(z1) op(z2) op(z3)
#define QE_ASM_ONE(insn, z) insn " %%" z ", %%" z "\n\t"
#define QE_ASM_I2F(z) QE_ASM_ONE("vcvtdq2ps", z)
#define QE_ASM_F2I(z) QE_ASM_ONE("vcvtps2dq", z)
#define QE_ASM_MINHI(z) "vminps %%zmm0, %%" z ", %%" z "\n\t"
#define QE_ASM_MAXLO(z) "vmaxps %%zmm1, %%" z ", %%" z "\n\t"
#define QE_ASM_ADDM(z) "vaddps %%zmm2, %%" z ", %%" z "\n\t"
#define QE_ASM_ADDC(z) "vaddps %%zmm3, %%" z ", %%" z "\n\t"
#define QE_ASM_U8_ROW(dst, z0, z1, z2, z3)                  \
    QE_ASM_ROW4(QE_ASM_I2F, z0, z1, z2, z3)                 \
    "vmulps (%[scale]), %%" z0 ", %%" z0 "\n\t"             \
    "vmulps 64(%[scale]), %%" z1 ", %%" z1 "\n\t"           \
    "vmulps 128(%[scale]), %%" z2 ", %%" z2 "\n\t"          \
    "vmulps 192(%[scale]), %%" z3 ", %%" z3 "\n\t"          \
    QE_ASM_ROW4(QE_ASM_MINHI, z0, z1, z2, z3)               \
    QE_ASM_ROW4(QE_ASM_MAXLO, z0, z1, z2, z3)               \
    QE_ASM_ROW4(QE_ASM_ADDM, z0, z1, z2, z3)                \
    QE_ASM_ROW4(QE_ASM_ADDC, z0, z1, z2, z3)                \
    QE_ASM_ROW4(QE_ASM_F2I, z0, z1, z2, z3)                 \
    "vpackssdw %%" z1 ", %%" z0 ", %%" z0 "\n\t"            \
    "vpackssdw %%" z3 ", %%" z2 ", %%" z2 "\n\t"            \
    "vpackuswb %%" z2 ", %%" z0 ", %%" z0 "\n\t"            \
    "vpermd %%" z0 ", %%zmm5, %%" z0 "\n\t"                 \
    "vmovdqu64 %%" z0 ", " dst "\n\t"
'''


def _replace(text: str, old: str, new: str, what: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(f"{what}: the anchor is not in the sources once; update "
                           f"benchmarks/tile_variants.py for the present tile")
    return text.replace(old, new)


def _with_row(asm: str, row: str) -> str:
    """The header with QE_ASM_U8_ROW replaced by `row` (a #define ending in a newline)."""
    i, j = asm.find(_ROW_START), asm.find(_ROW_END)
    if i < 0 or j < i:
        raise RuntimeError("QE_ASM_U8_ROW: the anchor is not in the sources; update "
                           "benchmarks/tile_variants.py for the present tile")
    return asm[:i] + row + asm[j:]


def patch(variant: str, sources: dict) -> dict:
    """The rewritten {path: text} of a variant, from the present {path: text} (ASM, TILE)."""
    asm, tile = sources[ASM], sources[TILE]
    if variant == "base":
        return {ASM: asm, TILE: tile}
    if variant == "float-zp":
        asm = _with_row(asm, _FLOAT_ZP_ROW)
        asm = _replace(asm, '    "vpbroadcastw %[zp], %%zmm6\\n\\t"', '    "vbroadcastss %[fhi], '
                       '%%zmm0\\n\\t" "vbroadcastss %[flo], %%zmm1\\n\\t"', "zero point")
        asm = _replace(asm, '    "vpbroadcastb %[lo], %%zmm7\\n\\t"', '    "vbroadcastss %[fm], '
                       '%%zmm2\\n\\t" "vbroadcastss %[fc], %%zmm3\\n\\t"', "qmin")
        asm = _replace(asm, '[zp] "m"((o)->zp), [lo] "m"((o)->lo)',
                       '[fhi] "m"((o)->fhi), [flo] "m"((o)->flo), [fm] "m"((o)->fm), '
                       '[fc] "m"((o)->fc)', "asm inputs")
        asm = _replace(asm, "    uint8_t lo;          /* qmin (the byte the max clamps to) */\n",
                       "    uint8_t lo;          /* qmin (the byte the max clamps to) */\n"
                       "    float fhi, flo, fm, fc;\n", "qe_u8_out")
        tile = _replace(tile, ".lo = (uint8_t)((int32_t)ep->lo + ep->zp)};",
                        ".lo = (uint8_t)((int32_t)ep->lo + ep->zp), .fhi = ep->hi, "
                        ".flo = ep->lo, .fm = 12582912.0f, .fc = (float)ep->zp - 12582912.0f};",
                        "u8_fused")
        return {ASM: asm, TILE: tile}
    if variant != "cut" and variant not in INSNS:
        raise ValueError(f"unknown variant {variant!r}: base, cut, float-zp or one of "
                         f"{', '.join(INSNS)}")
    asm = _with_row(asm, '#define QE_ASM_U8_ROW(dst, z0, z1, z2, z3) '
                         '"vmovdqu64 %%" z0 ", " dst "\\n\\t"\n')
    if variant in INSNS:
        four = " ".join([f'"{INSNS[variant]}\\n\\t"'] * 4)
        asm = _replace(asm, _GROUP, _GROUP.rstrip("\n") + " \\\n    " + four + "\n", "k group")
        asm = _replace(asm, _CLOBBER, _CLOBBER.replace('"zmm5", ', '"zmm5", "zmm6", "zmm7", '),
                       "clobbers")
    return {ASM: asm, TILE: tile}


def _read_sources() -> dict:
    out = {}
    for path in (ASM, TILE):
        with open(os.path.join(ROOT, path)) as f:
            out[path] = f.read()
    return out


def run_variant(variant: str, ks: list) -> str:
    """Build the variant in a temporary copy and return tile_cost.py's table for it."""
    files = patch(variant, _read_sources())
    with tempfile.TemporaryDirectory(prefix="qengine-tile-") as tmp:
        for item in ("setup.py", "pyproject.toml", "csrc", "qengine", "benchmarks"):
            src, dst = os.path.join(ROOT, item), os.path.join(tmp, item)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
            else:
                shutil.copy2(src, dst)
        for path, text in files.items():
            with open(os.path.join(tmp, path), "w") as f:
                f.write(text)
        build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp,
                               capture_output=True, text=True)
        if build.returncode:
            raise RuntimeError(f"{variant}: the build failed:\n{build.stderr[-2000:]}")
        env = dict(os.environ, PYTHONPATH=tmp)
        cost = subprocess.run([sys.executable, "benchmarks/tile_cost.py", "--isa", "avx512vnni",
                               "--ks", *map(str, ks)], cwd=tmp, env=env, capture_output=True,
                              text=True)
        if cost.returncode:
            raise RuntimeError(f"{variant}: tile_cost.py failed:\n{cost.stderr[-2000:]}")
        return cost.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["base", "cut", "mulps", "paddsw",
                                                      "cvtdq2ps", "packssdw", "float-zp"])
    ap.add_argument("--ks", type=int, nargs="+", default=[147, 576, 1152])
    args = ap.parse_args()
    for v in args.variants:
        patch(v, _read_sources())          # every variant applies before the first build
    for v in args.variants:
        table = run_variant(v, args.ks)
        rows = [ln for ln in table.splitlines() if ln.strip()[:1].isdigit()]
        print(f"== {v}")
        print(next(ln for ln in table.splitlines() if ln.lstrip().startswith("K ")))
        print("\n".join(rows), flush=True)


if __name__ == "__main__":
    main()
