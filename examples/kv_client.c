/* kv_client [-a target] [--token-file PATH] get KEY | put KEY VALUE | del KEY: one blocking
 * call to kv.v1.KeyValue through the typed helpers rpc_proto_library generates
 * (examples/kv.rpc.h: kv__v1__key_value__get_call() and the like). With --token-file (a file
 * holding one token, for a kv_server started with the same flag), every call carries the header
 * "authorization: Bearer <token>", set once as channel metadata. Prints the value or the status;
 * exits 0 on OK, 1 otherwise. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "examples/bearer_token.h"
#include "examples/kv.rpc.h"
#include "rpc/rpc.h"

#define DEFAULT_TARGET "127.0.0.1:7100"
#define CALL_TIMEOUT_MS 5000
#define BEARER "Bearer "

static int usage(FILE *to, int code) {
  fprintf(to,
          "usage: kv_client [options] get KEY | put KEY VALUE | del KEY\n"
          "  -a TARGET          \"host:port\" or \"unix:/path\", several comma-separated\n"
          "                     (default " DEFAULT_TARGET ")\n"
          "  --token-file PATH  send \"authorization: Bearer <token in PATH>\" (default: none)\n"
          "  -h, --help         this help\n"
          "Each call has a deadline of %d ms. Exits 0 when the call ends OK.\n",
          CALL_TIMEOUT_MS);
  return code;
}

/* Make the call op names with args; prints the outcome. Returns the status or a negative errno. */
static int run(rpc_channel *ch, const char *op, int argc, char **argv) {
  rpc_call_options o = {.timeout_ms = CALL_TIMEOUT_MS};
  char msg[RPC_MAX_ERROR_MESSAGE + 1] = "";
  int st;
  if (strcmp(op, "get") == 0 && argc == 1) {
    Kv__V1__GetRequest req = KV__V1__GET_REQUEST__INIT;
    Kv__V1__GetReply *r;
    req.key = argv[0];
    if ((st = kv__v1__key_value__get_call(ch, &req, &r, &o, msg, sizeof msg)) == RPC_STATUS_OK) {
      printf("%.*s\n", (int)r->value.len, (const char *)r->value.data);
      kv__v1__get_reply__free_unpacked(r, NULL);
    }
  } else if (strcmp(op, "put") == 0 && argc == 2) {
    Kv__V1__PutRequest req = KV__V1__PUT_REQUEST__INIT;
    Kv__V1__PutReply *r;
    req.key = argv[0];
    req.value.data = (uint8_t *)argv[1];
    req.value.len = strlen(argv[1]);
    if ((st = kv__v1__key_value__put_call(ch, &req, &r, &o, msg, sizeof msg)) == RPC_STATUS_OK) {
      printf("OK (%s)\n", r->created ? "created" : "replaced");
      kv__v1__put_reply__free_unpacked(r, NULL);
    }
  } else {
    Kv__V1__DeleteRequest req = KV__V1__DELETE_REQUEST__INIT;
    Kv__V1__DeleteReply *r;
    req.key = argv[0];
    if ((st = kv__v1__key_value__delete_call(ch, &req, &r, &o, msg, sizeof msg)) == RPC_STATUS_OK) {
      printf("OK\n");
      kv__v1__delete_reply__free_unpacked(r, NULL);
    }
  }
  if (st > 0) printf("%s: %s\n", rpc_status_name(st), msg);
  else if (st < 0) fprintf(stderr, "kv_client: call: %s\n", strerror(-st));
  return st;
}

int main(int argc, char **argv) {
  static const struct option longs[] = {{"token-file", required_argument, NULL, 'k'},
                                        {"help", no_argument, NULL, 'h'},
                                        {NULL, 0, NULL, 0}};
  const char *target = DEFAULT_TARGET, *token_file = NULL;
  int opt;
  while ((opt = getopt_long(argc, argv, "a:h", longs, NULL)) != -1) {
    if (opt == 'a') target = optarg;
    else if (opt == 'k') token_file = optarg;
    else if (opt == 'h') return usage(stdout, 0);
    else return usage(stderr, 2);
  }
  argc -= optind;
  argv += optind;
  int nargs = argc - 1;
  if (argc < 2 || !((strcmp(argv[0], "get") == 0 && nargs == 1) ||
                    (strcmp(argv[0], "put") == 0 && nargs == 2) ||
                    (strcmp(argv[0], "del") == 0 && nargs == 1)))
    return usage(stderr, 2);

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
  int st = run(ch, argv[0], nargs, argv + 1);
  rpc_channel_destroy(ch);
  return st == RPC_STATUS_OK ? 0 : 1;
}
