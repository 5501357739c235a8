/* Runs the "RPC in short" code of README.md (extracted by the readme_rpc genrule), compiled
 * against examples/kv.proto: kv_serve() hosts the example key-value service, kv_get() and
 * kv_get_async() call it, and every status is checked, so that the code users copy keeps
 * compiling and doing what it says. In C: kv.pb-c.h has a member named `delete`. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "examples/kv.rpc.h"
#include "examples/kv_service.h"

int kv_serve(rpc_server **out, const char *address, Kv__V1__KeyValue_Service *impl); /* README */
int kv_get(rpc_channel *ch, const char *key);                                         /* README */
int kv_get_async(rpc_channel *ch, rpc_cq *cq, const Kv__V1__GetRequest *req);         /* README */

static int failures;

static void expect(const char *what, int got, int want) {
  printf("%-40s %d%s\n", what, got, got == want ? "" : " (WRONG)");
  if (got != want) failures++;
}

static int put(rpc_channel *ch, const char *key, const char *value) {
  Kv__V1__PutRequest req = KV__V1__PUT_REQUEST__INIT;
  req.key = (char *)key;
  req.value.data = (uint8_t *)value;
  req.value.len = strlen(value);
  Kv__V1__PutReply *reply;
  int st = kv__v1__key_value__put_call(ch, &req, &reply, NULL, NULL, 0);
  if (st == RPC_STATUS_OK) kv__v1__put_reply__free_unpacked(reply, NULL);
  return st;
}

int main(void) {
  kv_service *kv = kv_service_create();
  rpc_server *s = NULL;
  if (!kv || kv_serve(&s, "127.0.0.1:0", (Kv__V1__KeyValue_Service *)kv_service_base(kv)) != 0)
    return 1;
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", rpc_server_port(s));
  rpc_channel *ch;
  rpc_cq *cq;
  if (rpc_channel_create(&ch, target, NULL) != 0 || rpc_cq_create(&cq) != 0) return 1;

  expect("kv_get(color), none yet", kv_get(ch, "color"), RPC_STATUS_NOT_FOUND);
  expect("Put(color, blue)", put(ch, "color", "blue"), RPC_STATUS_OK);
  expect("kv_get(color)", kv_get(ch, "color"), RPC_STATUS_OK);
  expect("kv_get(\"\")", kv_get(ch, ""), RPC_STATUS_INVALID_ARGUMENT);
  Kv__V1__GetRequest get = KV__V1__GET_REQUEST__INIT;
  get.key = "color";
  expect("kv_get_async(color)", kv_get_async(ch, cq, &get), RPC_STATUS_OK);
  get.key = "shape";
  expect("kv_get_async(shape)", kv_get_async(ch, cq, &get), RPC_STATUS_NOT_FOUND);
  expect("kv_get_async(NULL request)", kv_get_async(ch, cq, NULL), -EINVAL);
  rpc_server *other = s;
  expect("kv_serve(bad address)", kv_serve(&other, "no port", (Kv__V1__KeyValue_Service *)kv_service_base(kv)),
         -EINVAL);
  expect("kv_serve(bad address) leaves *out", other == s, 1);

  rpc_channel_destroy(ch);
  rpc_cq_destroy(cq);
  rpc_server_shutdown(s, 1000);
  rpc_server_destroy(s);
  kv_service_free(kv);
  printf("%s\n", failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}
