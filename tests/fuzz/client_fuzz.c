/* Fuzz target of the RPC client's receive path (issue 12): bytes from a server -> frames ->
 * responses -> completions. Per input, a fresh rpc_channel connects to a fake server (a unix
 * socket this process listens on) and submits K calls (rpc_channel_submit into an rpc_cq);
 * the fake server reads their REQUESTs, which teaches it their wire ids, then plays the input
 * as a script: it writes frames and raw bytes to the channel, cancels calls and waits for
 * them, and at the end ends the connection (after keeping it open until the calls' deadline,
 * if the input says so). Then every completion is checked, the channel is destroyed, and
 * nothing may complete twice. A fresh channel per input keeps inputs apart: each starts on a
 * new connection whose ids start at 1, and destroy runs after every kind of ending. *
 * INPUT. Byte 0: bits 0-1 are K - 1 (1 to 4 calls); bit 2 keeps the connection open after the
 * script, so that the calls still open end at their deadline (KEEP_DEADLINE_MS), instead of
 * ending it (they end UNAVAILABLE; deadline CLOSE_DEADLINE_MS); bit 3 ends the connection with
 * a plain close() instead of the graceful end of WIRE.md section 11 (shut down the write side,
 * read to the channel's close): a write of the channel may then fail before it reads the last
 * frames, so every call may also end UNAVAILABLE. Then operations until the input ends, each
 * an opcode byte and its operands (an operand cut by the end reads as 0):
 *   0x00-0x3f FRAME   a header of type op & 7 (0 and 7 are no type), then its body:
 *                     status  1 byte, sent as it is (above 16 is malformed);
 *                     id      1 byte: 0x00-0x7f the wire id of call b % K, learned from its
 *                             REQUEST; 0x80-0xfe the id b - 0x80 (0, or above K: an id never
 *                             given out); 0xff the next 4 bytes, little-endian;
 *                     len     1 byte: 0x00-0xfe that many body bytes follow (fewer when the
 *                             input ends); 0xff the next 4 bytes are body_len, only announced:
 *                             the body is what the next operations write.
 *                     method_id and timeout_us are 0, as in any server frame.
 *   0x40-0x7f RAW     (op & 0x3f) + 1 bytes follow, written as they are.
 *   0x80-0x9f REPLY   a well-formed status-0 RESPONSE to call op % K: EchoReply{text: "r"}.
 *   0xa0-0xbf CANCEL  write what came before, rpc_channel_cancel() call op % K, and wait for
 *                     its completion.
 *   0xc0-0xdf WAIT    write what came before; if the model says call op % K is complete, wait
 *                     for its completion; if it is open and the connection is kept open, wait
 *                     for its deadline; otherwise as FLUSH.
 *   0xe0-0xff FLUSH   write what came before, then pause FLUSH_US, so that the channel reads
 *                     it apart from what follows.
 *
 * CHANNEL. max_body 1024 (oversize replies are cheap to reach), no keepalive, reconnects at
 * once. Its target is the fake server; every connection it makes besides the first (after a
 * GOAWAY or a failure) is accepted and closed once the channel is destroyed.
 *
 * INVARIANTS. The REQUESTs carry ids 1..K in submission order, the method's id and a deadline
 * no longer than the call's. Every submitted call completes exactly once (its ctx and call id),
 * within a bounded time after the script (the deadline covers the rest), with a status in
 * 0..16, a reply exactly when the status is 0 (of the method's output type), and "" as the
 * message of a success. The status is the one a model of the channel predicts from the bytes
 * written (rpc/WIRE.md sections 8 and 11): a RESPONSE to a call in flight completes it with its
 * status and error text (status 0: the reply, or INTERNAL when it does not unpack; over
 * max_body: RESOURCE_EXHAUSTED); a RESPONSE to an id given out but no longer in flight is
 * ignored; one to an id never given out, a malformed header, a frame of the client's
 * direction or an oversize PONG is a protocol error (every call open: UNAVAILABLE); a GOAWAY
 * fails the calls above its id UNAVAILABLE; a cancel gives CANCELLED; the end of the script
 * gives UNAVAILABLE (ended) or DEADLINE_EXCEEDED (kept open). Where the order of two events is
 * not fixed (a cancel racing bytes written before it; a deadline that may come before the
 * channel reads them: the short one of a kept-open connection, or the long one once half of it
 * has passed), both outcomes are allowed. After the fake server's end of stream the channel
 * closes the connection. Destroying the channel completes nothing more. LeakSanitizer checks at
 * exit that nothing leaked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/rpc_test.pb-c.h"

enum {
  MAX_CALLS = 4,
  MAX_BODY = 1024,
  CLOSE_DEADLINE_MS = 5000,
  KEEP_DEADLINE_MS = 20,
  BOUND_MS = 3000, /* completions, accepts and REQUESTs come within this, or it hangs */
  FLUSH_US = 200,
  ALL_STATUSES = (1 << 17) - 1
};

