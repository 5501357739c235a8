/* rpc_echo_client [-a target] [text...]: calls demo.v1.Echo/Say for each text (default
 * "hello"), then Calculator Add and Divide (also by zero) through the protoc-c generated stubs
 * on an rpc_channel. The stubs' closures run on the channel's thread; main waits for each. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "examples/example_util.h"
#include "examples/rpc_calc.pb-c.h"
#include "rpc/rpc.h"

#define CALL_TIMEOUT_MS 5000

/* One outstanding stub call: the closure fills it, main waits on it. */
struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
};

static void wait_done(struct waiter *w) {
  pthread_mutex_lock(&w->mu);
  while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
  w->done = 0;
  pthread_mutex_unlock(&w->mu);
}

static void signal_done(struct waiter *w) {
  pthread_mutex_lock(&w->mu);
  w->done = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static int failures;

static void on_echo(const Demo__V1__EchoReply *reply, void *data) {
  const char *msg;
  int st = rpc_last_status(&msg);
  if (reply) printf("Say -> \"%s\"\n", reply->text);
  else printf("Say failed: %s (%s)\n", rpc_status_name(st), msg), failures++;
  signal_done(data);
}

static void on_calc(const Demo__V1__CalcReply *reply, void *data) {
  const char *msg;
  int st = rpc_last_status(&msg);
  if (reply) printf("  = %lld\n", (long long)reply->result);
  else printf("  failed: %s (%s)\n", rpc_status_name(st), msg);
  signal_done(data);
}

int main(int argc, char **argv) {
  static const char *const flags[] = {
      "-a TARGET         the server: host:port, unix:/path, or several, comma-separated "
      "(default 127.0.0.1:7000)",
      "text...           texts to send to Echo/Say (default: hello)", NULL};
  static const ex_usage usage = {"[-a target] [text...]", flags};
  ex_init(argv[0]);
  const char *target = "127.0.0.1:7000";
  int opt;
  while ((opt = getopt_long(argc, argv, "a:h", ex_help_option, NULL)) != -1) {
    if (opt == 'a') target = optarg;
    else ex_usage_exit(&usage, opt == 'h' ? 0 : 2);
  }
  rpc_channel_options co = {0};
  co.default_timeout_ms = CALL_TIMEOUT_MS; /* the stubs use the channel's default deadline */
  rpc_channel *ch;
  int rc = rpc_channel_create(&ch, target, &co);
  if (rc < 0) {
    fprintf(stderr, "rpc_echo_client: %s: %s\n", target, strerror(-rc));
    return 1;
  }
  ProtobufCService *echo = rpc_channel_service(ch, &demo__v1__echo__descriptor);
  ProtobufCService *calc = rpc_channel_service(ch, &demo__v1__calculator__descriptor);
  struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

  const char *dflt[] = {"hello"};
  char **texts = optind < argc ? argv + optind : (char **)dflt;
  int ntexts = optind < argc ? argc - optind : 1;
  for (int i = 0; i < ntexts; i++) {
    Demo__V1__EchoRequest req = DEMO__V1__ECHO_REQUEST__INIT;
    req.text = texts[i];
    demo__v1__echo__say(echo, &req, on_echo, &w);
    wait_done(&w);
  }
  const long long ops[][2] = {{40, 2}, {7, 0}};
  for (int i = 0; i < 2; i++) {
    Demo__V1__CalcRequest req = DEMO__V1__CALC_REQUEST__INIT;
    req.a = ops[i][0];
    req.b = ops[i][1];
    printf("Add(%lld, %lld)\n", ops[i][0], ops[i][1]);
    demo__v1__calculator__add(calc, &req, on_calc, &w);
    wait_done(&w);
    printf("Divide(%lld, %lld)\n", ops[i][0], ops[i][1]);
    demo__v1__calculator__divide(calc, &req, on_calc, &w);
    wait_done(&w);
  }
  rpc_channel_destroy(ch);
  return failures ? 1 : 0;
}
