/* Fuzz target of the RPC server's receive path (issue 12): the bytes of one input go to a real
 * rpc_server over a fresh unix connection, and the server parses them into frames, dispatches,
 * unpacks, runs handlers and replies; everything it sends back is read and checked. One server
 * serves every input (set up at the first one, destroyed at exit), so what an input leaves
 * behind (a call never counted down, a wedged worker) shows in later inputs and in the check
 * that a fresh well-formed call is still answered, made every ALIVE_EVERY inputs and at exit.
 *
 * INPUT. Byte 0 says how the rest is sent and how the connection ends; the rest is sent as it
 * is (the seeds in corpus/server/, written by gen_corpus.py, are frames).
 *   bits 0-1  0: half-close (shutdown SHUT_WR) after the last byte, then read to the server's
 *                end of stream;
 *             1: close right after the last byte, reading nothing (the calls in flight are
 *                orphaned; replies not read make the close a reset);
 *             2: half-close, read one frame, then close with the rest unread;
 *             3: no half-close: read to the server's end of stream when the bytes end in a
 *                protocol error (the server ends the connection itself), else as 0.
 *   bits 2-4  0: every byte in one send; k > 0: sends of CHUNK[k] bytes, the first
 *             PAUSED_CHUNKS of them followed by a short pause, so that the server reads
 *             partial headers and bodies.
 *
 * SERVER. 1 worker; max_body 4096 (oversize requests are cheap to reach); 16 calls in flight
 * per connection and 64 per server (both limits are reachable, and a call the server forgets to
 * count down makes the alive check fail); 2048 queued output bytes per connection (a PING
 * flood pauses the reading); close_linger_ms 50. It hosts test.v1.Echo (tests/rpc_test.proto)
 * and health. Say replies at once (with no reply, so UNKNOWN, when code != 0); Slow replies from
 * another thread after delay_ms % 8 ms; Hold replies from another thread once the call is
 * cancelled, or after HOLD_MS; Fail fails with status `code` (out of range: UNKNOWN) and message
 * `text`.
 *
 * INVARIANTS, against a model of what the server reads: the input parsed as frames with the
 * server's max_body, up to the end of the bytes, a cut frame or the first protocol error.
 * - Every frame the server sends parses (rpc_frame_parse) and is a RESPONSE, PONG or GOAWAY; no
 *   partial frame is left at its end of stream; a status-0 RESPONSE is at most max_body and
 *   unpacks as the output of a method requested with that id; an error text is at most 1024
 *   bytes.
 * - A RESPONSE answers an id sent in a REQUEST the server read, at most as many times as such
 *   REQUESTs were sent; a PONG echoes a PING id, at most as many times; at most one GOAWAY, its
 *   id at most the highest REQUEST id read, and no RESPONSE above it.
 * - When the whole stream is read (modes 0 and 3): the server ends the connection within
 *   READ_BOUND_MS (a hang is a finding). If the bytes end cleanly on a frame boundary, every
 *   REQUEST is answered exactly once (ids named by no CANCEL), every PING is ponged and no GOAWAY
 *   comes. After a protocol error exactly one GOAWAY comes, with the highest REQUEST id read
 *   before the error (0 if none). A frame cut by the end of stream brings no GOAWAY.
 * - Every ALIVE_EVERY inputs and at exit, a fresh connection gets its Say answered and its PING
 *   ponged. At exit the server is destroyed, and LeakSanitizer finds nothing left. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rpc/health.pb-c.h"
#include "rpc/rpc.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/rpc_test.pb-c.h"

enum {
  MAX_BODY = 4096,
  MAX_CALLS_PER_CONN = 16,
  MAX_CALLS = 64,
  MAX_WRITE_BYTES = 2048,
  LINGER_MS = 50,
  READ_BOUND_MS = 3000,  /* the server ends a connection well within this, or it hangs */
  ALIVE_EVERY = 64,      /* inputs between two alive checks */
  ALIVE_RETRY_MS = 2000, /* how long orphaned calls of earlier inputs may hold the limits */
  PAUSED_CHUNKS = 32,
  PAUSE_US = 100,
  HOLD_MS = 10,
  MAX_IDS = 1024 /* distinct ids per input: more than 8 KiB of frames can name */
};

static const size_t CHUNK[8] = {0, 1, 3, 7, 23, 24, 100, 1000};

/* ---- Deferred replies: one thread completes the Slow and Hold calls --------------------- */

