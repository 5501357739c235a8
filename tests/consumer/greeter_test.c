/* Serves consumer.v1.Greeter on 127.0.0.1:0 and calls it: once through rpc_channel_call() and
 * once through the health service. Exits 0 when both answer as expected. */
#include <stdio.h>
#include <string.h>

#include "greeter.pb-c.h"
#include "rpc/health.pb-c.h"
#include "rpc/rpc.h"

static void greeter_hello(Consumer__V1__Greeter_Service *svc, const Consumer__V1__HelloRequest *in,
                          Consumer__V1__HelloReply_Closure closure, void *data) {
  char text[128];
  snprintf(text, sizeof text, "hello, %s", in->name);
  Consumer__V1__HelloReply out = CONSUMER__V1__HELLO_REPLY__INIT;
  out.greeting = text;
  closure(&out, data);
}

static Consumer__V1__Greeter_Service greeter = CONSUMER__V1__GREETER__INIT(greeter_);

int main(void) {
  rpc_server *s;
  rpc_channel *ch;
  char target[64];
  if (rpc_server_create(&s, NULL) || rpc_server_add_service(s, &greeter.base) ||
      rpc_server_enable_health(s) || rpc_server_listen(s, "127.0.0.1:0") || rpc_server_start(s))
    return 1;
  snprintf(target, sizeof target, "127.0.0.1:%d", rpc_server_port(s));
  if (rpc_channel_create(&ch, target, NULL)) return 1;

  rpc_method m;
  rpc_method_find(&m, &consumer__v1__greeter__descriptor, "Hello");
  Consumer__V1__HelloRequest req = CONSUMER__V1__HELLO_REQUEST__INIT;
  req.name = "consumer";
  ProtobufCMessage *reply;
  char msg[128];
  int st = rpc_channel_call(ch, &m, &req.base, 5000, &reply, msg, sizeof msg);
  int ok = st == RPC_STATUS_OK &&
           strcmp(((Consumer__V1__HelloReply *)reply)->greeting, "hello, consumer") == 0;
  printf("Greeter.Hello: %s\n", st == 0 ? ((Consumer__V1__HelloReply *)reply)->greeting : msg);
  if (st == 0) protobuf_c_message_free_unpacked(reply, NULL);

  rpc_method_find(&m, &gaio__health__v1__health__descriptor, "Check");
  Gaio__Health__V1__HealthCheckRequest h = GAIO__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  st = rpc_channel_call(ch, &m, &h.base, 5000, &reply, msg, sizeof msg);
  ok = ok && st == RPC_STATUS_OK &&
       ((Gaio__Health__V1__HealthCheckResponse *)reply)->status ==
           GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  printf("Health.Check: %s\n", rpc_status_name(st));
  if (st == 0) protobuf_c_message_free_unpacked(reply, NULL);

  rpc_channel_destroy(ch);
  rpc_server_destroy(s);
  printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
