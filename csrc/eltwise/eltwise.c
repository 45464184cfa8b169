/*
 * eltwise.c -- element-wise entry points: validation, fixed-size chunks over the thread pool,
 * and the 256-entry tables that turn every uint8 -> uint8 map into one lookup kernel.
 */
#include <math.h>

#include "eltwise.h"

static const qe_eltwise_kernels *const g_kernels[QE_ISA_COUNT] = {
    [QE_ISA_REF] = &qe_eltwise_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = &qe_eltwise_avx2,
    [QE_ISA_AVX512VNNI] = &qe_eltwise_avx512,
#endif
#if defined(QE_BUILD_ARM64)
    [QE_ISA_NEON] = &qe_eltwise_neon,
    [QE_ISA_NEON_DOTPROD] = &qe_eltwise_neon,
#endif
};

int qe_lut_no_vbmi;
void qe_lut_disable_vbmi(int off) { qe_lut_no_vbmi = off != 0; }

static const qe_eltwise_kernels *kernels(void) { return QE_PICK(g_kernels, qe_get_isa()); }

/* Work per task: fixed, so the split never depends on the thread count. 8 KiB: the 30-60 KiB
 * tensors of small models (OCR's residual adds, 22 per image) still split over 2 threads, and a
 * task still outweighs its claim (OCR on 2 threads: adds 49 -> 38 us, squeeze-excitation
 * multiplies 64 -> 58 us per image; 1 thread unchanged). */
enum { QE_ELT_CHUNK = 8 * 1024 };
/* Rows shorter than this with a broadcast b are taken several at a time (binary_tiled_rows). */
enum { QE_ELT_TILED_ROW = 1024 };

static int mult_ok(float m) { return isfinite(m) && m > 0; }
static int u8_ok(int32_t v) { return v >= 0 && v <= 255; }
static int range_ok(int32_t lo, int32_t hi, int32_t min, int32_t max) {
    return lo >= min && lo <= hi && hi <= max;
}

/* ---- the generic row job --------------------------------------------------------------------
 * rows x cols elements; a task takes rows_per_task rows. Each operation supplies a row
 * function, and may supply a block function that takes a task's rows in one call (the lookup:
 * its table is set up once per call). Flat tensors are one "row" cut into chunks of
 * QE_ELT_CHUNK instead. */
typedef struct elt_job elt_job;
typedef void (*elt_row_fn)(const elt_job *j, size_t row, size_t begin, size_t count);
typedef void (*elt_block_fn)(const elt_job *j, size_t row_begin, size_t row_end);
struct elt_job {
    elt_row_fn row;
    elt_block_fn block; /* optional, for row tasks */
    size_t rows, cols, rows_per_task, chunk; /* chunk: 0 for row tasks */
    const qe_eltwise_kernels *k;
    const void *a, *b;
    void *y;
    size_t lda, ldb, ldy; /* in elements */
    const qe_binary_params *bp;
    qe_binary_fn binary;
    qe_binary_rows_fn rows_bcast; /* a row b over the rows: the kernel's add/mul_rows_bcast */
    uint8_t table[256];
    const float *ftable; /* qe_lut_u8_f32's table */
    const float *scale;
    const int32_t *zp;
    int32_t qmin, qmax;
    int is_signed;
};

static void elt_task(void *ctx, size_t task, int thread_index) {
    const elt_job *j = ctx;
    if (j->chunk) {
        const size_t begin = task * j->chunk;
        j->row(j, 0, begin, QE_MIN(j->chunk, j->cols - begin));
        return;
    }
    const size_t r0 = task * j->rows_per_task, r1 = QE_MIN(r0 + j->rows_per_task, j->rows);
    if (j->block) {
        j->block(j, r0, r1);
        return;
    }
    for (size_t r = r0; r < r1; r++) j->row(j, r, 0, j->cols);
}

/* As many tasks as QE_ELT_CHUNK gives, with the work shared evenly among them (whole 64-byte
 * vectors of a flat tensor, whole rows): an OCR bias add of 80 x 128 took tasks of 64 and 16
 * rows, so on 2 threads one thread did 4/5 of it. A job of one task divides nothing (a 64-bit
 * division costs tens of cycles, and a one-node model's call is about 3 us). Every caller
 * returns before this on an empty tensor. */
