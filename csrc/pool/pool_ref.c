/*
 * pool_ref.c -- the portable reference pooling kernels: the definition every SIMD path equals.
 */
#include "pool.h"

void qe_maxpool_u8_ref(size_t pixels, size_t channels, size_t ntaps, const uint8_t *const *taps,
                       uint8_t *y) {
    QE_ASSERT(taps && y && ntaps > 0);
    for (size_t px = 0; px < pixels; px++, taps += ntaps, y += channels)
        for (size_t c = 0; c < channels; c++) {
            uint8_t m = taps[0][c];
            for (size_t t = 1; t < ntaps; t++) m = taps[t][c] > m ? taps[t][c] : m;
            y[c] = m;
        }
}

void qe_maxpool_column_u8_ref(size_t out_rows, size_t channels, const uint8_t *const *cols,
                              size_t ncols, size_t rows, size_t kernel, size_t stride, size_t pad,
                              uint8_t *y, size_t ldy) {
    QE_ASSERT(y && (cols || ncols == 0));
    for (size_t i = 0; i < out_rows; i++, y += ldy) {
        size_t r0, r1;
        qe_pool_window_rows(i, kernel, stride, pad, rows, &r0, &r1);
        for (size_t c = 0; c < channels; c++) {
            uint8_t m = 0; /* an empty window gives 0; 0 never beats a value */
            for (size_t k = 0; k < ncols; k++)
                for (size_t r = r0; r < r1; r++) {
                    const uint8_t v = cols[k][r * channels + c];
                    m = v > m ? v : m;
                }
            y[c] = m;
        }
    }
}

void qe_avgpool_u8_ref(size_t pixels, size_t channels, size_t ntaps, const uint8_t *const *taps,
                       const float *mult, const qe_pool_requant *rq, uint8_t *y) {
    QE_ASSERT(taps && mult && rq && y && ntaps > 0 && ntaps <= 65536);
    for (size_t px = 0; px < pixels; px++, taps += ntaps, y += channels)
        for (size_t c = 0; c < channels; c++) {
            int32_t acc = 0; /* <= 2^16 * 255: no overflow */
            for (size_t t = 0; t < ntaps; t++) acc += taps[t][c];
            y[c] = (uint8_t)qe_requant_one(acc - rq->sub, mult[px], rq->zp, rq->qmin, rq->qmax);
        }
}

void qe_gavgpool_u8_ref(size_t rows, size_t channels, const uint8_t *x, size_t ldx, float mult,
                        const qe_pool_requant *rq, uint8_t *y) {
    QE_ASSERT(x && rq && y && rows > 0 && rows <= ((size_t)1 << 23));
    for (size_t c = 0; c < channels; c++) {
        int32_t acc = 0; /* <= 2^23 * 255 < 2^31 */
        for (size_t r = 0; r < rows; r++) acc += x[r * ldx + c];
        y[c] = (uint8_t)qe_requant_one(acc - rq->sub, mult, rq->zp, rq->qmin, rq->qmax);
    }
}
