/* rpc_demo [-d seconds] [-w window] [-b backend] [-t tls-dir]: an RPC server on 127.0.0.1:0 (Echo,
 * Calculator, KeyValue, health) and a client channel in one process. Makes calls of every kind,
 * prints what happened, then measures the call rate of pipelined async calls for a few seconds.
 * Call metadata: a second server, A, in front of the first, B, requires a bearer token and
 * forwards Echo.Say to B with the trace context of its call, so that A and B see one trace id. -t
 * DIR: over mutual TLS, with DIR/ca.pem, server.pem, server.key, client.pem and client.key
 * (tools/demo.sh --tls makes them); the server prints the client's verified identity. Exits 0 only
 * if every call ended the way it should. Every call goes through the typed helpers
 * rpc_proto_library generates (examples/rpc_calc.rpc.h, kv.rpc.h, rpc/health.rpc.h):
 * demo__v1__echo__say_call() and the like. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "examples/bearer_token.h"
#include "examples/kv.rpc.h"
#include "examples/kv_service.h"
#include "examples/rpc_calc.rpc.h"
#include "examples/rpc_calc_service.h"
#include "rpc/health.rpc.h"
#include "rpc/rpc.h"

#define TIMEOUT_MS 5000   /* deadline of the demo's ordinary calls */
#define BATCH 100         /* calls in the pipelined batch */
#define MAX_WINDOW 1024   /* upper bound of -w */
#define DEMO_TOKEN "demo-token-42" /* the bearer token server A wants */
#define DEFAULT_SECONDS 2.0 /* -d */
#define DEFAULT_WINDOW 128  /* -w */

/* The options of the demo's ordinary calls. */
static const rpc_call_options opts = {.timeout_ms = TIMEOUT_MS};
#define TLS_PATH_MAX 512           /* bytes of DIR/server.key */

static int problems;

/* -t DIR: mutual TLS between the client channels and server B (set once, before any thread). */
static const rpc_tls_client_options *demo_tls;

/* Server B's view of a TLS client: its verified identity, printed for the first TLS call. */
static int peer_before(void *arg, rpc_call *call, const char **message) {
  static atomic_flag printed = ATOMIC_FLAG_INIT;
  rpc_peer p;
  (void)arg;
  (void)message;
  if (rpc_call_peer(call, &p) == 0 && p.tls && !atomic_flag_test_and_set(&printed)) {
    printf("  the server saw a TLS client: subject \"%s\"", p.tls_subject ? p.tls_subject : "");
    for (unsigned i = 0; i < p.tls_san_count; i++) printf(", SAN %s", p.tls_sans[i]);
    printf("%s\n", p.tls_subject ? " (verified)" : " (no certificate)");
  }
  return RPC_STATUS_OK;
}

