/* Load the convsched kernels exported in net/ (libnet.so + net.h), run them on the inputs written by
 * make_data.py, compare with the numpy references.
 *
 *   loader DATA_DIR                 run conv (fp32) and bconv (binary, exact) and compare; exit 0 if both match
 *   loader DATA_DIR --bench [SEC]   also time each kernel: calls back to back, best and median per call
 *   loader DATA_DIR --errors        call the entry points with wrong arguments: each must return -1 + message
 * Exit codes: 0 ok, 1 mismatch or failed check, 2 a kernel returned an error (e.g. a CPU feature is missing).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net.h"

static const int64_t conv_x_shape[] = NET_CONV_X_SHAPE, conv_w_shape[] = NET_CONV_W_SHAPE,
                     conv_y_shape[] = NET_CONV_Y_SHAPE;

/* Buffers must be 64-byte aligned: aligned_alloc wants a size that is a multiple of the alignment. */
static void* alloc64(size_t bytes) {
  void* p = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
  return p;
}

static void* read_file(const char* dir, const char* name, size_t bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE* f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(1); }
  void* p = alloc64(bytes);
  size_t got = fread(p, 1, bytes, f);
  int extra = fgetc(f) != EOF;
  fclose(f);
  if (got != bytes || extra) { fprintf(stderr, "%s: expected %zu bytes\n", path, bytes); exit(1); }
  return p;
}

static void read_tol(const char* dir, const char* kernel, double* rtol, double* atol) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s_tol.txt", dir, kernel);
  FILE* f = fopen(path, "r");
  if (!f || fscanf(f, "%lf %lf", rtol, atol) != 2) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
  fclose(f);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* ------------------------------------------------------------------------------------------ kernels */
typedef struct { float *x, *w, *y, *ref; } conv_bufs;
typedef struct { uint64_t *x, *w; int32_t *y, *ref; } bconv_bufs;
static conv_bufs C;
static bconv_bufs B;

static int run_conv(void) { return net_conv(C.x, C.w, C.y); }
static int run_bconv(void) { return net_bconv(B.x, B.w, B.y); }

static void load(const char* dir) {
  C.x = read_file(dir, "conv_x.bin", sizeof(float) * NET_CONV_X_SIZE);
  C.w = read_file(dir, "conv_w.bin", sizeof(float) * NET_CONV_W_SIZE);
  C.ref = read_file(dir, "conv_ref.bin", sizeof(float) * NET_CONV_Y_SIZE);
  C.y = alloc64(sizeof(float) * NET_CONV_Y_SIZE);
  B.x = read_file(dir, "bconv_x.bin", sizeof(uint64_t) * NET_BCONV_X_SIZE);
  B.w = read_file(dir, "bconv_w.bin", sizeof(uint64_t) * NET_BCONV_W_SIZE);
  B.ref = read_file(dir, "bconv_ref.bin", sizeof(int32_t) * NET_BCONV_Y_SIZE);
  B.y = alloc64(sizeof(int32_t) * NET_BCONV_Y_SIZE);
}

static int check(const char* dir) {
  int bad = 0;
  double rtol, atol, max_err = 0;
  read_tol(dir, "conv", &rtol, &atol);
  if (run_conv()) { fprintf(stderr, "net_conv: %s\n", net_last_error()); return 2; }
  long mismatches = 0;
  for (long i = 0; i < NET_CONV_Y_SIZE; i++) {
    double err = fabs((double)C.y[i] - (double)C.ref[i]);
    if (err > max_err) max_err = err;
    if (!(err <= atol + rtol * fabs((double)C.ref[i]))) mismatches++;
  }
  printf("conv: %s (%d elements, max abs error %.3g, %ld outside rtol %g atol %g)\n",
         mismatches ? "MISMATCH" : "OK", NET_CONV_Y_SIZE, max_err, mismatches, rtol, atol);
  bad |= mismatches != 0;

  if (run_bconv()) { fprintf(stderr, "net_bconv: %s\n", net_last_error()); return 2; }
  mismatches = 0;
  for (long i = 0; i < NET_BCONV_Y_SIZE; i++) mismatches += B.y[i] != B.ref[i];
  printf("bconv: %s (%d elements, %ld differ; exact comparison)\n", mismatches ? "MISMATCH" : "OK",
         NET_BCONV_Y_SIZE, mismatches);
  bad |= mismatches != 0;
  return bad;
}