static void elt_run(elt_job *j, int flat) {
    QE_ASSERT(j->rows > 0 && j->cols > 0);
    if (flat) {
        j->cols *= j->rows;
        j->rows = 1;
        const size_t tasks = QE_DIV_UP(j->cols, QE_ELT_CHUNK);
        j->chunk = tasks == 1 ? j->cols : QE_ROUND_UP(QE_DIV_UP(j->cols, tasks), 64);
        qe_parallel_for(tasks == 1 ? 1 : QE_DIV_UP(j->cols, j->chunk), elt_task, j);
    } else {
        j->chunk = 0;
        const size_t per = QE_MAX(1, QE_ELT_CHUNK / j->cols); /* rows per task at most */
        j->rows_per_task = j->rows <= per ? j->rows : QE_DIV_UP(j->rows, QE_DIV_UP(j->rows, per));
        qe_parallel_for(j->rows <= per ? 1 : QE_DIV_UP(j->rows, j->rows_per_task), elt_task, j);
    }
}

/* ---- binary -------------------------------------------------------------------------------- */
static void binary_row(const elt_job *j, size_t r, size_t b0, size_t n) {
    const uint8_t *a = (const uint8_t *)j->a + r * j->lda + b0;
    const uint8_t *b = (const uint8_t *)j->b + r * j->ldb + b0;
    j->binary(n, a, b, j->bp, (uint8_t *)j->y + r * j->ldy + b0);
}

static void lut_row(const elt_job *j, size_t r, size_t b0, size_t n) {
    j->k->lut(1, n, (const uint8_t *)j->a + r * j->lda + b0, n, j->table,
              (uint8_t *)j->y + r * j->ldy + b0, n);
}

static void lut_block(const elt_job *j, size_t r0, size_t r1) {
    j->k->lut(r1 - r0, j->cols, (const uint8_t *)j->a + r0 * j->lda, j->lda, j->table,
              (uint8_t *)j->y + r0 * j->ldy, j->ldy);
}

static void bcast_block(const elt_job *j, size_t r0, size_t r1) {
    j->rows_bcast(r1 - r0, j->cols, (const uint8_t *)j->a + r0 * j->lda, j->b, j->bp,
                  (uint8_t *)j->y + r0 * j->ldy);
}

int qe_binary_params_ok(const qe_binary_params *p, int is_mul) {
    return p && u8_ok(p->a_zp) && u8_ok(p->b_zp) && u8_ok(p->y_zp) &&
           range_ok(p->qmin, p->qmax, 0, 255) && mult_ok(p->a_mult) &&
           (is_mul || mult_ok(p->b_mult));
}

void qe_add_rows_inplace(size_t rows, size_t cols, uint8_t *y, size_t ldy, const uint8_t *b,
                         const qe_binary_params *p) {
    const qe_eltwise_kernels *k = kernels();
    for (size_t r = 0; r < rows; r++, y += ldy) k->add(cols, y, b, p, y);
}

/* A row b broadcast over short rows (an Add of a per-channel constant on NHWC pixels of 32
 * channels): the kernel would take one short, mostly masked call per pixel. k rows of a are
 * one row of k * cols values, with b repeated k times, so each call covers k pixels; the
 * rows % k left over take the plain path. Every value meets the same b value as before. */
static int binary_tiled_rows(elt_job *j, size_t rows, size_t cols, const uint8_t *a,
                             const uint8_t *b, uint8_t *y) {
    uint8_t tiled[QE_ELT_TILED_ROW];
    const size_t k = QE_ELT_TILED_ROW / cols, wide = k * cols, whole = rows / k;
    for (size_t i = 0; i < k; i++) memcpy(tiled + i * cols, b, cols);
    elt_job w = *j;
    w.rows = whole;
    w.cols = wide;
    w.lda = w.ldy = wide;
    w.b = tiled;
    elt_run(&w, 0);
    if (whole * k < rows) {
        elt_job r = *j;
        r.rows = rows - whole * k;
        r.a = a + whole * wide;
        r.y = y + whole * wide;
        elt_run(&r, 0);
    }
    return QE_OK;
}

