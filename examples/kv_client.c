/* kv_client [-a target] [--token-file PATH] get KEY | put KEY VALUE | del KEY: one blocking
 * call to kv.v1.KeyValue through rpc_channel_call(). With --token-file (a file holding one
 * token, for a kv_server started with the same flag), every call carries the header
 * "authorization: Bearer <token>", set once as channel metadata. Prints the value or the status;
 * exits 0 on OK, 1 otherwise. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "examples/bearer_token.h"
#include "examples/kv.pb-c.h"
#include "rpc/rpc.h"

#define CALL_TIMEOUT_MS 5000
#define BEARER "Bearer "

static int usage(void) {
  fprintf(stderr,
          "usage: kv_client [-a target] [--token-file PATH] get KEY | put KEY VALUE | del KEY\n");
  return 2;
}

int main(int argc, char **argv) {
  static const struct option longs[] = {{"token-file", required_argument, NULL, 'k'},
                                        {NULL, 0, NULL, 0}};
  const char *target = "127.0.0.1:7100", *token_file = NULL;
  int opt;
  while ((opt = getopt_long(argc, argv, "a:", longs, NULL)) != -1) {
    if (opt == 'a') target = optarg;
    else if (opt == 'k') token_file = optarg;
    else return usage();
  }
  argc -= optind;
  argv += optind;
  if (argc < 2) return usage();
  const char *op = argv[0];
  Kv__V1__GetRequest get = KV__V1__GET_REQUEST__INIT;
  Kv__V1__PutRequest put = KV__V1__PUT_REQUEST__INIT;
  Kv__V1__DeleteRequest del = KV__V1__DELETE_REQUEST__INIT;
  ProtobufCMessage *req;
  const char *method;
  if (strcmp(op, "get") == 0 && argc == 2) {
    get.key = argv[1];
    req = &get.base;
    method = "Get";
  } else if (strcmp(op, "put") == 0 && argc == 3) {
    put.key = argv[1];
    put.value.data = (uint8_t *)argv[2];
    put.value.len = strlen(argv[2]);
    req = &put.base;
    method = "Put";
  } else if (strcmp(op, "del") == 0 && argc == 2) {
    del.key = argv[1];
    req = &del.base;
    method = "Delete";
  } else {
    return usage();
  }

  rpc_channel_options co = {0};
  ex_token token;
  char bearer[sizeof BEARER + EX_TOKEN_MAX];
  rpc_md auth = {"authorization", strlen("authorization"), bearer, 0};
  if (token_file != NULL) {
    int rc = ex_token_read(&token, token_file);
    if (rc < 0) {
      fprintf(stderr, "kv_client: --token-file %s: %s\n", token_file, ex_token_strerror(rc));
      return 1;
    }
    auth.value_len = (size_t)snprintf(bearer, sizeof bearer, BEARER "%s", token.text);
    co.metadata = &auth; /* copied by rpc_channel_create() */
    co.metadata_count = 1;
  }
  rpc_channel *ch;
  int rc = rpc_channel_create(&ch, target, &co);
  if (rc < 0) {
    fprintf(stderr, "kv_client: %s: %s\n", target, strerror(-rc));
    return 1;
  }
  rpc_method m;
  rpc_method_find(&m, &kv__v1__key_value__descriptor, method);
  ProtobufCMessage *reply;
  char msg[RPC_MAX_ERROR_MESSAGE + 1];
  int st = rpc_channel_call(ch, &m, req, CALL_TIMEOUT_MS, &reply, msg, sizeof msg);
  if (st == RPC_STATUS_OK) {
    if (reply->descriptor == &kv__v1__get_reply__descriptor) {
      Kv__V1__GetReply *g = (Kv__V1__GetReply *)reply;
      printf("%.*s\n", (int)g->value.len, (const char *)g->value.data);
    } else if (reply->descriptor == &kv__v1__put_reply__descriptor) {
      printf("OK (%s)\n", ((Kv__V1__PutReply *)reply)->created ? "created" : "replaced");
    } else {
      printf("OK\n");
    }
    protobuf_c_message_free_unpacked(reply, NULL);
  } else if (st > 0) {
    printf("%s: %s\n", rpc_status_name(st), msg);
  } else {
    fprintf(stderr, "kv_client: call: %s\n", strerror(-st));
  }
  rpc_channel_destroy(ch);
  return st == RPC_STATUS_OK ? 0 : 1;
}