/* Calls back to back, in rounds of >= 20 ms; per-call time of each round; best and median printed. */
static void bench(const char* name, int (*run)(void), double seconds) {
  double per_call[200];
  int rounds = 0, calls = 1;
  for (int i = 0; i < 10; i++) run();                         /* warm up, start the thread pool */
  double t0 = now();
  while (now() - t0 < 0.02) { run(); calls++; }
  double start = now();
  while (rounds < 200 && (rounds < 5 || now() - start < seconds)) {
    double t = now();
    for (int i = 0; i < calls; i++) run();
    per_call[rounds++] = (now() - t) / calls;
  }
  qsort(per_call, (size_t)rounds, sizeof(double), cmp_double);
  printf("bench %s: best %.4f ms, median %.4f ms per call (%d rounds of %d calls)\n", name,
         per_call[0] * 1e3, per_call[rounds / 2] * 1e3, rounds, calls);
}

/* ------------------------------------------------------------------------------- wrong arguments */
static int expect_error(const char* what, int rc) {
  const char* msg = net_last_error();
  int ok = rc == -1 && msg && msg[0];
  printf("error %s: rc=%d %s: %s\n", what, rc, ok ? "OK" : "NOT REPORTED", msg ? msg : "(null)");
  return !ok;
}

static DLTensor tensor(void* data, int ndim, int64_t* shape, uint8_t code, uint8_t bits) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = 1;   /* CPU */
  t.ndim = ndim;
  t.dtype.code = code;
  t.dtype.bits = bits;
  t.dtype.lanes = 1;
  t.shape = shape;
  return t;
}

static int errors(void) {
  int bad = 0;
  bad |= expect_error("null-pointer", net_conv(NULL, C.w, C.y));
  bad |= expect_error("misaligned", net_conv(C.x + 1, C.w, C.y));
  int64_t xs[4], ws[4], ys[4];
  memcpy(xs, conv_x_shape, sizeof xs);
  memcpy(ws, conv_w_shape, sizeof ws);
  memcpy(ys, conv_y_shape, sizeof ys);
  DLTensor x = tensor(C.x, 4, xs, 2, 32), w = tensor(C.w, 4, ws, 2, 32), y = tensor(C.y, 4, ys, 2, 32);
  DLTensor* args[3] = {&x, &w, &y};
  if (net_call("conv", args, 3)) { fprintf(stderr, "net_call with right arguments failed: %s\n", net_last_error()); bad = 1; }
  bad |= expect_error("unknown-kernel", net_call("no_such_kernel", args, 3));
  bad |= expect_error("argument-count", net_call("conv", args, 2));
  xs[1] += 1;
  bad |= expect_error("wrong-shape", net_call("conv", args, 3));
  xs[1] -= 1;
  x.dtype.code = 0;   /* int32 instead of float32 */
  bad |= expect_error("wrong-dtype", net_call("conv", args, 3));
  x.dtype.code = 2;
  x.ndim = 3;
  bad |= expect_error("wrong-ndim", net_call("conv", args, 3));
  x.ndim = 4;
  if (net_call("conv", args, 3)) { fprintf(stderr, "net_call after the errors failed: %s\n", net_last_error()); bad = 1; }
  return bad;
}

int main(int argc, char** argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s DATA_DIR [--bench [SECONDS] | --errors]\n", argv[0]); return 1; }
  if (net_check_cpu()) { fprintf(stderr, "%s\n", net_last_error()); return 2; }
  load(argv[1]);
  int rc = check(argv[1]);
  if (rc) return rc;
  if (argc > 2 && strcmp(argv[2], "--errors") == 0) return errors();
  if (argc > 2 && strcmp(argv[2], "--bench") == 0) {
    double seconds = argc > 3 ? atof(argv[3]) : 2.0;
    bench("conv", run_conv, seconds);
    bench("bconv", run_bconv, seconds);
  }
  return 0;
}
