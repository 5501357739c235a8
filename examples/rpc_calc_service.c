/* demo.v1.Echo and demo.v1.Calculator: a synchronous handler (Say, Add, Divide) replies with a
 * message on its stack; Sleep replies later, from another thread, through the call handle.
 *
 * Why one timer thread and a bounded heap: the first version started a thread per Sleep call,
 * each waking every 5 ms to look at rpc_call_cancelled(). With 1000 sleeping calls the wakeups
 * starved the server's workers (PINGs answered 0.3-2 s late), and a server admits up to 65,536
 * calls. Now the handler only pushes the call on a min-heap by due time, of at most max_pending
 * entries (one more fails at once with RESOURCE_EXHAUSTED); one thread waits on a condition
 * variable until the earliest due time and replies. Cancellation needs no wakeup per call: while
 * sleeps are pending the thread also wakes every SLEEP_SWEEP_MS and completes the cancelled
 * ones. Completions run outside the lock, in batches. */
#include "examples/rpc_calc_service.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "examples/rpc_calc.pb-c.h"

#define SAY_MAX 1024      /* bytes of text echoed back */
#define SLEEP_BATCH 64    /* calls completed per round, outside the lock */
#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

struct sleep_entry {
  uint64_t due;   /* CLOCK_MONOTONIC, ns */
  uint64_t seq;   /* arrival order: FIFO among equal due times */
  rpc_call *call;
};