static int binary(size_t rows, size_t cols, const uint8_t *a, const uint8_t *b,
                  size_t b_row_stride, int b_scalar, const qe_binary_params *p, uint8_t *y,
                  int is_mul) {
    if (!qe_binary_params_ok(p, is_mul)) return QE_ERR_ARG;
    if (rows == 0 || cols == 0) return QE_OK;
    if (!a || !b || !y || (!b_scalar && b_row_stride != cols && b_row_stride != 0))
        return QE_ERR_ARG;
    elt_job j = {.rows = rows, .cols = cols, .k = kernels(), .a = a, .b = b, .y = y,
                 .lda = cols, .ldy = cols, .bp = p};
    if (b_scalar) { /* y = f(a): one table from the reference formula */
        for (int v = 0; v < 256; v++)
            j.table[v] = is_mul ? qe_mul_one(v, b[0], p) : qe_add_one(v, b[0], p);
        j.row = lut_row;
        elt_run(&j, 1);
        return QE_OK;
    }
    j.binary = is_mul ? j.k->mul : j.k->add;
    j.row = binary_row;
    j.ldb = b_row_stride;
    /* A row b: where the ISA has a rows_bcast kernel, it converts b's share to float once per
     * task; short rows go several per call first (binary_tiled_rows, whose wide rows keep the
     * block), rows of at least a vector as they are. */
    if (b_row_stride == 0) {
        j.rows_bcast = is_mul ? j.k->mul_rows_bcast : j.k->add_rows_bcast;
        if (j.rows_bcast) j.block = bcast_block;
    }
    if (b_row_stride == 0 && cols < (j.rows_bcast ? 64 : QE_ELT_TILED_ROW) &&
        rows >= 2 * (QE_ELT_TILED_ROW / cols))
        return binary_tiled_rows(&j, rows, cols, a, b, y);
    elt_run(&j, b_row_stride == cols);
    return QE_OK;
}

int qe_add_u8(size_t rows, size_t cols, const uint8_t *a, const uint8_t *b, size_t b_row_stride,
              int b_scalar, const qe_binary_params *p, uint8_t *y) {
    return binary(rows, cols, a, b, b_row_stride, b_scalar, p, y, 0);
}

int qe_mul_u8(size_t rows, size_t cols, const uint8_t *a, const uint8_t *b, size_t b_row_stride,
              int b_scalar, const qe_binary_params *p, uint8_t *y) {
    return binary(rows, cols, a, b, b_row_stride, b_scalar, p, y, 1);
}

/* ---- requantize and lookup ------------------------------------------------------------------ */
int qe_requantize_u8(size_t rows, size_t cols, const uint8_t *x, size_t ldx, int32_t x_zp,
                     float mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y,
                     size_t ldy) {
    if (!u8_ok(x_zp) || !u8_ok(y_zp) || !range_ok(qmin, qmax, 0, 255) || !mult_ok(mult))
        return QE_ERR_ARG;
    if (rows == 0 || cols == 0) return QE_OK;
    if (!x || !y || ldx < cols || ldy < cols) return QE_ERR_ARG;
    elt_job j = {.row = lut_row, .block = lut_block, .rows = rows, .cols = cols, .k = kernels(),
                 .a = x, .y = y, .lda = ldx, .ldy = ldy};
    for (int v = 0; v < 256; v++) j.table[v] = (uint8_t)qe_requant_one(v - x_zp, mult, y_zp, qmin, qmax);
    elt_run(&j, ldx == cols && ldy == cols);
    return QE_OK;
}

void qe_lut_rows_inplace(size_t rows, size_t cols, uint8_t *y, size_t ldy,
                         const uint8_t table[256]) {
    if (ldy == cols) {
        cols *= rows;
        rows = 1;
    }
    kernels()->lut(rows, cols, y, ldy, table, y, ldy);
}

int qe_lut_u8(size_t n, const uint8_t *x, const uint8_t table[256], uint8_t *y) {
    if (n == 0) return QE_OK;
    if (!x || !table || !y) return QE_ERR_ARG;
    elt_job j = {.row = lut_row, .rows = 1, .cols = n, .k = kernels(), .a = x, .y = y};
    for (int v = 0; v < 256; v++) j.table[v] = table[v];
    elt_run(&j, 1);
    return QE_OK;
}

/* A float table, for element-wise functions whose output stays float (a model's last GELU or
 * Sigmoid): the ISA's kernel where it has one, else this portable loop. It moves data only,
 * so every path gives the same bits. */
