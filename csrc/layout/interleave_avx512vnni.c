/* interleave_avx512vnni.c -- the planes-to-pixels copy (interleave.h) compiled for AVX-512. */
#include <string.h>

#include "interleave.h"

QE_DEFINE_INTERLEAVE(qe_interleave_u8__avx512vnni)