#define BIT(status) (1u << (status))

/* ---- Set-up and tear-down ---------------------------------------------------------------- */

static struct {
  int ready;
  char dir[64];
  char path[96];
  char target[128];
  int lfd;
  rpc_cq *cq;
  rpc_method say;
} g;

/* Accept and close every connection waiting on the listener. */
static void drain_backlog(void) {
  int fd;
  while ((fd = accept4(g.lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) close(fd);
}

static void free_run(void);

static void teardown(void) {
  free_run();
  rpc_cq_destroy(g.cq);
  drain_backlog();
  close(g.lfd);
  unlink(g.path);
  rmdir(g.dir);
}

static void setup(void) {
  int rc = fuzz_tmpdir(g.dir, sizeof g.dir);
  FUZZ_CHECK(rc == 0, "mkdtemp: %s", strerror(-rc));
  snprintf(g.path, sizeof g.path, "%s/client.sock", g.dir);
  snprintf(g.target, sizeof g.target, "unix:%s", g.path);
  g.lfd = fuzz_unix_listen(g.path);
  FUZZ_CHECK(g.lfd >= 0, "listen %s: %s", g.path, strerror(-g.lfd));
  FUZZ_CHECK(rpc_cq_create(&g.cq) == 0, "rpc_cq_create");
  FUZZ_CHECK(rpc_method_find(&g.say, &test__v1__echo__descriptor, "Say") == 0, "Say");
  FUZZ_CHECK(atexit(teardown) == 0, "atexit");
  g.ready = 1;
}

/* ---- The model of the channel ------------------------------------------------------------ */

typedef struct expect {
  int open;       /* in flight, as far as the bytes written so far go */
  unsigned allow; /* BIT(status) of every status allowed; 0: not decided yet */
  int status;     /* the status the bytes decided, when they did (-1: none) */
  int has_msg;    /* they decided it with a RESPONSE, whose error text is msg */
  size_t msg_len;
  char msg[RPC_MAX_ERROR_MESSAGE];
} expect;

typedef struct run {
  rpc_channel *ch;
  int k;
  int keep_open;
  int abrupt; /* end with a plain close(), not the graceful end */
  int64_t submitted_ms, deadline_ms;
  uint64_t call_id[MAX_CALLS];
  expect e[MAX_CALLS];
  /* Completions. */
  int done[MAX_CALLS];
  int got[MAX_CALLS];
  char got_msg[MAX_CALLS][RPC_MAX_ERROR_MESSAGE + 1];
  /* The fake server's side. */
  int fd;
  fuzz_buf out;  /* script bytes not yet written */
  fuzz_buf seen; /* what the channel sends after its REQUESTs (CANCELs): discarded */
  /* The model's receive buffer, as the channel's. */
  fuzz_buf rb;
  uint64_t skip;
  int dead; /* a protocol error: the channel reads nothing more */
} run;

static run g_run; /* its buffers are kept from one input to the next */

static void free_run(void) {
  fuzz_buf_free(&g_run.out);
  fuzz_buf_free(&g_run.seen);
  fuzz_buf_free(&g_run.rb);
}

/* Decide call i's outcome (allowed statuses). The channel may meet the deadline before it reads
 * the bytes that decided: always possible with the short deadline of a kept-open connection
 * (a loaded machine stalls the channel's thread for that long), and with the long one once half
 * of it has passed. */
static void decide(run *r, int i, unsigned allow) {
  r->e[i].open = 0;
  r->e[i].allow |= allow;
  if (r->keep_open || fuzz_now_ms() - r->submitted_ms > (r->deadline_ms - r->submitted_ms) / 2)
    r->e[i].allow |= BIT(RPC_STATUS_DEADLINE_EXCEEDED);
}

/* msg: the RESPONSE's error text (NULL: the status is the channel's own). */
static void decide_status(run *r, int i, int status, const uint8_t *msg, size_t len) {
  decide(r, i, BIT(status));
  r->e[i].status = status;
  r->e[i].has_msg = msg != NULL;
  r->e[i].msg_len = len < RPC_MAX_ERROR_MESSAGE ? len : RPC_MAX_ERROR_MESSAGE;
  if (r->e[i].msg_len) memcpy(r->e[i].msg, msg, r->e[i].msg_len);
}

static void fail_open(run *r, int status) {
  for (int i = 0; i < r->k; i++)
    if (r->e[i].open) decide_status(r, i, status, NULL, 0);
}

/* The call whose wire id is id (ids 1..K, checked when the REQUESTs were read), or -1. */
static int call_of(const run *r, uint32_t id) {
  return id >= 1 && id <= (uint32_t)r->k ? (int)id - 1 : -1;
}

static void model_response(run *r, const rpc_frame *f, int oversize) {
  int i = call_of(r, f->request_id);
  if (i < 0) {
    /* An id never given out: a broken server. */
    r->dead = 1;
    fail_open(r, RPC_STATUS_UNAVAILABLE);
    return;
  }
  if (!r->e[i].open) return; /* given out, no longer in flight (cancelled, timed out): ignored */
  if (oversize) {
    decide_status(r, i, RPC_STATUS_RESOURCE_EXHAUSTED, NULL, 0);
  } else if (f->status != RPC_STATUS_OK) {
    decide_status(r, i, f->status, f->body, f->body_len);
  } else {
    ProtobufCMessage *m =
        protobuf_c_message_unpack(&test__v1__echo_reply__descriptor, NULL, f->body_len, f->body);
    decide_status(r, i, m ? RPC_STATUS_OK : RPC_STATUS_INTERNAL, NULL, 0);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
  }
}

static void model_frame(run *r, const rpc_frame *f, int oversize) {
  if (f->type == RPC_TYPE_RESPONSE) {
    model_response(r, f, oversize);
  } else if (f->type == RPC_TYPE_GOAWAY) {
    /* Calls above its id were not processed. */
    for (int i = 0; i < r->k; i++)
      if (r->e[i].open && (uint32_t)(i + 1) > f->request_id)
        decide_status(r, i, RPC_STATUS_UNAVAILABLE, NULL, 0);
  } else if (f->type != RPC_TYPE_PONG || oversize) {
    r->dead = 1; /* REQUEST, CANCEL, PING from a server, or a PONG with a body */
    fail_open(r, RPC_STATUS_UNAVAILABLE);
  }
}

/* The channel reads n more bytes: every whole frame is handled, as rpc__rbuf_consume does. */
static void model_feed(run *r, const uint8_t *p, size_t n) {
  if (r->dead) return;
  FUZZ_CHECK(fuzz_buf_add(&r->rb, p, n) == 0, "out of memory");
  while (!r->dead) {
    if (r->skip > 0) {
      size_t k = r->rb.len < r->skip ? r->rb.len : (size_t)r->skip;
      fuzz_buf_drop(&r->rb, k);
      r->skip -= k;
      if (r->skip > 0) return;
    }
    rpc_frame f;
    int rc = rpc_frame_parse(r->rb.len ? r->rb.p : NULL, r->rb.len, MAX_BODY, &f);
    if (rc == -EAGAIN) return;
    if (rc == -EPROTO) {
      r->dead = 1;
      fail_open(r, RPC_STATUS_UNAVAILABLE);
      return;
    }
    model_frame(r, &f, rc == -EMSGSIZE);
    if (rc == -EMSGSIZE) r->skip = RPC_FRAME_HEADER_SIZE + (uint64_t)f.body_len;
    else fuzz_buf_drop(&r->rb, (size_t)rc);
  }
}

/* ---- Completions ------------------------------------------------------------------------- */

static void on_completion(run *r, const rpc_completion *c) {
  uintptr_t ctx = (uintptr_t)c->ctx;
  FUZZ_CHECK(ctx >= 1 && ctx <= (uintptr_t)r->k, "completion with ctx %lu, not a call of "
             "this input", (unsigned long)ctx);
  int i = (int)ctx - 1;
  FUZZ_CHECK(c->call_id == r->call_id[i], "call %d: call id %llu, submitted as %llu", i,
             (unsigned long long)c->call_id, (unsigned long long)r->call_id[i]);
  FUZZ_CHECK(++r->done[i] == 1, "call %d completed twice (now with status %d)", i, c->status);
  FUZZ_CHECK(c->status >= 0 && c->status <= RPC_STATUS_UNAUTHENTICATED, "call %d: status %d", i,
             c->status);
  FUZZ_CHECK((c->status == RPC_STATUS_OK) == (c->reply != NULL), "call %d: status %d, reply %p",
             i, c->status, (void *)c->reply);
  FUZZ_CHECK(c->message != NULL, "call %d: NULL message", i);
  FUZZ_CHECK(c->status != RPC_STATUS_OK || c->message[0] == 0, "call %d: success with message "
             "\"%s\"", i, c->message);
  FUZZ_CHECK(strlen(c->message) <= RPC_MAX_ERROR_MESSAGE, "call %d: message of %zu bytes", i,
             strlen(c->message));
  if (c->reply) {
    FUZZ_CHECK(c->reply->descriptor == &test__v1__echo_reply__descriptor,
               "call %d: reply of type %s", i, c->reply->descriptor->name);
    protobuf_c_message_free_unpacked(c->reply, NULL);
  }
  r->got[i] = c->status;
  strcpy(r->got_msg[i], c->message);
}

/* Collect completions until call i has completed (i < 0: every call), or fail at deadline. */
static void wait_done(run *r, int i, int64_t deadline_ms) {
  for (;;) {
    int all = 1;
    for (int j = 0; j < r->k; j++) all &= r->done[j] > 0;
    if (i < 0 ? all : r->done[i] > 0) return;
    int64_t left = deadline_ms - fuzz_now_ms();
    FUZZ_CHECK(left > 0, "call %d did not complete in time (keep_open %d)", i, r->keep_open);
    rpc_completion c[MAX_CALLS];
    int n = rpc_cq_wait(g.cq, c, MAX_CALLS, (int)left);
    FUZZ_CHECK(n >= 0, "rpc_cq_wait: %d", n);
    for (int j = 0; j < n; j++) on_completion(r, &c[j]);
  }
}

/* Each completion against the model. */
static void check_outcomes(const run *r) {
  for (int i = 0; i < r->k; i++) {
    const expect *e = &r->e[i];
    FUZZ_CHECK(e->allow & BIT(r->got[i]), "call %d completed %s (%d) \"%s\"; the model allows "
               "0x%x (keep_open %d)", i, rpc_status_name(r->got[i]), r->got[i], r->got_msg[i],
               e->allow, r->keep_open);
    /* The error text as the RESPONSE gave it (as a C string: up to its first NUL), unless
     * another way to the same status was allowed (a cancel, a deadline, an abrupt end). */
    if (!e->has_msg || r->got[i] != e->status || e->allow != BIT(e->status)) continue;
    size_t want = strnlen(e->msg, e->msg_len);
    FUZZ_CHECK(strlen(r->got_msg[i]) == want && memcmp(r->got_msg[i], e->msg, want) == 0,
               "call %d: message \"%s\", the RESPONSE said \"%.*s\"", i, r->got_msg[i],
               (int)want, e->msg);
  }
}

/* ---- The fake server --------------------------------------------------------------------- */

/* Write what the script queued, and let the model read it. */
static void flush(run *r) {
  int rc = fuzz_send_all(r->fd, r->out.p, r->out.len, &r->seen, fuzz_now_ms() + BOUND_MS);
  /* The channel may have closed the connection (a protocol error, drained after a GOAWAY). */
  FUZZ_CHECK(rc == 0 || rc == -EPIPE || rc == -ECONNRESET, "send: %s", strerror(-rc));
  model_feed(r, r->out.p, r->out.len);
  r->out.len = 0;
  r->seen.len = 0;
}

static int whole_requests(const fuzz_buf *in, void *arg) {
  int k = *(const int *)arg, n = 0;
  size_t off = 0;
  if (in->len == 0) return 0;
  rpc_frame f;
  int rc;
  while (n < k && (rc = rpc_frame_parse(in->p + off, in->len - off, RPC_MAX_BODY_HARD, &f)) > 0) {
    off += (size_t)rc;
    n++;
  }
  return n == k;
}

/* Accept the connection the channel makes when it is created. */
static void accept_channel(run *r) {
  FUZZ_CHECK(fuzz_wait_readable(g.lfd, fuzz_now_ms() + BOUND_MS), "the channel did not connect");
  r->fd = accept4(g.lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  FUZZ_CHECK(r->fd >= 0, "accept: %s", strerror(errno));
}

/* Read the K REQUESTs: ids 1..K in order, Say, the text of each is its call's index, the
 * deadline no longer than the call's. Returns 1, or 0 when the calls of a kept-open connection
 * reached their short deadline before all their REQUESTs came (a loaded machine): then no
 * script is played, and every call must end DEADLINE_EXCEEDED. */
static int read_requests(run *r) {
  int64_t until = r->keep_open ? r->deadline_ms : fuzz_now_ms() + BOUND_MS;
  fuzz_buf in = {0};
  int rc = fuzz_recv(r->fd, &in, until, whole_requests, &r->k);
  FUZZ_CHECK(rc == 0 || (rc == -ETIMEDOUT && r->keep_open), "the %d REQUESTs did not come (%d, "
             "%zu bytes)", r->k, rc, in.len);
  size_t off = 0;
  int i;
  for (i = 0; i < r->k; i++) {
    rpc_frame f;
    int len = off < in.len ? rpc_frame_parse(in.p + off, in.len - off, RPC_MAX_BODY_HARD, &f)
                           : -EAGAIN;
    if (len == -EAGAIN && rc != 0) break;
    FUZZ_CHECK(len > 0 && f.type == RPC_TYPE_REQUEST, "frame %d from the channel: %d, type %d",
               i, len, len > 0 ? f.type : -1);
    FUZZ_CHECK(f.request_id == (uint32_t)i + 1, "call %d sent with id %u", i, f.request_id);
    FUZZ_CHECK(f.method_id == g.say.id, "call %d: method id %#x", i, f.method_id);
    uint64_t max_us = (uint64_t)(r->deadline_ms - r->submitted_ms) * 1000u;
    FUZZ_CHECK(f.timeout_us > 0 && f.timeout_us <= max_us, "call %d: timeout_us %u, deadline "
               "%llu us", i, f.timeout_us, (unsigned long long)max_us);
    Test__V1__EchoRequest *req = (Test__V1__EchoRequest *)protobuf_c_message_unpack(
        &test__v1__echo_request__descriptor, NULL, f.body_len, f.body);
    FUZZ_CHECK(req && req->text && atoi(req->text) == i, "call %d: request body", i);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    off += (size_t)len;
  }
  fuzz_buf_free(&in);
  return i == r->k;
}

/* The input's operations (see the top of the file). */
typedef struct script {
  const uint8_t *p;
  size_t n, off;
} script;

static uint8_t byte_at(script *s) { return s->off < s->n ? s->p[s->off++] : 0; }

static uint32_t u32_at(script *s) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)byte_at(s) << (8 * i);
  return v;
}

static void queue(run *r, const void *p, size_t n) {
  FUZZ_CHECK(fuzz_buf_add(&r->out, p, n) == 0, "out of memory");
}

static void op_frame(run *r, script *s, uint8_t op) {
  rpc_frame f = {0};
  f.type = op & 7;
  f.status = byte_at(s);
  uint8_t id = byte_at(s);
  f.request_id = id < 0x80 ? (uint32_t)(id % r->k) + 1 : id < 0xff ? id - 0x80u : u32_at(s);
  uint8_t len = byte_at(s);
  size_t body = 0;
  if (len == 0xff) {
    f.body_len = u32_at(s);
  } else {
    body = len < s->n - s->off ? len : s->n - s->off;
    f.body_len = (uint32_t)body;
  }
  uint8_t h[RPC_FRAME_HEADER_SIZE];
  rpc_frame_encode(&f, h);
  queue(r, h, sizeof h);
  queue(r, s->p + s->off, body);
  s->off += body;
}

static void op_reply(run *r, int i) {
  static const uint8_t body[] = {0x0a, 0x01, 'r'}; /* EchoReply{text: "r"} */
  rpc_frame f = {0};
  f.type = RPC_TYPE_RESPONSE;
  f.request_id = (uint32_t)i + 1;
  f.body_len = sizeof body;
  uint8_t h[RPC_FRAME_HEADER_SIZE];
  rpc_frame_encode(&f, h);
  queue(r, h, sizeof h);
  queue(r, body, sizeof body);
}

static void op_cancel(run *r, int i) {
  flush(r);
  int rc = rpc_channel_cancel(r->ch, r->call_id[i]);
  FUZZ_CHECK(rc == 0, "rpc_channel_cancel: %d", rc);
  /* In flight: CANCELLED. Decided by the bytes before: that, or CANCELLED if the cancel is
   * handled first. */
  decide(r, i, BIT(RPC_STATUS_CANCELLED));
  wait_done(r, i, fuzz_now_ms() + BOUND_MS);
}

static void op_wait(run *r, int i) {
  flush(r);
  if (!r->e[i].open) {
    wait_done(r, i, fuzz_now_ms() + BOUND_MS);
  } else if (r->keep_open) {
    wait_done(r, i, r->deadline_ms + BOUND_MS);
    /* Its deadline passed; the other calls' deadlines are as good as passed too (submitted
     * together), but a frame written now may still beat one of them. */
    decide(r, i, BIT(RPC_STATUS_DEADLINE_EXCEEDED));
    for (int j = 0; j < r->k; j++)
      if (r->e[j].open) decide(r, j, ALL_STATUSES);
  } else {
    fuzz_sleep_us(FLUSH_US);
  }
}

static void play(run *r, script *s) {
  while (s->off < s->n) {
    uint8_t op = byte_at(s);
    if (op < 0x40) {
      op_frame(r, s, op);
    } else if (op < 0x80) {
      size_t len = (size_t)(op & 0x3f) + 1;
      if (len > s->n - s->off) len = s->n - s->off;
      queue(r, s->p + s->off, len);
      s->off += len;
    } else if (op < 0xa0) {
      op_reply(r, op % r->k);
    } else if (op < 0xc0) {
      op_cancel(r, op % r->k);
    } else if (op < 0xe0) {
      op_wait(r, op % r->k);
    } else {
      flush(r);
      fuzz_sleep_us(FLUSH_US);
    }
  }
  flush(r);
}

/* ---- One input --------------------------------------------------------------------------- */

static void open_channel(run *r) {
  rpc_channel_options o = {0};
  o.max_body = MAX_BODY;
  o.backoff_initial_ms = 1;
  o.backoff_max_ms = 5;
  int rc = rpc_channel_create(&r->ch, g.target, &o);
  FUZZ_CHECK(rc == 0, "rpc_channel_create: %d", rc);
}

static void submit_calls(run *r) {
  int rc, ms = r->keep_open ? KEEP_DEADLINE_MS : CLOSE_DEADLINE_MS;
  r->submitted_ms = fuzz_now_ms();
  r->deadline_ms = r->submitted_ms + ms;
  for (int i = 0; i < r->k; i++) {
    char text[16];
    snprintf(text, sizeof text, "%d", i);
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    req.text = text;
    rc = rpc_channel_submit(r->ch, &g.say, &req.base, ms, g.cq, (void *)(uintptr_t)(i + 1),
                            &r->call_id[i]);
    FUZZ_CHECK(rc == 0, "rpc_channel_submit: %d", rc);
    r->e[i].open = 1;
    r->e[i].status = -1;
  }
}

/* The fake server ends the connection as WIRE.md section 11 says a server does: it shuts
 * down its write side, so that the channel reads every byte and then the end of stream, and
 * reads until the channel closes. An abrupt close instead can make a write of the channel
 * (a CANCEL) fail before the channel has read the last frames, which then are lost. */
static void end_connection(run *r) {
  if (r->abrupt) {
    close(r->fd);
    return;
  }
  FUZZ_CHECK(shutdown(r->fd, SHUT_WR) == 0 || errno == ENOTCONN, "shutdown: %s", strerror(errno));
  int rc = fuzz_recv(r->fd, &r->seen, fuzz_now_ms() + BOUND_MS, NULL, NULL);
  r->seen.len = 0;
  /* A reset: the channel closed with bytes unread, after a protocol error. */
  FUZZ_CHECK(rc == 1 || rc == -ECONNRESET, "the channel did not close the connection after "
             "the server's end of stream (%d)", rc);
  close(r->fd);
}

static void finish(run *r) {
  if (r->keep_open) {
    wait_done(r, -1, r->deadline_ms + BOUND_MS);
    fail_open(r, RPC_STATUS_DEADLINE_EXCEEDED);
    end_connection(r);
  } else {
    fail_open(r, RPC_STATUS_UNAVAILABLE);
    if (r->abrupt)
      for (int i = 0; i < r->k; i++) r->e[i].allow |= BIT(RPC_STATUS_UNAVAILABLE);
    end_connection(r);
    wait_done(r, -1, fuzz_now_ms() + BOUND_MS);
  }
  check_outcomes(r);
  int rc = rpc_channel_destroy(r->ch);
  FUZZ_CHECK(rc == 0, "rpc_channel_destroy: %d", rc);
  rpc_completion c[1];
  int n = rpc_cq_wait(g.cq, c, 1, 0);
  FUZZ_CHECK(n == 0, "a completion after every call completed: ctx %p, status %d",
             n > 0 ? c[0].ctx : NULL, n > 0 ? c[0].status : -1);
  drain_backlog();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g.ready) setup();
  if (size == 0) return 0;
  run *r = &g_run;
  fuzz_buf out = r->out, seen = r->seen, rb = r->rb; /* buffers are kept across inputs */
  memset(r, 0, sizeof *r);
  r->out = out;
  r->seen = seen;
  r->rb = rb;
  r->out.len = r->seen.len = r->rb.len = 0;
  r->k = (data[0] & 3) + 1;
  r->keep_open = (data[0] >> 2) & 1;
  r->abrupt = (data[0] >> 3) & 1;
  drain_backlog();
  open_channel(r);
  accept_channel(r);
  submit_calls(r);
  if (read_requests(r)) {
    script s = {data + 1, size - 1, 0};
    play(r, &s);
  }
  finish(r);
  return 0;
}