struct calc_service {
  Demo__V1__Echo_Service echo; /* first: the Echo handlers get a pointer to it */
  Demo__V1__Calculator_Service calc;
  pthread_mutex_t mu;
  pthread_cond_t cv;          /* CLOCK_MONOTONIC; signalled for a new earliest sleep, or stop */
  pthread_t timer;
  int timer_running;          /* the thread exists and is not joined (stop's thread only) */
  int stopping;               /* under mu: no more sleeps are taken */
  struct sleep_entry *heap;   /* min-heap by (due, seq) of n entries, cap allocated */
  size_t n, cap;
  uint64_t seq;
  uint64_t next_sweep;        /* when to look for cancelled sleeps next (while n > 0) */
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail: the clock id is valid */
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---- The heap ------------------------------------------------------------------------------ */

static int before(const struct sleep_entry *a, const struct sleep_entry *b) {
  return a->due != b->due ? a->due < b->due : a->seq < b->seq;
}

static void swap(struct sleep_entry *h, size_t i, size_t j) {
  struct sleep_entry t = h[i];
  h[i] = h[j];
  h[j] = t;
}

static size_t sift_up(struct sleep_entry *h, size_t i) {
  while (i > 0 && before(&h[i], &h[(i - 1) / 2])) {
    swap(h, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
  return i;
}

static void sift_down(struct sleep_entry *h, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && before(&h[l], &h[m])) m = l;
    if (r < n && before(&h[r], &h[m])) m = r;
    if (m == i) return;
    swap(h, i, m);
    i = m;
  }
}

static rpc_call *heap_pop(calc_service *cs) {
  rpc_call *call = cs->heap[0].call;
  cs->heap[0] = cs->heap[--cs->n];
  sift_down(cs->heap, cs->n, 0);
  return call;
}

/* ---- The timer thread ---------------------------------------------------------------------- */

/* Move the cancelled sleeps (at most max) to out and restore the heap order of the others.
 * O(n), but n <= max_pending and it runs every SLEEP_SWEEP_MS at most. */
static size_t take_cancelled(calc_service *cs, rpc_call **out, size_t max) {
  size_t taken = 0, kept = 0;
  for (size_t i = 0; i < cs->n; i++) {
    if (taken < max && rpc_call_cancelled(cs->heap[i].call)) out[taken++] = cs->heap[i].call;
    else cs->heap[kept++] = cs->heap[i];
  }
  cs->n = kept;
  if (taken > 0)
    for (size_t i = kept / 2; i-- > 0;) sift_down(cs->heap, kept, i);
  return taken;
}

/* Under mu: move to out (at most max) the sleeps that are due, or if none is and a sweep is
 * due, the cancelled ones. A full batch leaves the sweep due, so the next round goes on. */
static size_t take_ready(calc_service *cs, uint64_t now, rpc_call **out, size_t max) {
  size_t n = 0;
  while (n < max && cs->n > 0 && cs->heap[0].due <= now) out[n++] = heap_pop(cs);
  if (n == 0 && cs->n > 0 && cs->next_sweep <= now) {
    n = take_cancelled(cs, out, max);
    if (n < max) cs->next_sweep = now + SLEEP_SWEEP_MS * NS_PER_MS;
  }
  return n;
}

/* Reply as the thread-per-call version did: "woke up", or "cancelled" for a call that the
 * server has already answered (DEADLINE_EXCEEDED sent, CANCEL received; the reply is dropped,
 * but every handler invocation must still be completed). */
static void reply_all(rpc_call **calls, size_t n) {
  for (size_t i = 0; i < n; i++) {
    Demo__V1__EchoReply out = DEMO__V1__ECHO_REPLY__INIT;
    out.text = rpc_call_cancelled(calls[i]) ? "cancelled" : "woke up";
    rpc_call_reply(calls[i], &out.base);
  }
}

/* Under mu: sleep until the earliest due time or the next sweep, or until signalled. */
static void wait_next(calc_service *cs) {
  if (cs->n == 0) {
    pthread_cond_wait(&cs->cv, &cs->mu);
    return;
  }
  uint64_t at = cs->heap[0].due < cs->next_sweep ? cs->heap[0].due : cs->next_sweep;
  struct timespec ts = {(time_t)(at / NS_PER_S), (long)(at % NS_PER_S)};
  pthread_cond_timedwait(&cs->cv, &cs->mu, &ts); /* ETIMEDOUT is the usual way out */
}

static void *timer_main(void *arg) {
  calc_service *cs = arg;
  rpc_call *batch[SLEEP_BATCH];
  pthread_mutex_lock(&cs->mu);
  while (!cs->stopping) {
    size_t n = take_ready(cs, now_ns(), batch, SLEEP_BATCH);
    if (n == 0) {
      wait_next(cs);
      continue;
    }
    pthread_mutex_unlock(&cs->mu);
    reply_all(batch, n);
    pthread_mutex_lock(&cs->mu);
  }
  pthread_mutex_unlock(&cs->mu);
  return NULL;
}

/* ---- Handlers ------------------------------------------------------------------------------ */

static void echo_say(Demo__V1__Echo_Service *svc, const Demo__V1__EchoRequest *in,
                     Demo__V1__EchoReply_Closure closure, void *data) {
  char text[SAY_MAX + 8];
  snprintf(text, sizeof text, "echo: %.*s", SAY_MAX, in->text);
  Demo__V1__EchoReply out = DEMO__V1__ECHO_REPLY__INIT;
  out.text = text;
  closure(&out, data); /* packed here: the stack buffer may go away afterwards */
}

/* Queue call to be answered ms from now. Returns 0, -EAGAIN (max_pending sleeps waiting) or
 * -ESHUTDOWN (stopped). */
static int sleep_push(calc_service *cs, rpc_call *call, int ms) {
  uint64_t now = now_ns();
  pthread_mutex_lock(&cs->mu);
  int rc = cs->stopping ? -ESHUTDOWN : cs->n == cs->cap ? -EAGAIN : 0;
  if (rc == 0) {
    if (cs->n == 0) cs->next_sweep = now + SLEEP_SWEEP_MS * NS_PER_MS;
    struct sleep_entry *e = &cs->heap[cs->n];
    e->due = now + (uint64_t)ms * NS_PER_MS;
    e->seq = cs->seq++;
    e->call = call;
    /* Wake the timer thread only when this sleep is the new earliest one. */
    if (sift_up(cs->heap, cs->n++) == 0) pthread_cond_signal(&cs->cv);
  }
  pthread_mutex_unlock(&cs->mu);
  return rc;
}

static void echo_sleep(Demo__V1__Echo_Service *svc, const Demo__V1__EchoRequest *in,
                       Demo__V1__EchoReply_Closure closure, void *data) {
  calc_service *cs = (calc_service *)svc;
  rpc_call *call = rpc_server_call(data);
  int ms = in->delay_ms < 0 ? 0 : in->delay_ms > SLEEP_MAX_MS ? SLEEP_MAX_MS : in->delay_ms;
  int rc = sleep_push(cs, call, ms);
  if (rc == -EAGAIN) {
    char msg[96];
    snprintf(msg, sizeof msg, "too many Sleep calls pending (limit %zu)", cs->cap);
    rpc_call_fail(call, RPC_STATUS_RESOURCE_EXHAUSTED, msg);
  } else if (rc == -ESHUTDOWN) {
    rpc_call_fail(call, RPC_STATUS_UNAVAILABLE, "service stopping");
  }
}

static void calc_add(Demo__V1__Calculator_Service *svc, const Demo__V1__CalcRequest *in,
                     Demo__V1__CalcReply_Closure closure, void *data) {
  Demo__V1__CalcReply out = DEMO__V1__CALC_REPLY__INIT;
  if (__builtin_add_overflow(in->a, in->b, &out.result)) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_OUT_OF_RANGE, "sum overflows int64");
    return;
  }
  closure(&out, data);
}

