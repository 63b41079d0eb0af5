/* convsched export shim: the small runtime a TVM-generated kernel library needs, in plain C.
 *
 * TVM's LLVM code calls, by symbol, an error setter (TVMFFIErrorSetRaisedFromCStrParts) and, through
 * function-pointer slots that libtvm_runtime would fill, a parallel launcher and a workspace allocator
 * (docs/export.md). This file provides all of them, so an exported library needs nothing but libc and
 * pthreads at run time:
 *   - errors: a thread-local message, read with <lib>_last_error();
 *   - CPU features: checked with CPUID/XGETBV before any kernel runs, so a kernel built for AVX-512 returns
 *     an error code on an AVX2 host instead of dying of SIGILL;
 *   - a persistent thread pool (threads started once; starting them per call cost 50% on a 512^3 matmul);
 *   - 64-byte aligned workspaces.
 * It is compiled WITHOUT -march (generic x86-64) so that the feature check itself runs on any x86-64 CPU.
 *
 * The generated part of the library (kernels.c) defines CS_LIB (the library's name, a string) and the
 * table of required features, then includes this file, then defines the entry points.
 *
 * Over 400 lines: the shim is one self-contained C file, compiled into every exported library.
 */
#include <cpuid.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CS_INTERNAL static
#define CS_HIDDEN __attribute__((visibility("hidden")))
#define CS_EXPORT __attribute__((visibility("default")))

/* ------------------------------------------------------------------ ABI of the TVM-generated code */
typedef struct { int32_t device_type; int32_t device_id; } cs_DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } cs_DLDataType;
typedef struct {
  void* data; cs_DLDevice device; int32_t ndim; cs_DLDataType dtype;
  int64_t* shape; int64_t* strides; uint64_t byte_offset;
} cs_DLTensor;
/* tvm/ffi/c_api.h: TVMFFIAny, 16 bytes; type index 7 = kTVMFFIDLTensorPtr, 0 = None. */
typedef struct {
  int32_t type_index; uint32_t zero_padding;
  union { int64_t v_int64; double v_float64; void* v_ptr; };
} cs_Any;
#define CS_FFI_NONE 0
#define CS_FFI_DLTENSOR_PTR 7
typedef int (*cs_safe_call)(void* self, const cs_Any* args, int32_t nargs, cs_Any* ret);
/* tvm/runtime/c_backend_api.h */
typedef struct { void* sync_handle; int32_t num_task; } cs_ParallelGroupEnv;
typedef int (*cs_ParallelLambda)(int task_id, cs_ParallelGroupEnv* penv, void* cdata);

/* The slots the kernels call through. Weak: a library without parallel loops or workspaces lacks them. */
extern void* __TVMBackendParallelLaunch __attribute__((weak));
extern void* __TVMBackendParallelBarrier __attribute__((weak));
extern void* __TVMBackendAllocWorkspace __attribute__((weak));
extern void* __TVMBackendFreeWorkspace __attribute__((weak));

/* ---------------------------------------------------------------------------------------- errors */
static __thread char cs_error[2048];

CS_INTERNAL void cs_set_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cs_error, sizeof cs_error, fmt, ap);
  va_end(ap);
}

/* Called by the generated code when an argument is wrong (dtype, shape, ndim, strides, device...). */
CS_HIDDEN void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {
  size_t len = (size_t)snprintf(cs_error, sizeof cs_error, "%s: ", kind ? kind : "Error");
  for (int32_t i = 0; i < n && len < sizeof cs_error; i++)
    if (parts[i]) len += (size_t)snprintf(cs_error + len, sizeof cs_error - len, "%s", parts[i]);
}

CS_HIDDEN void TVMFFIErrorSetRaisedFromCStr(const char* kind, const char* message) {
  const char* parts[1] = {message};
  TVMFFIErrorSetRaisedFromCStrParts(kind, parts, 1);
}