typedef struct later {
  struct later *next;
  int64_t due_ms;
  int hold; /* Hold: reply when cancelled or due; Slow: reply when due */
  rpc_call *call;
  Test__V1__EchoReply_Closure closure;
  void *closure_data;
  char *text;
} later;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  later *head;
  int stop;
  pthread_t th;
} g_later = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

static void later_complete(later *l) {
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  out.text = l->text;
  if (l->hold) {
    out.saw_cancel = rpc_call_cancelled(l->call);
    rpc_call_reply(l->call, &out.base);
  } else {
    l->closure(&out, l->closure_data);
  }
  free(l->text);
  free(l);
}

/* Take one due item (a Hold is due once its call is cancelled), or NULL. Under the lock. */
static later *later_take_due(int64_t now) {
  for (later **pp = &g_later.head; *pp; pp = &(*pp)->next) {
    later *l = *pp;
    if (l->due_ms <= now || g_later.stop || (l->hold && rpc_call_cancelled(l->call))) {
      *pp = l->next;
      return l;
    }
  }
  return NULL;
}

static void *later_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_later.mu);
  while (!g_later.stop || g_later.head) {
    later *l = later_take_due(fuzz_now_ms());
    if (l) {
      pthread_mutex_unlock(&g_later.mu);
      later_complete(l);
      pthread_mutex_lock(&g_later.mu);
      continue;
    }
    /* Wake every millisecond while items wait: a Hold ends when its call is cancelled. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += g_later.head ? 1000000 : 100000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&g_later.cv, &g_later.mu, &ts);
  }
  pthread_mutex_unlock(&g_later.mu);
  return NULL;
}

static void later_add(later *l) {
  pthread_mutex_lock(&g_later.mu);
  l->next = g_later.head;
  g_later.head = l;
  pthread_cond_signal(&g_later.cv);
  pthread_mutex_unlock(&g_later.mu);
}

/* ---- The service ------------------------------------------------------------------------- */

static void h_say(Test__V1__Echo_Service *svc, const Test__V1__EchoRequest *in,
                  Test__V1__EchoReply_Closure closure, void *data) {
  (void)svc;
  if (in->code != 0) {
    closure(NULL, data); /* no reply: the framework answers UNKNOWN */
    return;
  }
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  out.text = in->text;
  out.payload = in->payload; /* text + payload may exceed max_body: RESOURCE_EXHAUSTED */
  out.remaining_us = rpc_call_remaining_us(rpc_server_call(data));
  closure(&out, data);
}

static void defer(const Test__V1__EchoRequest *in, int hold, int64_t delay_ms,
                  Test__V1__EchoReply_Closure closure, void *data) {
  later *l = calloc(1, sizeof *l);
  char *text = strdup(in->text ? in->text : "");
  FUZZ_CHECK(l && text, "out of memory");
  l->due_ms = fuzz_now_ms() + delay_ms;
  l->hold = hold;
  l->call = rpc_server_call(data);
  l->closure = closure;
  l->closure_data = data;
  l->text = text;
  later_add(l);
}

static void h_slow(Test__V1__Echo_Service *svc, const Test__V1__EchoRequest *in,
                   Test__V1__EchoReply_Closure closure, void *data) {
  (void)svc;
  int64_t delay = in->delay_ms < 0 ? 0 : in->delay_ms % 8;
  defer(in, 0, delay, closure, data);
}

static void h_hold(Test__V1__Echo_Service *svc, const Test__V1__EchoRequest *in,
                   Test__V1__EchoReply_Closure closure, void *data) {
  (void)svc;
  defer(in, 1, HOLD_MS, closure, data);
}

static void h_fail(Test__V1__Echo_Service *svc, const Test__V1__EchoRequest *in,
                   Test__V1__EchoReply_Closure closure, void *data) {
  (void)svc;
  (void)closure;
  rpc_call_fail(rpc_server_call(data), in->code, in->text);
}

static Test__V1__Echo_Service g_echo = TEST__V1__ECHO__INIT(h_);

/* ---- Set-up and tear-down ---------------------------------------------------------------- */

enum { OUT_ECHO = 1, OUT_HEALTH = 2 };

static struct {
  rpc_server *srv;
  char dir[64];
  char path[96];
  uint32_t echo_ids[4]; /* Say, Slow, Hold, Fail */
  uint32_t check_id;
  unsigned long inputs;
} g;

static void check_alive(void);

static void teardown(void) {
  check_alive();
  rpc_server_destroy(g.srv); /* waits for the deferred calls, so the thread still runs */
  pthread_mutex_lock(&g_later.mu);
  g_later.stop = 1;
  pthread_cond_signal(&g_later.cv);
  pthread_mutex_unlock(&g_later.mu);
  pthread_join(g_later.th, NULL);
  rmdir(g.dir);
}

static void setup(void) {
  int rc = fuzz_tmpdir(g.dir, sizeof g.dir);
  FUZZ_CHECK(rc == 0, "mkdtemp: %s", strerror(-rc));
  snprintf(g.path, sizeof g.path, "%s/server.sock", g.dir);
  for (unsigned i = 0; i < 4; i++) {
    rpc_method m;
    FUZZ_CHECK(rpc_method_at(&m, &test__v1__echo__descriptor, i) == 0, "method %u", i);
    g.echo_ids[i] = m.id;
  }
  rpc_method m;
  FUZZ_CHECK(rpc_method_find(&m, &gaio__health__v1__health__descriptor, "Check") == 0, "Check");
  g.check_id = m.id;

  FUZZ_CHECK(pthread_create(&g_later.th, NULL, later_main, NULL) == 0, "pthread_create");
  rpc_server_options o = {0};
  o.workers = 1;
  o.max_body = MAX_BODY;
  o.max_calls_per_conn = MAX_CALLS_PER_CONN;
  o.max_calls = MAX_CALLS;
  o.max_write_bytes_per_conn = MAX_WRITE_BYTES;
  o.close_linger_ms = LINGER_MS;
  char addr[128];
  snprintf(addr, sizeof addr, "unix:%s", g.path);
  FUZZ_CHECK((rc = rpc_server_create(&g.srv, &o)) == 0, "rpc_server_create: %d", rc);
  FUZZ_CHECK((rc = rpc_server_add_service(g.srv, &g_echo.base)) == 0, "add_service: %d", rc);
  FUZZ_CHECK((rc = rpc_server_enable_health(g.srv)) == 0, "enable_health: %d", rc);
  FUZZ_CHECK((rc = rpc_server_listen(g.srv, addr)) == 0, "listen %s: %d", addr, rc);
  FUZZ_CHECK((rc = rpc_server_start(g.srv)) == 0, "rpc_server_start: %d", rc);
  FUZZ_CHECK(atexit(teardown) == 0, "atexit");
  check_alive();
}

/* ---- The model of the input -------------------------------------------------------------- */

enum { END_CLEAN, END_CUT, END_PROTO };

typedef struct id_count {
  uint32_t id;
  unsigned requests, pings, cancels; /* frames of the input the server reads */
  unsigned late_pings; /* PINGs after a valid frame of the wrong direction: they may still be
                          ponged (the server answers PINGs ahead of the frames before them) */
  unsigned outputs;    /* OUT_*: what a status-0 RESPONSE for this id may hold */
  unsigned responses, pongs; /* frames the server sent */
} id_count;

typedef struct model {
  id_count ids[MAX_IDS];
  size_t n;
  int end;              /* END_* */
  uint32_t max_request; /* the highest REQUEST id read before the end: the GOAWAY's */
  int goaways;
  uint32_t goaway_id;
} model;

static model g_model; /* big: not on the stack */

static id_count *model_id(model *m, uint32_t id, int add) {
  for (size_t i = 0; i < m->n; i++)
    if (m->ids[i].id == id) return &m->ids[i];
  if (!add) return NULL;
  FUZZ_CHECK(m->n < MAX_IDS, "more than %d ids in one input", MAX_IDS);
  id_count *e = &m->ids[m->n++];
  memset(e, 0, sizeof *e);
  e->id = id;
  return e;
}

static unsigned outputs_of(uint32_t method_id) {
  for (unsigned i = 0; i < 4; i++)
    if (method_id == g.echo_ids[i]) return OUT_ECHO;
  return method_id == g.check_id ? OUT_HEALTH : 0;
}

/* Count the PINGs after a protocol error that the server's early PING scan may still answer:
 * it goes over every whole, well-formed frame (oversize ones too), up to a malformed or
 * incomplete one. */
static void model_late_pings(model *m, const uint8_t *p, size_t n, size_t off) {
  while (off < n) {
    rpc_frame f;
    int rc = rpc_frame_parse(p + off, n - off, MAX_BODY, &f);
    if (rc != -EMSGSIZE && rc <= 0) return;
    size_t whole = RPC_FRAME_HEADER_SIZE + (size_t)f.body_len;
    if (whole > n - off) return;
    if (rc > 0 && f.type == RPC_TYPE_PING) model_id(m, f.request_id, 1)->late_pings++;
    off += whole;
  }
}

/* What the server reads of p[0, n): frames up to the end, a cut frame or a protocol error. */
static void model_input(model *m, const uint8_t *p, size_t n) {
  size_t off = 0;
  for (;;) {
    rpc_frame f;
    int rc = rpc_frame_parse(off < n ? p + off : NULL, n - off, MAX_BODY, &f);
    if (rc == -EAGAIN) {
      m->end = off == n ? END_CLEAN : END_CUT;
      return;
    }
    if (rc == -EPROTO) {
      m->end = END_PROTO;
      return;
    }
    int oversize = rc == -EMSGSIZE;
    size_t whole = RPC_FRAME_HEADER_SIZE + (size_t)f.body_len;
    if (f.type == RPC_TYPE_REQUEST) {
      id_count *e = model_id(m, f.request_id, 1);
      e->requests++;
      if (!oversize) e->outputs |= outputs_of(f.method_id);
      if (f.request_id > m->max_request) m->max_request = f.request_id;
    } else if (f.type == RPC_TYPE_CANCEL && !oversize) {
      model_id(m, f.request_id, 1)->cancels++;
    } else if (f.type == RPC_TYPE_PING && !oversize) {
      model_id(m, f.request_id, 1)->pings++;
    } else {
      /* RESPONSE, PONG, GOAWAY from a client, or an oversize non-REQUEST: protocol error. */
      m->end = END_PROTO;
      if (whole <= n - off) model_late_pings(m, p, n, off + whole);
      return;
    }
    if (whole > n - off) {
      m->end = END_CUT; /* an oversize body the stream does not hold whole */
      return;
    }
    off += whole;
  }
}

/* ---- Checking what the server sent ------------------------------------------------------- */

static int unpacks(const ProtobufCMessageDescriptor *d, const rpc_frame *f) {
  ProtobufCMessage *msg = protobuf_c_message_unpack(d, NULL, f->body_len, f->body);
  if (msg) protobuf_c_message_free_unpacked(msg, NULL);
  return msg != NULL;
}

static void check_response(model *m, const rpc_frame *f) {
  id_count *e = model_id(m, f->request_id, 0);
  FUZZ_CHECK(e && e->requests > 0, "RESPONSE for id %u, which no REQUEST read carried",
             f->request_id);
  e->responses++;
  FUZZ_CHECK(e->responses <= e->requests, "%u RESPONSEs for id %u, sent in %u REQUESTs",
             e->responses, f->request_id, e->requests);
  if (f->status == RPC_STATUS_OK) {
    FUZZ_CHECK(f->body_len <= MAX_BODY, "reply of %u bytes over max_body", f->body_len);
    int ok = ((e->outputs & OUT_ECHO) && unpacks(&test__v1__echo_reply__descriptor, f)) ||
             ((e->outputs & OUT_HEALTH) &&
              unpacks(&gaio__health__v1__health_check_response__descriptor, f));
    FUZZ_CHECK(ok, "status-0 RESPONSE for id %u does not unpack as its method's output",
               f->request_id);
  } else {
    FUZZ_CHECK(f->body_len <= RPC_MAX_ERROR_MESSAGE, "error text of %u bytes", f->body_len);
  }
}

static void check_frame(model *m, const rpc_frame *f) {
  switch (f->type) {
    case RPC_TYPE_RESPONSE:
      check_response(m, f);
      break;
    case RPC_TYPE_PONG: {
      id_count *e = model_id(m, f->request_id, 0);
      FUZZ_CHECK(e && e->pings + e->late_pings > 0, "PONG for id %u, never a PING id",
                 f->request_id);
      e->pongs++;
      FUZZ_CHECK(e->pongs <= e->pings + e->late_pings, "%u PONGs for id %u, sent in %u PINGs",
                 e->pongs, f->request_id, e->pings + e->late_pings);
      break;
    }
    case RPC_TYPE_GOAWAY:
      FUZZ_CHECK(++m->goaways == 1, "a second GOAWAY");
      m->goaway_id = f->request_id;
      FUZZ_CHECK(f->request_id <= m->max_request, "GOAWAY id %u above every REQUEST id read (%u)",
                 f->request_id, m->max_request);
      break;
    default:
      FUZZ_CHECK(0, "the server sent a frame of type %d", f->type);
  }
}

/* Check the whole frames of in (consumed); with at_end, no partial frame may remain. */
static void check_frames(model *m, fuzz_buf *in, int at_end) {
  size_t off = 0;
  while (off < in->len) {
    rpc_frame f;
    int rc = rpc_frame_parse(in->p + off, in->len - off, RPC_MAX_BODY_HARD, &f);
    if (rc == -EAGAIN) break;
    FUZZ_CHECK(rc > 0, "the server sent a malformed frame (parse: %d) at byte %zu", rc, off);
    check_frame(m, &f);
    off += (size_t)rc;
  }
  FUZZ_CHECK(!at_end || off == in->len, "%zu bytes of a partial frame before the end of stream",
             in->len - off);
  fuzz_buf_drop(in, off);
}

/* After the server's end of stream, when the whole input was read. */
static void check_complete(const model *m) {
  if (m->goaways)
    for (size_t i = 0; i < m->n; i++)
      FUZZ_CHECK(m->ids[i].responses == 0 || m->ids[i].id <= m->goaway_id,
                 "RESPONSE for id %u above the GOAWAY's id %u", m->ids[i].id, m->goaway_id);
  if (m->end == END_PROTO) {
    FUZZ_CHECK(m->goaways == 1, "a protocol error without a GOAWAY");
    FUZZ_CHECK(m->goaway_id == m->max_request, "GOAWAY id %u, highest REQUEST id read %u",
               m->goaway_id, m->max_request);
    return;
  }
  FUZZ_CHECK(m->goaways == 0, "a GOAWAY without a protocol error");
  if (m->end == END_CUT) return;
  for (size_t i = 0; i < m->n; i++) {
    const id_count *e = &m->ids[i];
    FUZZ_CHECK(e->cancels > 0 || e->responses == e->requests,
               "id %u: %u REQUESTs, %u RESPONSEs after a clean end", e->id, e->requests,
               e->responses);
    FUZZ_CHECK(e->pongs == e->pings, "id %u: %u PINGs, %u PONGs after a clean end", e->id,
               e->pings, e->pongs);
  }
}

/* ---- Driving one connection -------------------------------------------------------------- */

/* Send p[0, n) as the mode says. Returns 0, or -EPIPE/-ECONNRESET when the server closed. */
static int send_input(int fd, const uint8_t *p, size_t n, size_t chunk, fuzz_buf *in) {
  int64_t deadline = fuzz_now_ms() + READ_BOUND_MS;
  size_t off = 0;
  for (unsigned k = 0; chunk && off < n && k < PAUSED_CHUNKS; k++) {
    size_t len = n - off < chunk ? n - off : chunk;
    int rc = fuzz_send_all(fd, p + off, len, in, deadline);
    if (rc < 0) return rc;
    off += len;
    fuzz_sleep_us(PAUSE_US);
  }
  return fuzz_send_all(fd, p + off, n - off, in, deadline);
}

static int one_frame(const fuzz_buf *in, void *arg) {
  (void)arg;
  rpc_frame f;
  return in->len > 0 && rpc_frame_parse(in->p, in->len, RPC_MAX_BODY_HARD, &f) != -EAGAIN;
}

static void run_input(const uint8_t *data, size_t size) {
  int mode = data[0] & 3;
  size_t chunk = CHUNK[(data[0] >> 2) & 7];
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  model *m = &g_model;
  m->n = 0;
  m->end = END_CLEAN;
  m->max_request = 0;
  m->goaways = 0;
  m->goaway_id = 0;
  model_input(m, p, n);
  if (mode == 3 && m->end != END_PROTO) mode = 0;

  int fd = fuzz_unix_connect(g.path);
  FUZZ_CHECK(fd >= 0, "connect %s: %s", g.path, strerror(-fd));
  fuzz_buf in = {0};
  int rc = send_input(fd, p, n, chunk, &in); /* replies read meanwhile are checked in mode != 1 */
  FUZZ_CHECK(rc == 0 || rc == -EPIPE || rc == -ECONNRESET, "send: %s", strerror(-rc));
  FUZZ_CHECK(rc == 0 || m->end != END_CLEAN, "the server closed a connection with a clean input "
             "before reading it all (send: %s)", strerror(-rc));
  if (mode != 1) {
    /* ENOTCONN: the server closed already (after a protocol error), which the read sees. */
    FUZZ_CHECK(mode == 3 || shutdown(fd, SHUT_WR) == 0 || errno == ENOTCONN, "shutdown: %s",
               strerror(errno));
    int64_t deadline = fuzz_now_ms() + READ_BOUND_MS;
    rc = fuzz_recv(fd, &in, deadline, mode == 2 ? one_frame : NULL, NULL);
    FUZZ_CHECK(rc != -ETIMEDOUT, "the server did not end the connection within %d ms (mode %d, "
               "%zu bytes unread)", READ_BOUND_MS, mode, in.len);
    /* A reset is the server's linger expiring after a protocol error, or its close of a cut
     * stream, never the end of a clean one. */
    FUZZ_CHECK(rc >= 0 || (rc == -ECONNRESET && m->end != END_CLEAN), "recv: %s",
               strerror(-rc));
    check_frames(m, &in, mode != 2 && rc == 1);
    if (mode != 2) check_complete(m);
  }
  fuzz_buf_free(&in);
  close(fd);
}

/* A fresh connection: Say "alive" (id 1) and PING 2, half-close; both must be answered. The
 * server-wide limit may still be held by orphaned calls of earlier inputs (Hold: HOLD_MS): a
 * RESOURCE_EXHAUSTED is retried for ALIVE_RETRY_MS, beyond which a call was never counted down. */
static void check_alive(void) {
  static const uint8_t body[] = {0x0a, 0x05, 'a', 'l', 'i', 'v', 'e'};
  uint8_t req[2 * RPC_FRAME_HEADER_SIZE + sizeof body];
  rpc_frame f = {0};
  f.type = RPC_TYPE_REQUEST;
  f.request_id = 1;
  f.method_id = g.echo_ids[0];
  f.body_len = sizeof body;
  rpc_frame_encode(&f, req);
  memcpy(req + RPC_FRAME_HEADER_SIZE, body, sizeof body);
  rpc_frame ping = {0};
  ping.type = RPC_TYPE_PING;
  ping.request_id = 2;
  rpc_frame_encode(&ping, req + RPC_FRAME_HEADER_SIZE + sizeof body);

  int64_t give_up = fuzz_now_ms() + ALIVE_RETRY_MS;
  for (;;) {
    int fd = fuzz_unix_connect(g.path);
    FUZZ_CHECK(fd >= 0, "alive: connect: %s", strerror(-fd));
    fuzz_buf in = {0};
    int rc = fuzz_send_all(fd, req, sizeof req, &in, fuzz_now_ms() + READ_BOUND_MS);
    FUZZ_CHECK(rc == 0, "alive: send: %s", strerror(-rc));
    FUZZ_CHECK(shutdown(fd, SHUT_WR) == 0, "alive: shutdown: %s", strerror(errno));
    rc = fuzz_recv(fd, &in, fuzz_now_ms() + READ_BOUND_MS, NULL, NULL);
    close(fd);
    FUZZ_CHECK(rc == 1, "alive: no end of stream within %d ms (%d)", READ_BOUND_MS, rc);
    int status = -1, pong = 0;
    size_t off = 0;
    while (off < in.len) {
      rpc_frame r;
      int len = rpc_frame_parse(in.p + off, in.len - off, RPC_MAX_BODY_HARD, &r);
      FUZZ_CHECK(len > 0, "alive: malformed frame (%d)", len);
      if (r.type == RPC_TYPE_PONG && r.request_id == 2) pong++;
      if (r.type == RPC_TYPE_RESPONSE && r.request_id == 1) {
        FUZZ_CHECK(status < 0, "alive: two RESPONSEs");
        status = r.status;
        if (status == RPC_STATUS_OK) {
          Test__V1__EchoReply *reply = (Test__V1__EchoReply *)protobuf_c_message_unpack(
              &test__v1__echo_reply__descriptor, NULL, r.body_len, r.body);
          FUZZ_CHECK(reply && strcmp(reply->text, "alive") == 0, "alive: wrong reply");
          protobuf_c_message_free_unpacked(&reply->base, NULL);
        }
      }
      off += (size_t)len;
    }
    fuzz_buf_free(&in);
    FUZZ_CHECK(pong == 1, "alive: %d PONGs", pong);
    if (status == RPC_STATUS_RESOURCE_EXHAUSTED && fuzz_now_ms() < give_up) {
      fuzz_sleep_us(10000);
      continue;
    }
    FUZZ_CHECK(status == RPC_STATUS_OK, "alive: Say answered %d (%s) after %lu inputs", status,
               rpc_status_name(status), g.inputs);
    return;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g.srv) setup();
  if (size == 0) return 0;
  run_input(data, size);
  if (++g.inputs % ALIVE_EVERY == 0) check_alive();
  return 0;
}
