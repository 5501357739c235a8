/* The load generator of the balancing rows (issue 15): unary gaio.bench.Echo/Say calls on an
 * rpc_channel (the //rpc client, its balancer included, unlike rpc_loadgen's raw frames) to a
 * target of several replicas, e.g. "127.0.0.1:P1,127.0.0.2:P2,127.0.0.3:P3" or a dns:/// name.
 *
 * rpc_lb_load --target T [--balancer p2c|round_robin|pick_first] [--window W] [--size S]
 *             [--duration S] [--warmup S] [--resolver IP:PORT]
 * Keeps --window calls in flight (one rpc_cq, one thread submitting and collecting); measures
 * after --warmup, for --duration. Every reply's payload is checked. Prints one line: mode=lb
 * balancer= window= size= duration_s= reqs= req_s= p50_us= p99_us= p999_us= max_us= errors=
 * share=F1/F2/.. (the fraction of the measured calls answered by each endpoint, in target
 * order, from rpc_channel_get_stats()); exits 0, 1 on a failed call or a wrong reply, 2 on bad
 * flags. Latency is from the submit to the completion's collection, of the calls submitted in
 * the measured period. The run starts once every endpoint is connected (a SYN lost on a busy
 * machine costs a second, which would otherwise land in the percentiles). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "tests/bench/bench_echo.rpc.h"
#include "tests/bench/bench_util.h"
#include "tests/bench/hist.h"

#define WINDOW_MAX 4096L        /* --window */
#define SIZE_MAX_BYTES 65536L   /* --size */
#define CALL_TIMEOUT_MS 10000   /* per call: a lost call fails the run instead of hanging it */
#define BATCH 64                /* completions collected per rpc_cq_wait() */
#define WAIT_MS 100             /* rpc_cq_wait() timeout: the clock is looked at this often */
#define SHARE_TEXT_MAX 1024u    /* bytes of the share= field */
#define READY_WAIT_MS 10000   /* for every endpoint's first connection, before the run */
#define READY_POLL_US 10000
#define NS_PER_US 1000.0

typedef struct lb_args {
  const char *target, *resolver;
  int balancer;
  const char *balancer_name;
  long window, size;
  double duration, warmup;
} lb_args;

static const char *const flags[] = {
    "--target T        the channel target: host:port,... or dns:///name:port (required)",
    "--balancer NAME   p2c, round_robin or pick_first (default p2c)",
    "--window W        calls in flight (default 32)",
    "--size S          payload bytes per call (default 64)",
    "--duration S      measured seconds (default 3)",
    "--warmup S        seconds before measuring (default 1)",
    "--resolver IP:P   the DNS server of a dns:/// target (default: the system's)",
    NULL};
static const ex_usage usage = {
    "--target T [--balancer p2c|round_robin|pick_first] [--window W] [--size S] "
    "[--duration S] [--warmup S] [--resolver IP:PORT]",
    flags};

static int parse_balancer(const char *v, int *out) {
  static const struct { const char *name; int lb; } names[] = {
      {"p2c", RPC_LB_P2C}, {"round_robin", RPC_LB_ROUND_ROBIN}, {"pick_first", RPC_LB_PICK_FIRST}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(v, names[i].name) == 0) return *out = names[i].lb, 0;
  fprintf(stderr, "rpc_lb_load: --balancer %s: not p2c, round_robin or pick_first\n", v);
  return -EINVAL;
}

static int parse_args(int argc, char **argv, lb_args *a) {
  for (int i = 1; i < argc; i++) {
    const char *flag = argv[i], *v = bench_flag_value(argc, argv, &i);
    if (v == NULL) return -EINVAL;
    int rc = 0;
    if (strcmp(flag, "--target") == 0) a->target = v;
    else if (strcmp(flag, "--resolver") == 0) a->resolver = v;
    else if (strcmp(flag, "--balancer") == 0) rc = parse_balancer(v, &a->balancer), a->balancer_name = v;
    else if (strcmp(flag, "--window") == 0) rc = bench_parse_long(flag, v, 1, WINDOW_MAX, &a->window);
    else if (strcmp(flag, "--size") == 0) rc = bench_parse_long(flag, v, 0, SIZE_MAX_BYTES, &a->size);
    else if (strcmp(flag, "--duration") == 0) rc = bench_parse_seconds(flag, v, &a->duration);
    else if (strcmp(flag, "--warmup") == 0) rc = bench_parse_seconds(flag, v, &a->warmup);
    else {
      fprintf(stderr, "rpc_lb_load: unknown flag %s\n", flag);
      rc = -EINVAL;
    }
    if (rc != 0) return -EINVAL;
  }
  if (a->target == NULL || a->duration <= 0) {
    fprintf(stderr, "rpc_lb_load: --target is required and --duration must be > 0\n");
    return -EINVAL;
  }
  return 0;
}