/* ---------------------------------------------------------------------------------- CPU features */
typedef struct {
  const char* name;
  uint32_t leaf, subleaf;
  char reg;          /* 'a', 'b', 'c', 'd' */
  int bit;
  uint64_t xcr0;     /* register state the OS must enable (XGETBV) for the feature to be usable */
} cs_feature;

#define CS_XCR0_AVX 0x6ull       /* SSE + AVX (YMM) state */
#define CS_XCR0_AVX512 0xe6ull   /* + opmask, ZMM_Hi256, Hi16_ZMM */
#define CS_XCR0_AMX 0x60000ull   /* XTILECFG, XTILEDATA */

CS_INTERNAL uint64_t cs_xgetbv0(void) {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((uint64_t)edx << 32) | eax;
}

CS_INTERNAL int cs_cpu_has(const cs_feature* f) {
  uint32_t a, b, c, d;
  if (__get_cpuid_max(f->leaf & 0x80000000u, NULL) < f->leaf) return 0;
  __cpuid_count(f->leaf, f->subleaf, a, b, c, d);
  uint32_t r = f->reg == 'a' ? a : f->reg == 'b' ? b : f->reg == 'c' ? c : d;
  if (!((r >> f->bit) & 1u)) return 0;
  if (f->xcr0) {
    __cpuid(1, a, b, c, d);
    if (!((c >> 27) & 1u)) return 0;                 /* OSXSAVE: the OS manages extended state */
    if ((cs_xgetbv0() & f->xcr0) != f->xcr0) return 0;
  }
  return 1;
}

/* Test hook: CONVSCHED_HIDE_CPU_FEATURES="avx2,fma" makes the check treat those features as absent, so the
 * missing-feature path can be exercised on any host. */
CS_INTERNAL int cs_hidden_by_env(const char* name) {
  const char* env = getenv("CONVSCHED_HIDE_CPU_FEATURES");
  size_t n = strlen(name);
  while (env && *env) {
    const char* end = strchr(env, ',');
    size_t len = end ? (size_t)(end - env) : strlen(env);
    if (len == n && strncmp(env, name, n) == 0) return 1;
    env = end ? end + 1 : NULL;
  }
  return 0;
}

/* 0 if every required feature is present; else -1 with the message naming the missing ones. */
CS_INTERNAL int cs_check_features(const cs_feature* req, int n, const char* lib, const char* built_for) {
  char missing[1024] = "";
  size_t len = 0;
  for (int i = 0; i < n; i++)
    if (!cs_cpu_has(&req[i]) || cs_hidden_by_env(req[i].name))
      len += (size_t)snprintf(missing + len, len < sizeof missing ? sizeof missing - len : 0, "%s%s",
                              len ? ", " : "", req[i].name);
  if (!len) return 0;
  cs_set_error("%s: the kernels were built for %s and use CPU features this host lacks: %s; running them "
               "would die of an illegal instruction (SIGILL). Export them for this host (target=\"host\").",
               lib, built_for, missing);
  return -1;
}

/* ----------------------------------------------------------------------------------- workspaces */
CS_INTERNAL void* cs_alloc_workspace(int device_type, int device_id, uint64_t nbytes, int code, int bits) {
  (void)device_type; (void)device_id; (void)code; (void)bits;
  void* p = NULL;
  if (posix_memalign(&p, 64, nbytes ? (size_t)nbytes : 64) != 0) {
    cs_set_error("out of memory: workspace of %llu bytes", (unsigned long long)nbytes);
    return NULL;
  }
  return p;
}

CS_INTERNAL int cs_free_workspace(int device_type, int device_id, void* p) {
  (void)device_type; (void)device_id;
  free(p);
  return 0;
}

