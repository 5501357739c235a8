/* client [address] [name]: calls first.v1.Greeter/Hello once and prints the greeting. */
#include <stdio.h>
#include <string.h>

#include "examples/first/greeter.rpc.h"

int main(int argc, char **argv) {
  const char *address = argc > 1 ? argv[1] : "127.0.0.1:7300";
  rpc_channel *ch;
  int rc = rpc_channel_create(&ch, address, NULL);
  if (rc < 0) {
    fprintf(stderr, "client: %s: %s\n", address, strerror(-rc));
    return 1;
  }
  First__V1__HelloRequest req = FIRST__V1__HELLO_REQUEST__INIT;
  req.name = argc > 2 ? argv[2] : "world";
  First__V1__HelloReply *reply;
  rpc_call_options opts = {.timeout_ms = 5000};
  char msg[RPC_MAX_ERROR_MESSAGE + 1];
  int st = first__v1__greeter__hello_call(ch, &req, &reply, &opts, msg, sizeof msg);
  if (st == RPC_STATUS_OK) {
    printf("%s\n", reply->greeting);
    first__v1__hello_reply__free_unpacked(reply, NULL);
  } else if (st > 0) {
    fprintf(stderr, "client: %s: %s\n", rpc_status_name(st), msg);
  } else {
    fprintf(stderr, "client: %s\n", strerror(-st));
  }
  rpc_channel_destroy(ch);
  return st == RPC_STATUS_OK ? 0 : 1;
}