/* The calls answered so far by each endpoint (every status), in target order, into n[0..max). */
static size_t answered(rpc_channel *ch, uint64_t *n, size_t max) {
  rpc_channel_stats st;
  if (rpc_channel_get_stats(ch, &st) < 0) return 0;
  size_t k = st.nendpoints < max ? st.nendpoints : max;
  for (size_t i = 0; i < k; i++) {
    n[i] = 0;
    for (unsigned s = 0; s < RPC_STATUS_CODES; s++) n[i] += st.endpoints[i].calls[s];
  }
  rpc_channel_stats_free(&st);
  return k;
}

/* Wait until every endpoint of the channel is ready (and there is at least one; with pick_first,
 * which uses one, until one is). Returns 0, or -ETIMEDOUT after READY_WAIT_MS. */
static int wait_ready(rpc_channel *ch, int one) {
  for (long waited = 0; waited < READY_WAIT_MS * 1000L; waited += READY_POLL_US) {
    rpc_channel_stats st;
    if (rpc_channel_get_stats(ch, &st) == 0) {
      size_t ready = 0;
      for (size_t i = 0; i < st.nendpoints; i++) ready += st.endpoints[i].state == RPC_ENDPOINT_READY;
      int all = st.nendpoints > 0 && (one ? ready > 0 : ready == st.nendpoints);
      rpc_channel_stats_free(&st);
      if (all) return 0;
    }
    usleep(READY_POLL_US);
  }
  fprintf(stderr, "rpc_lb_load: not every endpoint connected within %d ms\n", READY_WAIT_MS);
  return -ETIMEDOUT;
}

typedef struct run {
  rpc_channel *ch;
  rpc_cq *cq;
  Gaio__Bench__EchoMsg req;
  uint64_t *sent;        /* per window slot: submit time (ns) */
  long in_flight;
  uint64_t measure_from, measure_to;
  uint64_t reqs, errors;
  hist h;
} run;

static int submit(run *r, long slot) {
  r->sent[slot] = bench_now_ns();
  rpc_call_options o = {.timeout_ms = CALL_TIMEOUT_MS};
  int rc = gaio__bench__echo__say_submit(r->ch, &r->req, &o, r->cq, (void *)(intptr_t)slot, NULL);
  if (rc < 0) {
    fprintf(stderr, "rpc_lb_load: submit: %s\n", strerror(-rc));
    return rc;
  }
  r->in_flight++;
  return 0;
}

/* One completion: check it, count it if it ended in the measured period, and submit the next
 * call of its slot while the run lasts. */
static int complete(run *r, const rpc_completion *c, uint64_t now) {
  long slot = (long)(intptr_t)c->ctx;
  Gaio__Bench__EchoMsg *m = gaio__bench__echo__say_reply(c);
  int ok = m != NULL && m->payload.len == r->req.payload.len &&
           (m->payload.len == 0 || memcmp(m->payload.data, r->req.payload.data, m->payload.len) == 0);
  if (!ok) {
    r->errors++;
    fprintf(stderr, "rpc_lb_load: call failed: %s %s\n", rpc_status_name(c->status), c->message);
  }
  if (c->reply) protobuf_c_message_free_unpacked(c->reply, NULL);
  r->in_flight--;
  if (r->sent[slot] >= r->measure_from && now < r->measure_to) {
    r->reqs++;
    hist_add(&r->h, now - r->sent[slot]);
  }
  return now < r->measure_to ? submit(r, slot) : 0;
}