/* ---------------------------------------------------------------------------------- thread pool */
/* Workers are started once and wait for jobs: a short spin (a kernel usually follows another), then a
 * condition variable, so idle workers cost nothing on a shared machine. Task t of a launch runs on thread
 * t % nthreads; the calling thread is thread 0. A launch from inside a task, or while another thread's
 * launch is running, runs its tasks serially on the calling thread (correct, just not parallel). */
#define CS_SPIN_NS 10000000  /* 10 ms (TVM's pool spins 300000 yields): a kernel usually follows another */
#define CS_MAX_THREADS 256

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t wake, done;
  pthread_mutex_t launch_mu;
  pthread_t threads[CS_MAX_THREADS];
  int nthreads;                 /* including the calling thread; 0 = not started */
  int stop;
  unsigned start_gen;           /* gen when the workers were started: they wait for the next one */
  cs_ParallelLambda fn;
  void* cdata;
  cs_ParallelGroupEnv env;
  _Atomic unsigned gen;         /* bumped once per launch */
  _Atomic int pending;          /* workers still running the current launch */
  _Atomic int failed;           /* a task returned non-zero */
  _Atomic int barrier_count;
  _Atomic unsigned barrier_gen;
} cs_pool;

static cs_pool cs_the_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
                              PTHREAD_MUTEX_INITIALIZER};
static __thread int cs_in_task = 0;
static int cs_requested_threads = 0;   /* set by <lib>_set_num_threads; 0 = from the environment */

