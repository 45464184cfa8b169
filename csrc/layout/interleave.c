/* interleave.c -- the portable planes-to-pixels copy (interleave.h): the reference path. */
#include <string.h>

#include "interleave.h"

QE_DEFINE_INTERLEAVE(qe_interleave_u8_ref)
