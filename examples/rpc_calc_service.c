/* demo.v1.Echo and demo.v1.Calculator: a synchronous handler (Say, Add, Divide) replies with a
 * message on its stack; Sleep replies later from another thread through the call handle. */
#include "examples/rpc_calc_service.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "examples/rpc_calc.pb-c.h"

#define SAY_MAX 1024  /* bytes of text echoed back */
#define SLEEP_MAX_MS 60000

static void echo_say(Demo__V1__Echo_Service *svc, const Demo__V1__EchoRequest *in,
                     Demo__V1__EchoReply_Closure closure, void *data) {
  char text[SAY_MAX + 8];
  snprintf(text, sizeof text, "echo: %.*s", SAY_MAX, in->text);
  Demo__V1__EchoReply out = DEMO__V1__ECHO_REPLY__INIT;
  out.text = text;
  closure(&out, data); /* packed here: the stack buffer may go away afterwards */
}

struct sleeper {
  Demo__V1__EchoReply_Closure closure;
  void *data;
  int ms;
};

static void *sleep_thread(void *arg) {
  struct sleeper *s = arg;
  rpc_call *call = rpc_server_call(s->data);
  /* Sleep in small steps so that a cancelled call (deadline, CANCEL) ends early. */
  for (int left = s->ms; left > 0 && !rpc_call_cancelled(call); left -= 5) {
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
  }
  Demo__V1__EchoReply out = DEMO__V1__ECHO_REPLY__INIT;
  out.text = rpc_call_cancelled(call) ? "cancelled" : "woke up";
  s->closure(&out, s->data);
  free(s);
  return NULL;
}

static void echo_sleep(Demo__V1__Echo_Service *svc, const Demo__V1__EchoRequest *in,
                       Demo__V1__EchoReply_Closure closure, void *data) {
  struct sleeper *s = malloc(sizeof *s);
  pthread_t th;
  if (!s) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  s->closure = closure;
  s->data = data;
  s->ms = in->delay_ms < 0 ? 0 : in->delay_ms > SLEEP_MAX_MS ? SLEEP_MAX_MS : in->delay_ms;
  if (pthread_create(&th, NULL, sleep_thread, s) != 0) {
    free(s);
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_RESOURCE_EXHAUSTED, "no thread");
    return;
  }
  pthread_detach(th);
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

static Demo__V1__Echo_Service echo_service = DEMO__V1__ECHO__INIT(echo_);
static Demo__V1__Calculator_Service calc_service = DEMO__V1__CALCULATOR__INIT(calc_);

int calc_services_add(rpc_server *s) {
  int rc = rpc_server_add_service(s, &echo_service.base);
  if (rc == 0) rc = rpc_server_add_service(s, &calc_service.base);
  return rc;
}
