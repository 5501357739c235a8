/* kv_load -a TARGET [--resolver IP:PORT] [-d seconds] [-w window] [--balancer NAME]: a load
 * client of kv.v1.KeyValue for several replicas behind one name (tools/cluster_demo.sh). It keeps
 * `window` calls in flight through the typed helpers (examples/kv.rpc.h: ..._put_submit(),
 * ..._get_submit() into one rpc_cq), each slot alternating Put and Get of its own key. Get and
 * Put are named idempotent (channel option idempotent_methods), so a call that a dying replica
 * leaves unanswered is retried on another one within the retry budget.
 *
 * Once a second it prints the calls each replica answered in that second, from the channel's own
 * per-endpoint counters (rpc_channel_get_stats(): the endpoint that gave a call its final
 * answer), the state of a replica that is not ready, and the calls that failed (a final status
 * other than OK and NOT_FOUND: the replicas share no data, so a Get answered by another replica
 * than its Put is NOT_FOUND, which counts as served). At the end:
 *   kv_load: summary calls=N failed=F last_second=ADDR=n,ADDR=n,...
 * Exits 0 when no call failed, 1 otherwise, 2 on bad flags. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "examples/kv.rpc.h"
#include "rpc/rpc.h"

#define DEFAULT_WINDOW 16
#define WINDOW_MAX 1024
#define SECONDS_MAX 3600
#define CALL_TIMEOUT_MS 3000   /* per call, retries included */
#define RESOLVE_INTERVAL_MS 1000
#define BACKOFF_INITIAL_MS 100 /* reconnect attempts to a dead replica: from 100 ms apart, */
#define BACKOFF_MAX_MS 500     /* growing to at most 500 ms (the defaults are 1 s and 120 s) */
#define BATCH 64               /* completions per rpc_cq_wait() */
#define WAIT_MS 50
#define KEY_MAX 32
#define REPORT_MAX 2048u       /* bytes of one report line */
#define NS_PER_MS 1000000u

static const char *const idempotent[] = {"kv.v1.KeyValue/Get", "kv.v1.KeyValue/Put"};

typedef struct slot {
  char key[KEY_MAX];
  int put_next; /* 1: the next call is a Put */
} slot;

typedef struct load {
  rpc_channel *ch;
  rpc_cq *cq;
  slot slots[WINDOW_MAX];
  long in_flight;
  uint64_t calls, failed;
  uint64_t seen[RPC_MAX_ENDPOINTS]; /* answers per endpoint at the last report */
  uint64_t last[RPC_MAX_ENDPOINTS]; /* answers per endpoint in the last second */
  char addr[RPC_MAX_ENDPOINTS][RPC_ADDRESS_MAX];
  size_t neps;
} load;