CS_INTERNAL uint64_t cs_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Wait until *v != seen (or, with v NULL, until *count <= 0), yielding the core at each turn, for at most
 * CS_SPIN_NS; 1 if it happened, 0 if the caller should sleep. Yielding matters on a machine shared by more
 * threads than cores: the thread we wait for may need our core (TVM's pool yields the same way). Measured on
 * the shared 2-core Zen 3 at load ~9, conv 8x8x16->32 called from C, 2 threads: pause-only spinning
 * 0.5-3.2 ms per call (the worker waited for a time slice), yielding 0.05-0.07 ms (1 thread: 0.028 ms;
 * TVM's own runtime from Python in the same minute: 0.10-0.15 ms). */
CS_INTERNAL int cs_spin_wait(_Atomic unsigned* v, unsigned seen, _Atomic int* count) {
  uint64_t deadline = 0;
  for (unsigned i = 1;; i++) {
    if (v ? atomic_load_explicit(v, memory_order_acquire) != seen
          : atomic_load_explicit(count, memory_order_acquire) <= 0) return 1;
    if (i < 64) { __builtin_ia32_pause(); continue; }   /* the common case on an idle machine: a few us */
    sched_yield();
    if (i % 16 == 0) {
      uint64_t now = cs_now_ns();
      if (!deadline) deadline = now + CS_SPIN_NS;
      else if (now > deadline) return 0;
    }
  }
}

CS_INTERNAL void cs_run_tasks(cs_pool* p, int self) {
  cs_in_task = 1;
  for (int t = self; t < p->env.num_task; t += p->nthreads)
    if (p->fn(t, &p->env, p->cdata) != 0) atomic_store(&p->failed, 1);
  cs_in_task = 0;
}

CS_INTERNAL void* cs_worker(void* arg) {
  cs_pool* p = &cs_the_pool;
  int self = (int)(intptr_t)arg;
  unsigned seen = p->start_gen;   /* not gen itself: a launch may already have bumped it */
  for (;;) {
    unsigned g = seen;
    if (cs_spin_wait(&p->gen, seen, NULL)) g = atomic_load(&p->gen);
    if (g == seen) {
      pthread_mutex_lock(&p->mu);
      while ((g = atomic_load(&p->gen)) == seen && !p->stop) pthread_cond_wait(&p->wake, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
    if (p->stop) return NULL;
    seen = g;
    cs_run_tasks(p, self);
    if (atomic_fetch_sub(&p->pending, 1) == 1) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
  }
}

CS_INTERNAL int cs_default_threads(void) {
  const char* names[2] = {"CONVSCHED_NUM_THREADS", "TVM_NUM_THREADS"};
  for (int i = 0; i < 2; i++) {
    const char* v = getenv(names[i]);
    if (v && atoi(v) > 0) return atoi(v);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return 1;
}

/* Stop the workers (the next launch starts them again). Caller holds launch_mu. */
CS_INTERNAL void cs_pool_stop(cs_pool* p) {
  if (p->nthreads <= 1) { p->nthreads = 0; return; }
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  atomic_fetch_add(&p->gen, 1);   /* spinning workers see it at once */
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
  p->stop = 0;
  p->nthreads = 0;
}

/* Caller holds launch_mu. */
CS_INTERNAL int cs_pool_start(cs_pool* p) {
  int n = cs_requested_threads > 0 ? cs_requested_threads : cs_default_threads();
  if (n > CS_MAX_THREADS) n = CS_MAX_THREADS;
  p->nthreads = 1;
  p->start_gen = atomic_load(&p->gen);
  for (int i = 1; i < n; i++) {
    if (pthread_create(&p->threads[i], NULL, cs_worker, (void*)(intptr_t)i) != 0) break;
    p->nthreads = i + 1;
  }
  return p->nthreads;
}

CS_INTERNAL int cs_parallel_launch(cs_ParallelLambda fn, void* cdata, int num_task) {
  cs_pool* p = &cs_the_pool;
  if (cs_in_task || pthread_mutex_trylock(&p->launch_mu) != 0) {
    cs_ParallelGroupEnv env = {NULL, num_task > 0 ? num_task : 1};
    for (int t = 0; t < env.num_task; t++)
      if (fn(t, &env, cdata) != 0) return -1;
    return 0;
  }
  if (p->nthreads == 0) cs_pool_start(p);
  p->fn = fn;
  p->cdata = cdata;
  p->env.sync_handle = p;
  p->env.num_task = num_task > 0 ? num_task : p->nthreads;
  atomic_store(&p->failed, 0);
  atomic_store(&p->barrier_count, 0);
  atomic_store(&p->pending, p->nthreads - 1);
  if (p->nthreads > 1) {
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
  }
  cs_run_tasks(p, 0);
  cs_spin_wait(NULL, 0, &p->pending);
  if (atomic_load(&p->pending) > 0) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
  int failed = atomic_load(&p->failed);
  pthread_mutex_unlock(&p->launch_mu);
  return failed ? -1 : 0;
}

/* All tasks of a launch wait for each other (only valid when num_task <= threads, as TVM's own pool). */
CS_INTERNAL int cs_parallel_barrier(int task_id, cs_ParallelGroupEnv* penv) {
  (void)task_id;
  cs_pool* p = &cs_the_pool;
  if (penv->sync_handle != p) return 0;              /* a serial launch: nothing to wait for */
  unsigned g = atomic_load(&p->barrier_gen);
  if (atomic_fetch_add(&p->barrier_count, 1) == penv->num_task - 1) {
    atomic_store(&p->barrier_count, 0);
    atomic_fetch_add(&p->barrier_gen, 1);
  } else {
    while (atomic_load(&p->barrier_gen) == g) sched_yield();
  }
  return 0;
}

CS_INTERNAL int cs_set_num_threads(int n) {
  cs_pool* p = &cs_the_pool;
  if (n < 0) { cs_set_error("%s: number of threads must be >= 0 (0 = default), got %d", CS_LIB, n); return -1; }
  pthread_mutex_lock(&p->launch_mu);
  cs_pool_stop(p);
  cs_requested_threads = n;
  cs_pool_start(p);
  int got = p->nthreads;
  pthread_mutex_unlock(&p->launch_mu);
  return got;
}

/* When the library is unloaded (dlclose), its workers must not outlive their code. Skipped if a kernel is
 * running on another thread at that moment (a process exiting mid-call: the threads end with it). */
__attribute__((destructor)) static void cs_unload(void) {
  cs_pool* p = &cs_the_pool;
  if (pthread_mutex_trylock(&p->launch_mu) != 0) return;
  cs_pool_stop(p);
  pthread_mutex_unlock(&p->launch_mu);
}

/* ------------------------------------------------------------------------------------ readiness */
static _Atomic int cs_ready = 0;     /* 1 = the CPU and the environment were checked and are fine */

/* The thread-count variables, when set, must be positive integers: "abc" or "0" is an error of the first call
 * (-1 and a message), not a silent fall back to the default. Not checked once <lib>_set_num_threads(n > 0)
 * chose the threads. */
CS_INTERNAL int cs_check_thread_env(void) {
  if (cs_requested_threads > 0) return 0;
  const char* names[2] = {"CONVSCHED_NUM_THREADS", "TVM_NUM_THREADS"};
  for (int i = 0; i < 2; i++) {
    const char* v = getenv(names[i]);
    if (!v) continue;
    char* end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > 1 << 20) {
      cs_set_error("%s: %s must be a positive integer (threads per kernel), got '%.64s'", CS_LIB, names[i], v);
      return -1;
    }
  }
  return 0;
}

CS_INTERNAL void cs_fill_slots(void) {
  if (&__TVMBackendParallelLaunch) __TVMBackendParallelLaunch = (void*)cs_parallel_launch;
  if (&__TVMBackendParallelBarrier) __TVMBackendParallelBarrier = (void*)cs_parallel_barrier;
  if (&__TVMBackendAllocWorkspace) __TVMBackendAllocWorkspace = (void*)cs_alloc_workspace;
  if (&__TVMBackendFreeWorkspace) __TVMBackendFreeWorkspace = (void*)cs_free_workspace;
}

/* A DLTensor view of a C-contiguous buffer on the CPU. */
CS_INTERNAL cs_Any cs_tensor_arg(cs_DLTensor* t, void* data, int ndim, const int64_t* shape, uint8_t code,
                                 uint8_t bits) {
  t->data = data;
  t->device.device_type = 1;   /* kDLCPU */
  t->device.device_id = 0;
  t->ndim = ndim;
  t->dtype.code = code;
  t->dtype.bits = bits;
  t->dtype.lanes = 1;
  t->shape = (int64_t*)shape;
  t->strides = NULL;
  t->byte_offset = 0;
  cs_Any a;
  a.type_index = CS_FFI_DLTENSOR_PTR;
  a.zero_padding = 0;
  a.v_ptr = t;
  return a;
}

/* One argument of a kernel, for checking the DLTensors handed to <lib>_call. */
typedef struct {
  const char* name;
  int32_t ndim;
  const int64_t* shape;
  uint8_t code, bits;
  uint64_t nbytes;
  int output;
} cs_argspec;

/* No output may share memory with another argument: the kernels read their inputs while they write their
 * outputs, so an output laid over an input would be read half overwritten: a wrong result, not an error. */
CS_INTERNAL int cs_check_overlap(const char* entry, const cs_argspec* specs, const void* const* ptrs, int n) {
  for (int i = 0; i < n; i++) {
    if (!specs[i].output) continue;
    uintptr_t a0 = (uintptr_t)ptrs[i], a1 = a0 + specs[i].nbytes;
    for (int j = 0; j < n; j++) {
      uintptr_t b0 = (uintptr_t)ptrs[j], b1 = b0 + specs[j].nbytes;
      if (j != i && a0 < b1 && b0 < a1) {
        cs_set_error("%s: output '%s' shares memory with argument '%s'; give it a buffer of its own", entry,
                     specs[i].name, specs[j].name);
        return -1;
      }
    }
  }
  return 0;
}

/* A DLTensor handed to <lib>_call, checked against the kernel's argument before TVM's code reads it: that
 * code reads shape[0..ndim) and strides without a NULL check, so a NULL shape, a wrong ndim or odd strides
 * would crash it or make it read past the arrays. Every mismatch is -1 with a message naming the tensor. */
CS_INTERNAL int cs_check_tensor(const char* entry, const char* kernel, int i, const cs_DLTensor* t,
                                const cs_argspec* spec) {
  if (!t) { cs_set_error("%s: kernel '%s': tensor %d (%s) is NULL", entry, kernel, i, spec->name); return -1; }
  if (t->ndim != spec->ndim) {
    cs_set_error("%s: kernel '%s': tensor %d (%s) has ndim %d, expected %d", entry, kernel, i, spec->name,
                 (int)t->ndim, (int)spec->ndim);
    return -1;
  }
  if (spec->ndim > 0 && !t->shape) {
    cs_set_error("%s: kernel '%s': tensor %d (%s): shape is NULL", entry, kernel, i, spec->name);
    return -1;
  }
  for (int d = 0; d < spec->ndim; d++)
    if (t->shape[d] != spec->shape[d]) {
      cs_set_error("%s: kernel '%s': tensor %d (%s): shape[%d] is %lld, expected %lld", entry, kernel, i,
                   spec->name, d, (long long)t->shape[d], (long long)spec->shape[d]);
      return -1;
    }
  if (t->dtype.code != spec->code || t->dtype.bits != spec->bits || t->dtype.lanes != 1) {
    cs_set_error("%s: kernel '%s': tensor %d (%s): dtype (code %u, bits %u, lanes %u), expected (code %u, "
                 "bits %u, lanes 1)", entry, kernel, i, spec->name, (unsigned)t->dtype.code,
                 (unsigned)t->dtype.bits, (unsigned)t->dtype.lanes, (unsigned)spec->code, (unsigned)spec->bits);
    return -1;
  }
  if (t->device.device_type != 1 || t->device.device_id != 0) {
    cs_set_error("%s: kernel '%s': tensor %d (%s): device (%d, %d), expected the CPU (1, 0)", entry, kernel, i,
                 spec->name, (int)t->device.device_type, (int)t->device.device_id);
    return -1;
  }
  if (t->strides) {   /* NULL is C-contiguous; otherwise exactly the compact row-major strides (size-1 dims: any) */
    int64_t expect = 1;
    for (int d = spec->ndim - 1; d >= 0; d--) {
      if (spec->shape[d] != 1 && t->strides[d] != expect) {
        cs_set_error("%s: kernel '%s': tensor %d (%s): strides[%d] is %lld, expected %lld (a C-contiguous "
                     "buffer; or pass strides NULL)", entry, kernel, i, spec->name, d, (long long)t->strides[d],
                     (long long)expect);
        return -1;
      }
      expect *= spec->shape[d];
    }
  }
  if (t->byte_offset) {
    cs_set_error("%s: kernel '%s': tensor %d (%s): byte_offset is %llu; point data at the first element "
                 "(byte_offset 0)", entry, kernel, i, spec->name, (unsigned long long)t->byte_offset);
    return -1;
  }
  if (!t->data || (uintptr_t)t->data % 64) {
    cs_set_error("%s: kernel '%s': tensor %d (%s): data is NULL or not 64-byte aligned", entry, kernel, i,
                 spec->name);
    return -1;
  }
  return 0;
}

/* NULL and alignment: the generated code assumes 64-byte aligned buffers (aligned vector loads). */
CS_INTERNAL int cs_check_pointer(const char* entry, const char* arg, const void* ptr) {
  if (!ptr) { cs_set_error("%s: argument '%s' is NULL", entry, arg); return -1; }
  if ((uintptr_t)ptr % 64) {
    cs_set_error("%s: argument '%s' (address %p) is not 64-byte aligned; allocate buffers with "
                 "aligned_alloc(64, size)", entry, arg, ptr);
    return -1;
  }
  return 0;
}