static int drive(run *r, const lb_args *a, uint64_t *before, uint64_t *after, size_t *neps) {
  for (long i = 0; i < a->window; i++)
    if (submit(r, i) < 0) return -1;
  uint64_t start = bench_now_ns();
  r->measure_from = start + (uint64_t)(a->warmup * 1e9);
  r->measure_to = r->measure_from + (uint64_t)(a->duration * 1e9);
  int snapped = 0;
  rpc_completion out[BATCH];
  while (r->in_flight > 0) {
    int n = rpc_cq_wait(r->cq, out, BATCH, WAIT_MS);
    uint64_t now = bench_now_ns();
    if (!snapped && now >= r->measure_from) {
      snapped = 1;
      answered(r->ch, before, RPC_MAX_ENDPOINTS);
    }
    for (int i = 0; i < n; i++)
      if (complete(r, &out[i], now) < 0) return -1;
  }
  *neps = answered(r->ch, after, RPC_MAX_ENDPOINTS);
  return 0;
}

static void print_result(const run *r, const lb_args *a, const uint64_t *before,
                         const uint64_t *after, size_t neps) {
  uint64_t total = 0;
  for (size_t i = 0; i < neps; i++) total += after[i] - before[i];
  char share[SHARE_TEXT_MAX] = "";
  size_t off = 0;
  for (size_t i = 0; i < neps && off < sizeof share; i++)
    off += (size_t)snprintf(share + off, sizeof share - off, "%s%.3f", i ? "/" : "",
                            total ? (double)(after[i] - before[i]) / (double)total : 0.0);
  printf("mode=lb balancer=%s window=%ld size=%ld duration_s=%.3f reqs=%llu req_s=%.0f "
         "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%llu share=%s\n",
         a->balancer_name, a->window, a->size, a->duration, (unsigned long long)r->reqs,
         (double)r->reqs / a->duration, (double)hist_quantile(&r->h, 0.5) / NS_PER_US,
         (double)hist_quantile(&r->h, 0.99) / NS_PER_US,
         (double)hist_quantile(&r->h, 0.999) / NS_PER_US, (double)r->h.max / NS_PER_US,
         (unsigned long long)r->errors, share);
}

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  lb_args a = {.balancer = RPC_LB_P2C, .balancer_name = "p2c", .window = 32, .size = 64,
               .duration = 3, .warmup = 1};
  if (parse_args(argc, argv, &a) != 0) ex_usage_exit(&usage, 2);
  static run r; /* the histogram is large: not on the stack */
  static uint64_t before[RPC_MAX_ENDPOINTS], after[RPC_MAX_ENDPOINTS];
  uint8_t *payload = malloc(a.size ? (size_t)a.size : 1);
  r.sent = calloc((size_t)a.window, sizeof *r.sent);
  if (!payload || !r.sent) return fprintf(stderr, "rpc_lb_load: out of memory\n"), 1;
  for (long i = 0; i < a.size; i++) payload[i] = (uint8_t)('a' + i % 26);
  r.req = (Gaio__Bench__EchoMsg)GAIO__BENCH__ECHO_MSG__INIT;
  r.req.payload.data = payload;
  r.req.payload.len = (size_t)a.size;
  rpc_channel_options o = {.balancer = a.balancer, .resolver = a.resolver, .wait_for_ready = 1,
                           .max_pending_calls = (unsigned)a.window};
  int rc = rpc_channel_create(&r.ch, a.target, &o);
  if (rc < 0) return fprintf(stderr, "rpc_lb_load: %s: %s\n", a.target, strerror(-rc)), 1;
  if ((rc = rpc_cq_create(&r.cq)) < 0) return fprintf(stderr, "rpc_lb_load: cq: %s\n", strerror(-rc)), 1;
  size_t neps = 0;
  rc = wait_ready(r.ch, a.balancer == RPC_LB_PICK_FIRST);
  if (rc == 0) rc = drive(&r, &a, before, after, &neps);
  rpc_channel_destroy(r.ch);
  rpc_cq_destroy(r.cq);
  if (rc == 0) print_result(&r, &a, before, after, neps);
  free(r.sent);
  free(payload);
  return rc == 0 && r.errors == 0 ? 0 : 1;
}