/* -t DIR: B's TLS options and the client's, from DIR's files (paths kept in static buffers). */
static void tls_from_dir(const char *dir, rpc_tls_server_options *so, rpc_tls_client_options *co) {
  static char path[5][TLS_PATH_MAX];
  static const char *const name[5] = {"ca.pem", "server.pem", "server.key", "client.pem", "client.key"};
  for (int i = 0; i < 5; i++) snprintf(path[i], sizeof path[i], "%s/%s", dir, name[i]);
  *so = (rpc_tls_server_options){.cert_file = path[1], .key_file = path[2], .client_ca_file = path[0],
                                 .client_cert = RPC_TLS_CLIENT_CERT_REQUIRED};
  *co = (rpc_tls_client_options){.ca_file = path[0], .cert_file = path[3], .key_file = path[4]};
  demo_tls = co;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Print one outcome and count it as a problem when it is not the expected status. */
static void report(const char *what, int st, const char *msg, int want) {
  printf("  %-46s %s%s%s%s\n", what, st < 0 ? strerror(-st) : rpc_status_name(st),
         msg && msg[0] ? " \"" : "", msg && msg[0] ? msg : "", msg && msg[0] ? "\"" : "");
  if (st != want) {
    printf("    ^ expected %s\n", rpc_status_name(want));
    problems++;
  }
}

static void sync_calls(rpc_channel *ch) {
  char msg[256], line[128];
  printf("blocking calls:\n");
  Demo__V1__EchoRequest e = DEMO__V1__ECHO_REQUEST__INIT;
  e.text = "hello, gaio";
  Demo__V1__EchoReply *er;
  int st = demo__v1__echo__say_call(ch, &e, &er, &opts, msg, sizeof msg);
  snprintf(line, sizeof line, "Echo.Say(\"hello, gaio\") -> \"%s\"", st == 0 ? er->text : "");
  report(line, st, msg, RPC_STATUS_OK);
  if (st == 0) demo__v1__echo_reply__free_unpacked(er, NULL);

  Demo__V1__CalcRequest c = DEMO__V1__CALC_REQUEST__INIT;
  c.a = 40;
  c.b = 2;
  Demo__V1__CalcReply *cr;
  st = demo__v1__calculator__add_call(ch, &c, &cr, &opts, msg, sizeof msg);
  snprintf(line, sizeof line, "Calculator.Add(40, 2) = %lld", st == 0 ? (long long)cr->result : 0LL);
  report(line, st, msg, RPC_STATUS_OK);
  if (st == 0) demo__v1__calc_reply__free_unpacked(cr, NULL);
  c.b = 0;
  st = demo__v1__calculator__divide_call(ch, &c, &cr, &opts, msg, sizeof msg);
  report("Calculator.Divide(40, 0)", st, msg, RPC_STATUS_INVALID_ARGUMENT);
  if (st == 0) demo__v1__calc_reply__free_unpacked(cr, NULL);

  Gaio__Health__V1__HealthCheckRequest h = GAIO__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  Gaio__Health__V1__HealthCheckResponse *hr;
  st = gaio__health__v1__health__check_call(ch, &h, &hr, &opts, msg, sizeof msg);
  snprintf(line, sizeof line, "Health.Check() -> %s",
           st == 0 && hr->status == GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               ? "SERVING"
               : "?");
  report(line, st, msg, RPC_STATUS_OK);
  if (st == 0) gaio__health__v1__health_check_response__free_unpacked(hr, NULL);
}

static void async_batch(rpc_channel *ch, rpc_cq *cq) {
  printf("async pipelined batch:\n");
  double t0 = now_s();
  for (long i = 0; i < BATCH; i++) {
    Demo__V1__CalcRequest c = DEMO__V1__CALC_REQUEST__INIT;
    c.a = i;
    c.b = 1000;
    if (demo__v1__calculator__add_submit(ch, &c, &opts, cq, (void *)i, NULL) < 0) problems++;
  }
  int got = 0, right = 0, batches = 0;
  rpc_completion out[64];
  while (got < BATCH) {
    int n = rpc_cq_wait(cq, out, 64, TIMEOUT_MS);
    if (n <= 0) break;
    batches++;
    for (int i = 0; i < n; i++, got++) {
      Demo__V1__CalcReply *r = demo__v1__calculator__add_reply(&out[i]); /* NULL unless OK */
      if (r && r->result == (long)out[i].ctx + 1000) right++;
      if (out[i].reply) protobuf_c_message_free_unpacked(out[i].reply, NULL);
    }
  }
  printf("  %d Add calls in flight at once: %d completed in %d batches, %d correct, %.1f ms\n",
         BATCH, got, batches, right, (now_s() - t0) * 1e3);
  if (right != BATCH) problems++;
}

static void failures(rpc_channel *ch, rpc_cq *cq) {
  char msg[256], line[128];
  Demo__V1__EchoReply *r = NULL;
  printf("calls that fail:\n");
  Demo__V1__EchoRequest e = DEMO__V1__ECHO_REQUEST__INIT;
  e.delay_ms = 2000;
  double t0 = now_s();
  rpc_call_options short_deadline = {.timeout_ms = 100};
  int st = demo__v1__echo__sleep_call(ch, &e, &r, &short_deadline, msg, sizeof msg);
  snprintf(line, sizeof line, "Echo.Sleep(2000 ms), deadline 100 ms (%.0f ms)", (now_s() - t0) * 1e3);
  report(line, st, msg, RPC_STATUS_DEADLINE_EXCEEDED);

  /* A method the server does not have: no generated helper names it, so it is built by hand. */
  rpc_method shout;
  rpc_method_init(&shout, "demo.v1.Echo/Shout", NULL, &demo__v1__echo_reply__descriptor);
  ProtobufCMessage *any;
  st = rpc_channel_call(ch, &shout, &e.base, TIMEOUT_MS, &any, msg, sizeof msg);
  report("Echo.Shout (no such method)", st, msg, RPC_STATUS_UNIMPLEMENTED);

  e.delay_ms = 5000;
  uint64_t id;
  rpc_completion out[1];
  rpc_call_options long_deadline = {.timeout_ms = TIMEOUT_MS * 2};
  if (demo__v1__echo__sleep_submit(ch, &e, &long_deadline, cq, NULL, &id) == 0) {
    usleep(20000);
    rpc_channel_cancel(ch, id);
    st = rpc_cq_wait(cq, out, 1, TIMEOUT_MS) == 1 ? out[0].status : -1;
    report("Echo.Sleep(5000 ms), cancelled after 20 ms", st, st >= 0 ? out[0].message : "", RPC_STATUS_CANCELLED);
  } else {
    problems++;
  }
}

static void kv_round(rpc_channel *ch) {
  char msg[256], line[160];
  printf("key-value round:\n");
  Kv__V1__PutRequest put = KV__V1__PUT_REQUEST__INIT;
  Kv__V1__GetRequest get = KV__V1__GET_REQUEST__INIT;
  Kv__V1__DeleteRequest del = KV__V1__DELETE_REQUEST__INIT;
  Kv__V1__PutReply *pr;
  Kv__V1__GetReply *g;
  Kv__V1__DeleteReply *dr;
  put.key = get.key = del.key = "color";
  const char *values[] = {"blue", "green"};
  for (int i = 0; i < 2; i++) {
    put.value.data = (uint8_t *)values[i];
    put.value.len = strlen(values[i]);
    int st = kv__v1__key_value__put_call(ch, &put, &pr, &opts, msg, sizeof msg);
    snprintf(line, sizeof line, "Put(color, %s) -> %s", values[i],
             st == 0 ? (pr->created ? "created" : "replaced") : "");
    report(line, st, msg, RPC_STATUS_OK);
    if (st == 0) kv__v1__put_reply__free_unpacked(pr, NULL);
    st = kv__v1__key_value__get_call(ch, &get, &g, &opts, msg, sizeof msg);
    snprintf(line, sizeof line, "Get(color) -> %.*s", g ? (int)g->value.len : 0,
             g ? (const char *)g->value.data : "");
    report(line, st, msg, RPC_STATUS_OK);
    if (g && (g->value.len != strlen(values[i]) || memcmp(g->value.data, values[i], g->value.len)))
      problems++;
    if (g) kv__v1__get_reply__free_unpacked(g, NULL);
  }
  int st = kv__v1__key_value__delete_call(ch, &del, &dr, &opts, msg, sizeof msg);
  report("Delete(color)", st, msg, RPC_STATUS_OK);
  if (st == 0) kv__v1__delete_reply__free_unpacked(dr, NULL);
  st = kv__v1__key_value__get_call(ch, &get, &g, &opts, msg, sizeof msg);
  report("Get(color)", st, msg, RPC_STATUS_NOT_FOUND);
  if (g) kv__v1__get_reply__free_unpacked(g, NULL);
  put.key = "";
  st = kv__v1__key_value__put_call(ch, &put, &pr, &opts, msg, sizeof msg);
  report("Put(\"\", green)", st, msg, RPC_STATUS_INVALID_ARGUMENT);
  if (pr) kv__v1__put_reply__free_unpacked(pr, NULL);
}

/* ---- Metadata: bearer auth on server A, one trace over client -> A -> B ------------------ */

/* The trace id of the last call B saw with a traceparent (a server interceptor of B). */
typedef struct trace_seen {
  pthread_mutex_t mu;
  char id[33];
} trace_seen;

static int seen_before(void *arg, rpc_call *call, const char **message) {
  trace_seen *t = arg;
  char id[33];
  if (rpc_call_trace_id(call, id) == 0) {
    pthread_mutex_lock(&t->mu);
    memcpy(t->id, id, sizeof id);
    pthread_mutex_unlock(&t->mu);
  }
  return RPC_STATUS_OK;
}

static void seen_get(trace_seen *t, char out[33]) {
  pthread_mutex_lock(&t->mu);
  memcpy(out, t->id, 33);
  pthread_mutex_unlock(&t->mu);
}

/* Server A's demo.v1.Echo: Say calls B's Echo.Say as part of its own call (opts.parent: the
 * trace interceptor of to_b continues the caller's trace), replies with B's answer and adds a
 * trailer. svc is the first member, so the handlers find the rest from it. */
typedef struct gateway {
  Demo__V1__Echo_Service svc;
  rpc_channel *to_b;
  trace_seen seen; /* the trace id A saw */
} gateway;

static void gateway_say(Demo__V1__Echo_Service *svc, const Demo__V1__EchoRequest *in,
                        Demo__V1__EchoReply_Closure closure, void *data) {
  gateway *gw = (gateway *)svc;
  rpc_call *call = rpc_server_call(data);
  seen_before(&gw->seen, call, NULL);
  rpc_call_options o = {.timeout_ms = TIMEOUT_MS, .parent = call};
  Demo__V1__EchoReply *r;
  char msg[256];
  int st = demo__v1__echo__say_call(gw->to_b, in, &r, &o, msg, sizeof msg);
  if (st != RPC_STATUS_OK) {
    rpc_call_fail(call, st < 0 ? RPC_STATUS_INTERNAL : st, st < 0 ? strerror(-st) : msg);
    return;
  }
  rpc_call_set_trailer(call, "served-by", "gateway-a", strlen("gateway-a"));
  closure(r, data); /* packed here; then freed */
  demo__v1__echo_reply__free_unpacked(r, NULL);
}

static void gateway_sleep(Demo__V1__Echo_Service *svc, const Demo__V1__EchoRequest *in,
                          Demo__V1__EchoReply_Closure closure, void *data) {
  rpc_call_fail(rpc_server_call(data), RPC_STATUS_UNIMPLEMENTED, "not on the gateway");
}

/* Start server A (Echo through gw, bearer token required) and its channel to B (target). */
static int gateway_start(rpc_server **a, gateway *gw, const ex_token *token,
                         rpc_bearer_auth *auth, const char *target, const char *backend) {
  rpc_client_interceptor trace;
  rpc_trace_client_interceptor(&trace);
  rpc_channel_options co = {.backend = backend, .interceptors = &trace, .interceptor_count = 1,
                            .tls = demo_tls};
  int rc = rpc_channel_create(&gw->to_b, target, &co);
  if (rc < 0) return rc;
  rpc_server_options so = {.workers = 1, .backend = backend};
  if ((rc = rpc_server_create(a, &so)) < 0) return rc;
  *auth = (rpc_bearer_auth){ex_token_verify, (void *)token};
  rpc_server_interceptor ic;
  rpc_auth_bearer_interceptor(&ic, auth);
  if ((rc = rpc_server_add_interceptor(*a, &ic)) < 0 ||
      (rc = demo__v1__echo__serve(*a, &gw->svc)) < 0 ||
      (rc = rpc_server_listen(*a, "127.0.0.1:0")) < 0 || (rc = rpc_server_start(*a)) < 0)
    return rc;
  return 0;
}

/* Echo.Say through ch with extra headers; prints the outcome (and the trailers) like report(). */
static void say_via(rpc_channel *ch, const char *what, const rpc_md *md, size_t n, int want) {
  Demo__V1__EchoRequest e = DEMO__V1__ECHO_REQUEST__INIT;
  e.text = "hello through A";
  rpc_call_options o = {.timeout_ms = TIMEOUT_MS, .metadata = md, .metadata_count = n};
  ProtobufCMessage *r;
  char msg[256], line[128];
  rpc_metadata trailers;
  /* The typed helper has no trailers: the generic call, with the method resolved at build time. */
  int st = rpc_channel_call_opts(ch, &demo__v1__echo__say_method, &e.base, &o, &r, msg, sizeof msg,
                                 &trailers);
  snprintf(line, sizeof line, "Echo.Say via A, %s%s%s%s", what, st == 0 ? " -> \"" : "",
           st == 0 ? ((Demo__V1__EchoReply *)r)->text : "", st == 0 ? "\"" : "");
  report(line, st, msg, want);
  if (st < 0) return;
  size_t pos = 0;
  rpc_md t;
  while (rpc_metadata_next(&trailers, &pos, &t))
    printf("    trailer %.*s: %.*s\n", (int)t.key_len, t.key, (int)t.value_len,
           (const char *)t.value);
  rpc_metadata_free(&trailers);
  if (st == 0) protobuf_c_message_free_unpacked(r, NULL);
}

/* Calls to A without a token, with a wrong one and with the right one (channel metadata), then
 * the trace ids A and B saw for the last call. b_seen is filled by B's interceptor. */
static void metadata_calls(const char *target_b, trace_seen *b_seen, const char *backend) {
  printf("metadata: server A needs a bearer token and calls B; one trace over client -> A -> B:\n");
  ex_token token = {.text = DEMO_TOKEN, .len = strlen(DEMO_TOKEN)};
  rpc_bearer_auth auth;
  gateway gw = {.svc = DEMO__V1__ECHO__INIT(gateway_), .seen = {PTHREAD_MUTEX_INITIALIZER, ""}};
  rpc_server *a = NULL;
  rpc_channel *anon = NULL, *authed = NULL;
  int rc = gateway_start(&a, &gw, &token, &auth, target_b, backend);
  char target_a[64];
  snprintf(target_a, sizeof target_a, "127.0.0.1:%d", a ? rpc_server_port(a) : 0);
  rpc_client_interceptor trace;
  rpc_trace_client_interceptor(&trace);
  const rpc_md bearer = {"authorization", 13, "Bearer " DEMO_TOKEN, strlen("Bearer " DEMO_TOKEN)};
  rpc_channel_options co = {.backend = backend, .interceptors = &trace, .interceptor_count = 1};
  if (rc == 0) rc = rpc_channel_create(&anon, target_a, &co);
  co.metadata = &bearer; /* sent with every call of this channel */
  co.metadata_count = 1;
  if (rc == 0) rc = rpc_channel_create(&authed, target_a, &co);
  if (rc < 0) {
    printf("  cannot start server A or its channels: %s\n", strerror(-rc));
    problems++;
  } else {
    const rpc_md wrong = {"authorization", 13, "Bearer guess", 12};
    say_via(anon, "no token", NULL, 0, RPC_STATUS_UNAUTHENTICATED);
    say_via(anon, "\"Bearer guess\"", &wrong, 1, RPC_STATUS_PERMISSION_DENIED);
    say_via(authed, "\"Bearer " DEMO_TOKEN "\"", NULL, 0, RPC_STATUS_OK);
    char at_a[33], at_b[33];
    seen_get(&gw.seen, at_a);
    seen_get(b_seen, at_b);
    int same = at_a[0] != '\0' && strcmp(at_a, at_b) == 0;
    printf("  trace id seen by A: %s\n", at_a[0] ? at_a : "(none)");
    printf("  trace id seen by B: %s (%s)\n", at_b[0] ? at_b : "(none)",
           same ? "the same trace: A called B with opts.parent" : "NOT THE SAME TRACE");
    if (!same) problems++;
  }
  rpc_channel_destroy(anon);
  rpc_channel_destroy(authed);
  rpc_server_destroy(a); /* before its channel to B, which its handlers use */
  rpc_channel_destroy(gw.to_b);
}

/* Keep `window` Say calls in flight for `seconds`; returns calls completed per second. */
static double rate(rpc_channel *ch, rpc_cq *cq, double seconds, int window, long *errors) {
  Demo__V1__EchoRequest e = DEMO__V1__ECHO_REQUEST__INIT;
  e.text = "ping";
  long done = 0, inflight = 0;
  double t0 = now_s(), end = t0 + seconds;
  rpc_completion out[MAX_WINDOW];
  for (;;) {
    int stop = now_s() >= end;
    while (!stop && inflight < window && demo__v1__echo__say_submit(ch, &e, &opts, cq, NULL, NULL) == 0)
      inflight++;
    if (inflight == 0) break;
    int n = rpc_cq_wait(cq, out, MAX_WINDOW, TIMEOUT_MS);
    if (n <= 0) break;
    for (int i = 0; i < n; i++) {
      if (out[i].status != 0) (*errors)++;
      if (out[i].reply) protobuf_c_message_free_unpacked(out[i].reply, NULL);
    }
    inflight -= n;
    done += n;
  }
  return (double)done / (now_s() - t0);
}

static int usage(FILE *to, int code) {
  fprintf(to,
          "usage: rpc_demo [options]\n"
          "  -d SECONDS     how long the call-rate measurement runs (default %.1f)\n"
          "  -w WINDOW      async calls kept in flight by it, 1..%d (default %d)\n"
          "  -b BACKEND     gaio backend, uring or epoll (default: automatic, GAIO_BACKEND)\n"
          "  -t DIR         mutual TLS with DIR/ca.pem, server.pem, server.key, client.pem,\n"
          "                 client.key (default: plaintext; tools/demo.sh --tls makes them)\n"
          "  -h, --help     this help\n"
          "Exits 0 when every call ended as expected.\n",
          DEFAULT_SECONDS, MAX_WINDOW, DEFAULT_WINDOW);
  return code;
}

int main(int argc, char **argv) {
  static const struct option longs[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  double seconds = DEFAULT_SECONDS;
  int window = DEFAULT_WINDOW, opt;
  const char *backend = NULL; /* gaio's choice (GAIO_BACKEND is honoured) */
  const char *tls_dir = NULL;
  while ((opt = getopt_long(argc, argv, "d:w:b:t:h", longs, NULL)) != -1) {
    if (opt == 'd') seconds = atof(optarg);
    else if (opt == 't') tls_dir = optarg;
    else if (opt == 'w') window = atoi(optarg);
    else if (opt == 'b') backend = optarg;
    else if (opt == 'h') return usage(stdout, 0);
    else return usage(stderr, 2);
  }
  if (optind != argc || window < 1 || window > MAX_WINDOW || seconds < 0) return usage(stderr, 2);

  kv_service *kv = kv_service_create();
  calc_service *calc = NULL;
  rpc_server *srv;
  rpc_server_options so = {0};
  so.workers = 2;
  so.backend = backend;
  rpc_tls_server_options tls_so;
  rpc_tls_client_options tls_co;
  if (tls_dir) {
    tls_from_dir(tls_dir, &tls_so, &tls_co);
    so.tls = &tls_so;
  }
  int rc = kv ? 0 : -ENOMEM;
  const char *step = "kv_service_create";
  if (rc == 0 && (rc = calc_service_create(&calc, 0)) < 0) step = "calc_service_create";
  if (rc == 0 && (rc = rpc_server_create(&srv, &so)) < 0) step = "rpc_server_create";
  if (rc == 0 && (rc = calc_service_add(calc, srv)) < 0) step = "add the calculator services";
  if (rc == 0 && (rc = rpc_server_add_service(srv, kv_service_base(kv))) < 0) step = "add kv";
  if (rc == 0 && (rc = rpc_server_enable_health(srv)) < 0) step = "enable health";
  /* B's side of the trace demo: an interceptor that notes the trace id of calls that have one. */
  static trace_seen b_seen = {PTHREAD_MUTEX_INITIALIZER, ""};
  rpc_server_interceptor note = {.before = seen_before, .arg = &b_seen};
  rpc_server_interceptor peer = {.before = peer_before};
  if (rc == 0 && (rc = rpc_server_add_interceptor(srv, &note)) < 0) step = "add interceptor";
  if (rc == 0 && (rc = rpc_server_add_interceptor(srv, &peer)) < 0) step = "add interceptor";
  if (rc == 0 && (rc = rpc_server_listen(srv, tls_dir ? "tls:127.0.0.1:0" : "127.0.0.1:0")) < 0)
    step = "listen";
  if (rc == 0 && (rc = rpc_server_start(srv)) < 0) step = "rpc_server_start";
  if (rc < 0) {
    fprintf(stderr, "rpc_demo: cannot start the server: %s: %s%s\n", step, strerror(-rc),
            backend ? " (is -b uring or epoll, and can it start here?)" : "");
    return 1;
  }
  char target[64];
  snprintf(target, sizeof target, "%s127.0.0.1:%d", tls_dir ? "tls:" : "", rpc_server_port(srv));
  printf("rpc_demo: server on %s (2 workers%s), client channel connected to it, gaio backend %s\n",
         target, tls_dir ? ", mutual TLS" : "", backend ? backend : "automatic");
  rpc_channel *ch;
  rpc_cq *cq;
  rpc_channel_options co = {0};
  co.backend = backend;
  co.tls = demo_tls;
  if (rpc_channel_create(&ch, target, &co) < 0 || rpc_cq_create(&cq) < 0) {
    fprintf(stderr, "rpc_demo: cannot create the client channel\n");
    return 1;
  }

  sync_calls(ch);
  async_batch(ch, cq);
  failures(ch, cq);
  kv_round(ch);
  metadata_calls(target, &b_seen, backend);

  long errors = 0;
  printf("call rate (Echo.Say, %d async calls in flight, %.1f s):\n", window, seconds);
  double r = rate(ch, cq, seconds, window, &errors);
  printf("  %.0f calls/s, %ld errors\n", r, errors);
  if (errors) problems++;

  rpc_channel_destroy(ch);
  rpc_cq_destroy(cq);
  rpc_server_shutdown(srv, 1000);
  rpc_server_destroy(srv);
  calc_service_destroy(calc); /* after the server, which waited for its pending sleeps */
  kv_service_free(kv);
  printf("rpc_demo: %s\n", problems ? "SOME CALLS DID NOT END AS EXPECTED" : "every call ended as expected");
  return problems ? 1 : 0;
}
