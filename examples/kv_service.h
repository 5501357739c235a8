/* The in-memory key-value service of examples/kv.proto (kv.v1.KeyValue). Used by kv_server and
 * rpc_demo. */
#ifndef GAIO_EXAMPLES_KV_SERVICE_H
#define GAIO_EXAMPLES_KV_SERVICE_H

#include <stddef.h>

#include "rpc/rpc.h"

#define KV_MAX_KEY 256u            /* bytes per key; longer: INVALID_ARGUMENT */
#define KV_MAX_VALUE (64u * 1024u) /* bytes per value; longer: INVALID_ARGUMENT */
#define KV_MAX_KEYS 1000000u       /* keys held; a Put of a new key beyond: RESOURCE_EXHAUSTED */

typedef struct kv_service kv_service;

/* Create the service with an empty store. Returns NULL on -ENOMEM. Free with kv_service_free()
 * after the server hosting it is destroyed. */
kv_service *kv_service_create(void);
void kv_service_free(kv_service *kv);

/* The ProtobufCService to pass to rpc_server_add_service(). Its handlers are thread-safe (one
 * lock per store), so any number of workers may run them. */
ProtobufCService *kv_service_base(kv_service *kv);

/* Keys currently stored. Any thread. */
size_t kv_service_size(kv_service *kv);

#endif /* GAIO_EXAMPLES_KV_SERVICE_H */