static void calc_divide(Demo__V1__Calculator_Service *svc, const Demo__V1__CalcRequest *in,
                        Demo__V1__CalcReply_Closure closure, void *data) {
  if (in->b == 0) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_INVALID_ARGUMENT, "division by zero");
    return;
  }
  if (in->a == INT64_MIN && in->b == -1) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_OUT_OF_RANGE, "quotient overflows int64");
    return;
  }
  Demo__V1__CalcReply out = DEMO__V1__CALC_REPLY__INIT;
  out.result = in->a / in->b;
  closure(&out, data);
}

/* ---- Lifecycle ----------------------------------------------------------------------------- */

/* The mutex and a condition variable on CLOCK_MONOTONIC (a wall clock step must not stretch or
 * cut a sleep). Returns 0 or a negative errno, with nothing left to destroy. */
static int init_sync(calc_service *cs) {
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc != 0) return -rc;
  rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (rc == 0) rc = pthread_cond_init(&cs->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0) return -rc;
  rc = pthread_mutex_init(&cs->mu, NULL);
  if (rc != 0) pthread_cond_destroy(&cs->cv);
  return -rc;
}

/* Start the timer thread with every signal blocked: it inherits the mask, and a signal such as
 * SIGINT must go to a thread of the program that waits for it, not to this one. */
static int start_timer(calc_service *cs) {
  sigset_t all, old;
  sigfillset(&all);
  int rc = pthread_sigmask(SIG_SETMASK, &all, &old);
  if (rc != 0) return -rc;
  rc = pthread_create(&cs->timer, NULL, timer_main, cs);
  pthread_sigmask(SIG_SETMASK, &old, NULL); /* cannot fail: it just returned this set */
  if (rc != 0) return -rc;
  cs->timer_running = 1;
  return 0;
}

int calc_service_create(calc_service **out, unsigned max_pending) {
  *out = NULL;
  if (max_pending > SLEEP_MAX_PENDING) return -EINVAL;
  calc_service *cs = calloc(1, sizeof *cs);
  if (!cs) return -ENOMEM;
  cs->echo = (Demo__V1__Echo_Service)DEMO__V1__ECHO__INIT(echo_);
  cs->calc = (Demo__V1__Calculator_Service)DEMO__V1__CALCULATOR__INIT(calc_);
  cs->cap = max_pending ? max_pending : SLEEP_MAX_PENDING;
  cs->heap = calloc(cs->cap, sizeof *cs->heap);
  int rc = cs->heap ? init_sync(cs) : -ENOMEM;
  if (rc == 0 && (rc = start_timer(cs)) < 0) {
    pthread_cond_destroy(&cs->cv);
    pthread_mutex_destroy(&cs->mu);
  }
  if (rc < 0) {
    free(cs->heap);
    free(cs);
    return rc;
  }
  *out = cs;
  return 0;
}

int calc_service_add(calc_service *cs, rpc_server *s) {
  int rc = rpc_server_add_service(s, &cs->echo.base);
  if (rc == 0) rc = rpc_server_add_service(s, &cs->calc.base);
  return rc;
}

size_t calc_service_pending(calc_service *cs) {
  pthread_mutex_lock(&cs->mu);
  size_t n = cs->n;
  pthread_mutex_unlock(&cs->mu);
  return n;
}

void calc_service_stop(calc_service *cs) {
  pthread_mutex_lock(&cs->mu);
  cs->stopping = 1;
  pthread_cond_signal(&cs->cv);
  pthread_mutex_unlock(&cs->mu);
  if (cs->timer_running) {
    pthread_join(cs->timer, NULL); /* cannot fail: a joinable thread, joined once */
    cs->timer_running = 0;
  }
  /* No sleep is added any more; answer the ones left, a batch at a time outside the lock. */
  rpc_call *batch[SLEEP_BATCH];
  for (;;) {
    size_t n = 0;
    pthread_mutex_lock(&cs->mu);
    while (n < SLEEP_BATCH && cs->n > 0) batch[n++] = cs->heap[--cs->n].call;
    pthread_mutex_unlock(&cs->mu);
    if (n == 0) return;
    for (size_t i = 0; i < n; i++)
      rpc_call_fail(batch[i], RPC_STATUS_UNAVAILABLE, "service stopping");
  }
}

void calc_service_destroy(calc_service *cs) {
  if (!cs) return;
  calc_service_stop(cs);
  pthread_cond_destroy(&cs->cv);
  pthread_mutex_destroy(&cs->mu);
  free(cs->heap);
  free(cs);
}
