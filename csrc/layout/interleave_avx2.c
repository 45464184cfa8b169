/* interleave_avx2.c -- the planes-to-pixels copy (interleave.h) compiled for AVX2. */
#include <string.h>

#include "interleave.h"

QE_DEFINE_INTERLEAVE(qe_interleave_u8__avx2)
