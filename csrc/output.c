/* output.c -- the reference output pipeline; see output.h. */
#include "output.h"

void qe_output_row_ref(const qe_output *out, const int32_t *acc, size_t n0, size_t count, void *dst) {
    for (size_t j = 0; j < count; j++) {
        const size_t n = n0 + j;
        int32_t a = acc[j];
        if (out->bias) a = qe_add_wrap(a, out->bias[n]);
        switch (out->kind) {
        case QE_OUT_I32:
            ((int32_t *)dst)[j] = a;
            break;
        case QE_OUT_F32: {
            float v = (float)a * out->scale[out->per_channel ? n : 0];
            if (out->fbias) v = v + out->fbias[n];
            ((float *)dst)[j] = v;
            break;
        }
        case QE_OUT_U8:
            ((uint8_t *)dst)[j] = (uint8_t)qe_requant_one(a, out->scale[out->per_channel ? n : 0],
                                                          out->zero_point, out->qmin, out->qmax);
            break;
        }
    }
}