static int usage(FILE *to, int code) {
  fprintf(to,
          "usage: kv_load -a TARGET [options]\n"
          "  -a TARGET           dns:///name:port, or host:port,... (required)\n"
          "  --resolver IP:PORT  the DNS server for a dns:/// target (default: the system's)\n"
          "  -d SECONDS          how long to run, 1..%d (default 10)\n"
          "  -w WINDOW           calls in flight, 1..%d (default %d)\n"
          "  --balancer NAME     p2c, round_robin or pick_first (default p2c)\n"
          "  -h, --help          this help\n"
          "Exits 0 when no call failed.\n",
          SECONDS_MAX, WINDOW_MAX, DEFAULT_WINDOW);
  return code;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int submit(load *l, long i) {
  slot *s = &l->slots[i];
  rpc_call_options o = {.timeout_ms = CALL_TIMEOUT_MS};
  int rc;
  if (s->put_next) {
    Kv__V1__PutRequest req = KV__V1__PUT_REQUEST__INIT;
    req.key = s->key;
    req.value.data = (uint8_t *)s->key;
    req.value.len = strlen(s->key);
    rc = kv__v1__key_value__put_submit(l->ch, &req, &o, l->cq, (void *)(intptr_t)i, NULL);
  } else {
    Kv__V1__GetRequest req = KV__V1__GET_REQUEST__INIT;
    req.key = s->key;
    rc = kv__v1__key_value__get_submit(l->ch, &req, &o, l->cq, (void *)(intptr_t)i, NULL);
  }
  if (rc < 0) {
    fprintf(stderr, "kv_load: submit: %s\n", strerror(-rc));
    return rc;
  }
  s->put_next = !s->put_next;
  l->in_flight++;
  return 0;
}

/* Print the last second: calls answered per endpoint, failures. */
static void report(load *l, double t) {
  rpc_channel_stats st;
  if (rpc_channel_get_stats(l->ch, &st) < 0) return;
  char line[REPORT_MAX];
  size_t off = (size_t)snprintf(line, sizeof line, "kv_load: t=%4.1fs", t);
  l->neps = st.nendpoints < RPC_MAX_ENDPOINTS ? st.nendpoints : RPC_MAX_ENDPOINTS;
  for (size_t i = 0; i < l->neps && off < sizeof line; i++) {
    const rpc_endpoint_stats *e = &st.endpoints[i];
    uint64_t served = e->calls[RPC_STATUS_OK] + e->calls[RPC_STATUS_NOT_FOUND];
    /* The endpoint list of a dns:/// target may change: a new address starts from 0. */
    if (strcmp(l->addr[i], e->address) != 0) {
      snprintf(l->addr[i], sizeof l->addr[i], "%s", e->address);
      l->seen[i] = 0;
    }
    l->last[i] = served - l->seen[i];
    l->seen[i] = served;
    off += (size_t)snprintf(line + off, sizeof line - off, "  %s %5llu/s%s%s", e->address,
                            (unsigned long long)l->last[i],
                            e->state == RPC_ENDPOINT_READY ? "" : " ",
                            e->state == RPC_ENDPOINT_READY ? "" : rpc_endpoint_state_name(e->state));
  }
  if (off < sizeof line)
    snprintf(line + off, sizeof line - off, "  failed %llu", (unsigned long long)l->failed);
  printf("%s\n", line);
  fflush(stdout);
  rpc_channel_stats_free(&st);
}

static int run(load *l, long window, long seconds) {
  for (long i = 0; i < window; i++) {
    snprintf(l->slots[i].key, KEY_MAX, "key-%ld", i);
    l->slots[i].put_next = 1;
    if (submit(l, i) < 0) return -1;
  }
  uint64_t start = now_ns(), end = start + (uint64_t)seconds * 1000u * NS_PER_MS;
  uint64_t next_report = start + 1000u * NS_PER_MS;
  rpc_completion out[BATCH];
  while (l->in_flight > 0) {
    int n = rpc_cq_wait(l->cq, out, BATCH, WAIT_MS);
    uint64_t now = now_ns();
    for (int i = 0; i < n; i++) {
      const rpc_completion *c = &out[i];
      l->calls++;
      if (c->status != RPC_STATUS_OK && c->status != RPC_STATUS_NOT_FOUND) {
        l->failed++;
        fprintf(stderr, "kv_load: call failed: %s: %s\n", rpc_status_name(c->status), c->message);
      }
      if (c->reply) protobuf_c_message_free_unpacked(c->reply, NULL);
      l->in_flight--;
      if (now < end && submit(l, (long)(intptr_t)c->ctx) < 0) return -1;
    }
    if (now >= next_report) {
      report(l, (double)(now - start) / 1e9);
      next_report += 1000u * NS_PER_MS;
    }
  }
  return 0;
}

static int parse_balancer(const char *v, int *out) {
  if (strcmp(v, "p2c") == 0) *out = RPC_LB_P2C;
  else if (strcmp(v, "round_robin") == 0) *out = RPC_LB_ROUND_ROBIN;
  else if (strcmp(v, "pick_first") == 0) *out = RPC_LB_PICK_FIRST;
  else return -EINVAL;
  return 0;
}

static int parse_long(const char *text, long min, long max, long *out) {
  char *endp;
  errno = 0;
  long v = strtol(text, &endp, 10);
  if (errno != 0 || endp == text || *endp != '\0' || v < min || v > max) return -EINVAL;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  static const struct option longs[] = {{"resolver", required_argument, NULL, 'r'},
                                        {"balancer", required_argument, NULL, 'B'},
                                        {"help", no_argument, NULL, 'h'},
                                        {NULL, 0, NULL, 0}};
  const char *target = NULL;
  rpc_channel_options co = {.resolve_interval_ms = RESOLVE_INTERVAL_MS,
                            .backoff_initial_ms = BACKOFF_INITIAL_MS,
                            .backoff_max_ms = BACKOFF_MAX_MS,
                            .wait_for_ready = 1,
                            .idempotent_methods = idempotent,
                            .idempotent_count = sizeof idempotent / sizeof idempotent[0]};
  long seconds = 10, window = DEFAULT_WINDOW;
  int opt, bad = 0;
  while ((opt = getopt_long(argc, argv, "a:d:w:h", longs, NULL)) != -1) {
    if (opt == 'a') target = optarg;
    else if (opt == 'r') co.resolver = optarg;
    else if (opt == 'B') bad |= parse_balancer(optarg, &co.balancer) < 0;
    else if (opt == 'd') bad |= parse_long(optarg, 1, SECONDS_MAX, &seconds) < 0;
    else if (opt == 'w') bad |= parse_long(optarg, 1, WINDOW_MAX, &window) < 0;
    else if (opt == 'h') return usage(stdout, 0);
    else return usage(stderr, 2);
  }
  if (bad || target == NULL || optind != argc) return usage(stderr, 2);
  static load l; /* 40 KiB: not on the stack */
  int rc = rpc_channel_create(&l.ch, target, &co);
  if (rc < 0) {
    fprintf(stderr, "kv_load: %s: %s\n", target, strerror(-rc));
    return 1;
  }
  if ((rc = rpc_cq_create(&l.cq)) < 0) {
    fprintf(stderr, "kv_load: %s\n", strerror(-rc));
    rpc_channel_destroy(l.ch);
    return 1;
  }
  rc = run(&l, window, seconds);
  rpc_channel_destroy(l.ch);
  rpc_cq_destroy(l.cq);
  printf("kv_load: summary calls=%llu failed=%llu last_second=", (unsigned long long)l.calls,
         (unsigned long long)l.failed);
  for (size_t i = 0; i < l.neps; i++)
    printf("%s%s=%llu", i ? "," : "", l.addr[i], (unsigned long long)l.last[i]);
  printf("\n");
  return rc == 0 && l.failed == 0 ? 0 : 1;
}