static void lut_f32_row(const elt_job *j, size_t r, size_t b0, size_t n) {
    const uint8_t *x = (const uint8_t *)j->a + r * j->lda + b0;
    float *y = (float *)j->y + r * j->ldy + b0;
    const float *t = j->ftable;
    if (j->k->lut_f32) {
        j->k->lut_f32(n, x, t, y);
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = t[x[i]];
}

int qe_lut_u8_f32(size_t n, const uint8_t *x, const float table[256], float *y) {
    if (n == 0) return QE_OK;
    if (!x || !table || !y) return QE_ERR_ARG;
    elt_job j = {.row = lut_f32_row, .rows = 1, .cols = n, .k = kernels(), .a = x, .y = y,
                 .ftable = table};
    elt_run(&j, 1);
    return QE_OK;
}

/* ---- quantize / dequantize ------------------------------------------------------------------
 * Per-tensor: flat chunks with one scale. Per-channel: rows of `channels` elements with the
 * per-element arrays. */
static int qparams_ok(size_t channels, const float *scale, const int32_t *zp, int32_t zmin,
                      int32_t zmax) {
    for (size_t c = 0; c < channels; c++)
        if (!mult_ok(scale[c]) || (zp && (zp[c] < zmin || zp[c] > zmax))) return 0;
    return 1;
}

static void quantize_row(const elt_job *j, size_t r, size_t b0, size_t n) {
    const int pc = j->chunk == 0;
    j->k->quantize(n, (const float *)j->a + r * j->lda + b0, j->scale, j->zp, pc, j->qmin,
                   j->qmax, (uint8_t *)j->y + r * j->ldy + b0);
}

static int quantize(size_t n, size_t channels, const float *x, const float *scale,
                    const int32_t *zp, int32_t qmin, int32_t qmax, uint8_t *y, int32_t tmin,
                    int32_t tmax) {
    if (channels == 0 || !scale || !zp || !range_ok(qmin, qmax, tmin, tmax) ||
        !qparams_ok(channels, scale, zp, tmin, tmax) || qe_umod(n, channels))
        return QE_ERR_ARG;
    if (n == 0) return QE_OK;
    if (!x || !y) return QE_ERR_ARG;
    elt_job j = {.row = quantize_row, .rows = qe_udiv(n, channels), .cols = channels,
                 .k = kernels(), .a = x, .y = y, .lda = channels, .ldy = channels,
                 .scale = scale, .zp = zp, .qmin = qmin, .qmax = qmax};
    elt_run(&j, channels == 1);
    return QE_OK;
}

int qe_quantize_f32_u8(size_t n, size_t channels, const float *x, const float *scale,
                       const int32_t *zp, int32_t qmin, int32_t qmax, uint8_t *y) {
    return quantize(n, channels, x, scale, zp, qmin, qmax, y, 0, 255);
}

int qe_quantize_f32_s8(size_t n, size_t channels, const float *x, const float *scale,
                       const int32_t *zp, int32_t qmin, int32_t qmax, int8_t *y) {
    return quantize(n, channels, x, scale, zp, qmin, qmax, (uint8_t *)y, -128, 127);
}

static void dequantize8_row(const elt_job *j, size_t r, size_t b0, size_t n) {
    j->k->dequantize8(n, (const uint8_t *)j->a + r * j->lda + b0, j->is_signed, j->scale, j->zp,
                      j->chunk == 0, (float *)j->y + r * j->ldy + b0);
}

static void dequantize32_row(const elt_job *j, size_t r, size_t b0, size_t n) {
    j->k->dequantize32(n, (const int32_t *)j->a + r * j->lda + b0, j->scale, j->chunk == 0,
                       (float *)j->y + r * j->ldy + b0);
}

static int dequantize(size_t n, size_t channels, const void *x, const float *scale,
                      const int32_t *zp, float *y, elt_row_fn row, int is_signed) {
    const int32_t zmin = is_signed ? -128 : 0, zmax = is_signed ? 127 : 255;
    if (channels == 0 || !scale || (row == dequantize8_row && !zp) ||
        !qparams_ok(channels, scale, zp, zmin, zmax) || qe_umod(n, channels))
        return QE_ERR_ARG;
    if (n == 0) return QE_OK;
    if (!x || !y) return QE_ERR_ARG;
    elt_job j = {.row = row, .rows = qe_udiv(n, channels), .cols = channels, .k = kernels(), .a = x,
                 .y = y, .lda = channels, .ldy = channels, .scale = scale, .zp = zp,
                 .is_signed = is_signed};
    elt_run(&j, channels == 1);
    return QE_OK;
}

int qe_dequantize_u8_f32(size_t n, size_t channels, const uint8_t *x, const float *scale,
                         const int32_t *zp, float *y) {
    return dequantize(n, channels, x, scale, zp, y, dequantize8_row, 0);
}

int qe_dequantize_s8_f32(size_t n, size_t channels, const int8_t *x, const float *scale,
                         const int32_t *zp, float *y) {
    return dequantize(n, channels, x, scale, zp, y, dequantize8_row, 1);
}

int qe_dequantize_s32_f32(size_t n, size_t channels, const int32_t *x, const float *scale,
                          float *y) {
    return dequantize(n, channels, x, scale, NULL, y, dequantize32_row, 0);
}
