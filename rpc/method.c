/* Methods: ids (FNV-1a of "package.Service/Method", rpc/WIRE.md section 5) and the public
 * rpc_method_* helpers; status message copies. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "rpc/rpc.h"

/* ---- Methods (public) -------------------------------------------------------------------- */

void rpc_method_init(rpc_method *m, const char *full_name, const ProtobufCMessageDescriptor *input,
                     const ProtobufCMessageDescriptor *output) {
  m->id = rpc_method_id(full_name, strlen(full_name));
  m->input = input;
  m->output = output;
}

/* The method id of method i of svc: FNV-1a over "package.Service/Method", built in place so
 * that no allocation is needed. */
static uint32_t method_id_of(const ProtobufCServiceDescriptor *svc, unsigned i) {
  char buf[512];
  size_t a = strlen(svc->name), b = strlen(svc->methods[i].name);
  if (a + 1 + b > sizeof buf) {
    char *p = gaio__malloc(a + 1 + b);
    if (!p) return 0;
    memcpy(p, svc->name, a);
    p[a] = '/';
    memcpy(p + a + 1, svc->methods[i].name, b);
    uint32_t id = rpc_method_id(p, a + 1 + b);
    free(p);
    return id;
  }
  memcpy(buf, svc->name, a);
  buf[a] = '/';
  memcpy(buf + a + 1, svc->methods[i].name, b);
  return rpc_method_id(buf, a + 1 + b);
}

int rpc_method_at(rpc_method *m, const ProtobufCServiceDescriptor *svc, unsigned index) {
  if (!m || !svc || index >= svc->n_methods || !svc->name || !svc->methods[index].name)
    return -EINVAL;
  m->id = method_id_of(svc, index);
  m->input = svc->methods[index].input;
  m->output = svc->methods[index].output;
  return 0;
}

int rpc_method_find(rpc_method *m, const ProtobufCServiceDescriptor *svc, const char *name) {
  if (!m || !svc || !name) return -EINVAL;
  for (unsigned i = 0; i < svc->n_methods; i++)
    if (svc->methods[i].name && strcmp(svc->methods[i].name, name) == 0)
      return rpc_method_at(m, svc, i);
  return -ENOENT;
}

uint32_t rpc__method_id_of(const ProtobufCServiceDescriptor *svc, unsigned i) {
  return method_id_of(svc, i);
}

/* ---- Status messages ------------------------------------------------------------------- */

char *rpc__msgdup(const char *s, size_t len) {
  if (!s) len = 0;
  if (len > RPC_MAX_ERROR_MESSAGE) len = RPC_MAX_ERROR_MESSAGE;
  char *m = gaio__malloc(len + 1);
  if (!m) return NULL;
  if (len) memcpy(m, s, len);
  m[len] = 0;
  return m;
}
