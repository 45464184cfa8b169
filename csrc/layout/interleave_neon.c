/* interleave_neon.c -- the planes-to-pixels copy (interleave.h) compiled for aarch64 NEON. */
#include <string.h>

#include "interleave.h"

QE_DEFINE_INTERLEAVE(qe_interleave_u8__neon)
