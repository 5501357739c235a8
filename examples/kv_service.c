/* kv.v1.KeyValue over a chained hash table guarded by one mutex. Handlers are synchronous and
 * reply with messages on their stack; Get copies the value out under the lock. */
#include "examples/kv_service.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "examples/kv.pb-c.h"

#define KV_BUCKETS 4096u /* fixed: an example, not a database */

struct entry {
  struct entry *next;
  char *key;
  size_t len;
  uint8_t *value;
};

struct kv_service {
  Kv__V1__KeyValue_Service base; /* first: handlers get a pointer to it */
  pthread_mutex_t mu;
  size_t n;
  struct entry *b[KV_BUCKETS];
};

static size_t bucket(const char *key) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 16777619u;
  return h % KV_BUCKETS;
}

static struct entry **find(kv_service *kv, const char *key) {
  struct entry **e = &kv->b[bucket(key)];
  while (*e && strcmp((*e)->key, key) != 0) e = &(*e)->next;
  return e;
}

/* Returns 0 when the key is acceptable, else fails the call and returns -1. */
static int check_key(const char *key, void *data) {
  size_t len = key ? strlen(key) : 0;
  if (len == 0 || len > KV_MAX_KEY) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_INVALID_ARGUMENT,
                  len == 0 ? "empty key" : "key longer than 256 bytes");
    return -1;
  }
  return 0;
}

static void kv_get(Kv__V1__KeyValue_Service *svc, const Kv__V1__GetRequest *in,
                   Kv__V1__GetReply_Closure closure, void *data) {
  kv_service *kv = (kv_service *)svc;
  if (check_key(in->key, data) < 0) return;
  uint8_t copy[KV_MAX_VALUE];
  size_t len = 0;
  pthread_mutex_lock(&kv->mu);
  struct entry *e = *find(kv, in->key);
  if (e) {
    len = e->len;
    memcpy(copy, e->value, len);
  }
  pthread_mutex_unlock(&kv->mu);
  if (!e) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_NOT_FOUND, "no such key");
    return;
  }
  Kv__V1__GetReply out = KV__V1__GET_REPLY__INIT;
  out.value.data = copy;
  out.value.len = len;
  closure(&out, data);
}

static void kv_put(Kv__V1__KeyValue_Service *svc, const Kv__V1__PutRequest *in,
                   Kv__V1__PutReply_Closure closure, void *data) {
  kv_service *kv = (kv_service *)svc;
  if (check_key(in->key, data) < 0) return;
  if (in->value.len > KV_MAX_VALUE) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_INVALID_ARGUMENT, "value larger than 64 KiB");
    return;
  }
  uint8_t *v = malloc(in->value.len ? in->value.len : 1);
  if (!v) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  if (in->value.len) memcpy(v, in->value.data, in->value.len);
  int created = 0, full = 0;
  pthread_mutex_lock(&kv->mu);
  struct entry **slot = find(kv, in->key);
  if (*slot) {
    free((*slot)->value);
    (*slot)->value = v;
    (*slot)->len = in->value.len;
  } else if (kv->n >= KV_MAX_KEYS) {
    full = 1;
  } else {
    struct entry *e = malloc(sizeof *e);
    char *k = strdup(in->key);
    if (e && k) {
      e->next = NULL;
      e->key = k;
      e->value = v;
      e->len = in->value.len;
      *slot = e;
      kv->n++;
      created = 1;
    } else {
      free(e);
      free(k);
      full = 1;
    }
  }
  pthread_mutex_unlock(&kv->mu);
  if (full) {
    free(v);
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_RESOURCE_EXHAUSTED, "store is full");
    return;
  }
  Kv__V1__PutReply out = KV__V1__PUT_REPLY__INIT;
  out.created = created;
  closure(&out, data);
}

static void kv_delete(Kv__V1__KeyValue_Service *svc, const Kv__V1__DeleteRequest *in,
                      Kv__V1__DeleteReply_Closure closure, void *data) {
  kv_service *kv = (kv_service *)svc;
  if (check_key(in->key, data) < 0) return;
  pthread_mutex_lock(&kv->mu);
  struct entry **slot = find(kv, in->key);
  struct entry *e = *slot;
  if (e) {
    *slot = e->next;
    kv->n--;
  }
  pthread_mutex_unlock(&kv->mu);
  if (!e) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_NOT_FOUND, "no such key");
    return;
  }
  free(e->key);
  free(e->value);
  free(e);
  Kv__V1__DeleteReply out = KV__V1__DELETE_REPLY__INIT;
  closure(&out, data);
}

kv_service *kv_service_create(void) {
  kv_service *kv = calloc(1, sizeof *kv);
  if (!kv) return NULL;
  kv__v1__key_value__init(&kv->base, NULL);
  kv->base.get = kv_get;
  kv->base.put = kv_put;
  kv->base.delete = kv_delete;
  pthread_mutex_init(&kv->mu, NULL);
  return kv;
}

void kv_service_free(kv_service *kv) {
  if (!kv) return;
  for (size_t i = 0; i < KV_BUCKETS; i++) {
    struct entry *e = kv->b[i];
    while (e) {
      struct entry *next = e->next;
      free(e->key);
      free(e->value);
      free(e);
      e = next;
    }
  }
  pthread_mutex_destroy(&kv->mu);
  free(kv);
}

ProtobufCService *kv_service_base(kv_service *kv) { return &kv->base.base; }

size_t kv_service_size(kv_service *kv) {
  pthread_mutex_lock(&kv->mu);
  size_t n = kv->n;
  pthread_mutex_unlock(&kv->mu);
  return n;
}
