/* The reflection service (rpc/reflection.proto): the hosted services' names and the .proto
 * descriptors given with rpc_server_add_proto_file(). Symbols are found by walking the
 * serialized FileDescriptorProto bytes in place: nothing is unpacked or allocated per lookup. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "rpc/reflection.pb-c.h"
#include "rpc/rpc.h"
#include "rpc/server_internal.h"

/* Nested messages followed when looking a symbol up (protobuf's own recursion limit). */
#define MAX_NESTING 100

/* Field numbers of descriptor.proto (google/protobuf/descriptor.proto). */
enum {
  FILE_NAME = 1, FILE_PACKAGE = 2, FILE_MESSAGE = 4, FILE_ENUM = 5, FILE_SERVICE = 6,
  MESSAGE_NAME = 1, MESSAGE_NESTED = 3, MESSAGE_ENUM = 4,
  SERVICE_NAME = 1, SERVICE_METHOD = 2,
  NAME = 1 /* EnumDescriptorProto.name, MethodDescriptorProto.name */
};

struct rpc__reflection {
  Gaio__Reflection__V1__Reflection_Service base; /* first: the handlers get a pointer to it */
  rpc_server *srv;
  int enabled;
  const rpc_proto_file *files[RPC_MAX_PROTO_FILES]; /* each file after the files it imports */
  size_t nfiles;
};

/* ---- Reading protobuf wire format in place ----------------------------------------------- */

typedef struct reader {
  const uint8_t *p, *end;
} reader;

static int read_varint(reader *r, uint64_t *v) {
  *v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (r->p == r->end) return -EPROTO;
    uint8_t b = *r->p++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 0;
  }
  return -EPROTO;
}

/* The next field: returns 1 (its number in *field; a length-delimited field's bytes in
 * data/len, other wire types give data NULL), 0 at the end, or -EPROTO. */
static int next_field(reader *r, uint32_t *field, const uint8_t **data, size_t *len) {
  if (r->p == r->end) return 0;
  uint64_t key, v;
  if (read_varint(r, &key) < 0 || (key >> 3) == 0 || (key >> 3) > UINT32_MAX) return -EPROTO;
  *field = (uint32_t)(key >> 3);
  *data = NULL;
  *len = 0;
  size_t skip;
  switch (key & 7) {
  case 0: return read_varint(r, &v) < 0 ? -EPROTO : 1;
  case 1: skip = 8; break;
  case 5: skip = 4; break;
  case 2:
    if (read_varint(r, &v) < 0 || v > (uint64_t)(r->end - r->p)) return -EPROTO;
    *data = r->p;
    *len = (size_t)v;
    skip = (size_t)v;
    break;
  default: return -EPROTO; /* groups (3, 4) do not occur in descriptors */
  }
  if (skip > (size_t)(r->end - r->p)) return -EPROTO;
  r->p += skip;
  return 1;
}

/* The string field `want` of a message (the first one): 1 with it in name/len, else 0. */
static int string_field(const uint8_t *msg, size_t msg_len, uint32_t want, const uint8_t **name,
                        size_t *len) {
  reader r = {msg, msg + msg_len};
  uint32_t f;
  const uint8_t *d;
  size_t n;
  while (next_field(&r, &f, &d, &n) == 1)
    if (f == want && d) {
      *name = d;
      *len = n;
      return 1;
    }
  return 0;
}

/* If sym[0..len) is `name` exactly, 2; if it is "name." followed by more, 1 (the rest in *rest
 * and *rest_len); else 0. */
static int name_prefix(const char *sym, size_t len, const uint8_t *name, size_t nlen,
                       const char **rest, size_t *rest_len) {
  if (len < nlen || memcmp(sym, name, nlen) != 0) return 0;
  if (len == nlen) return 2;
  if (sym[nlen] != '.' || len == nlen + 1) return 0;
  *rest = sym + nlen + 1;
  *rest_len = len - nlen - 1;
  return 1;
}

/* 1 if some element of the repeated field `field` of msg has NAME equal to sym[0..len). */
static int has_named(const uint8_t *msg, size_t msg_len, uint32_t field, const char *sym,
                     size_t len) {
  reader r = {msg, msg + msg_len};
  uint32_t f;
  const uint8_t *d, *name;
  size_t n, nlen;
  while (next_field(&r, &f, &d, &n) == 1)
    if (f == field && d && string_field(d, n, NAME, &name, &nlen) && nlen == len &&
        memcmp(name, sym, len) == 0)
      return 1;
  return 0;
}

/* 1 if the DescriptorProto msg defines sym (relative to its parent scope). */
static int message_has(const uint8_t *msg, size_t msg_len, const char *sym, size_t len,
                       int depth) {
  const uint8_t *name;
  size_t nlen;
  const char *rest;
  size_t rest_len;
  if (depth > MAX_NESTING || !string_field(msg, msg_len, MESSAGE_NAME, &name, &nlen)) return 0;
  int m = name_prefix(sym, len, name, nlen, &rest, &rest_len);
  if (m != 1) return m == 2;
  if (has_named(msg, msg_len, MESSAGE_ENUM, rest, rest_len)) return 1;
  reader r = {msg, msg + msg_len};
  uint32_t f;
  const uint8_t *d;
  size_t n;
  while (next_field(&r, &f, &d, &n) == 1)
    if (f == MESSAGE_NESTED && d && message_has(d, n, rest, rest_len, depth + 1)) return 1;
  return 0;
}

/* 1 if the ServiceDescriptorProto svc is sym, or sym is one of its methods. */
static int service_has(const uint8_t *svc, size_t svc_len, const char *sym, size_t len) {
  const uint8_t *name;
  size_t nlen;
  const char *rest;
  size_t rest_len;
  if (!string_field(svc, svc_len, SERVICE_NAME, &name, &nlen)) return 0;
  int m = name_prefix(sym, len, name, nlen, &rest, &rest_len);
  if (m != 1) return m == 2;
  return has_named(svc, svc_len, SERVICE_METHOD, rest, rest_len);
}

/* 1 if the file defines the fully qualified symbol: a message, enum, service or method. */
static int file_has(const rpc_proto_file *file, const char *sym) {
  const uint8_t *pkg;
  size_t plen, len = strlen(sym);
  const char *rest = sym;
  size_t rest_len = len;
  if (string_field(file->descriptor, file->descriptor_len, FILE_PACKAGE, &pkg, &plen) && plen &&
      name_prefix(sym, len, pkg, plen, &rest, &rest_len) != 1)
    return 0;
  reader r = {file->descriptor, file->descriptor + file->descriptor_len};
  uint32_t f;
  const uint8_t *d, *name;
  size_t n, nlen;
  while (next_field(&r, &f, &d, &n) == 1) {
    if (!d) continue;
    if (f == FILE_MESSAGE && message_has(d, n, rest, rest_len, 0)) return 1;
    if (f == FILE_SERVICE && service_has(d, n, rest, rest_len)) return 1;
    if (f == FILE_ENUM && string_field(d, n, NAME, &name, &nlen) && nlen == rest_len &&
        memcmp(name, rest, nlen) == 0)
      return 1;
  }
  return 0;
}

/* 0 if the whole descriptor reads as protobuf wire format and names the file f->name. */
static int check_descriptor(const rpc_proto_file *f) {
  reader r = {f->descriptor, f->descriptor + f->descriptor_len};
  uint32_t field;
  const uint8_t *d;
  size_t n;
  int rc;
  while ((rc = next_field(&r, &field, &d, &n)) == 1) {
  }
  if (rc < 0) return -EINVAL;
  const uint8_t *name;
  if (!string_field(f->descriptor, f->descriptor_len, FILE_NAME, &name, &n) ||
      n != strlen(f->name) || memcmp(name, f->name, n) != 0)
    return -EINVAL;
  return 0;
}

/* ---- The set of files -------------------------------------------------------------------- */

static struct rpc__reflection *state(rpc_server *s) {
  if (!s->reflection) s->reflection = gaio__calloc(1, sizeof *s->reflection);
  return s->reflection;
}

static long find_file(const struct rpc__reflection *r, const char *name) {
  for (size_t i = 0; i < r->nfiles; i++)
    if (strcmp(r->files[i]->name, name) == 0) return (long)i;
  return -1;
}

/* Add f after its imports. depth bounds the recursion (an import cycle in broken input). */
static int add_file(struct rpc__reflection *r, const rpc_proto_file *f, unsigned depth) {
  if (!f->name || (!f->descriptor && f->descriptor_len)) return -EINVAL;
  long at = find_file(r, f->name);
  if (at >= 0) {
    const rpc_proto_file *g = r->files[at];
    return g == f || (g->descriptor_len == f->descriptor_len &&
                      memcmp(g->descriptor, f->descriptor, f->descriptor_len) == 0)
               ? 0
               : -EEXIST;
  }
  if (depth >= RPC_MAX_PROTO_FILES) return -ELOOP;
  int rc = check_descriptor(f);
  for (size_t i = 0; rc == 0 && f->deps && f->deps[i]; i++) rc = add_file(r, f->deps[i], depth + 1);
  if (rc < 0) return rc;
  if (r->nfiles == RPC_MAX_PROTO_FILES) return -ENOSPC;
  r->files[r->nfiles++] = f;
  return 0;
}

int rpc_server_add_proto_file(rpc_server *s, const rpc_proto_file *f) {
  if (!s || !f) return -EINVAL;
  if (s->started) return -EBUSY;
  struct rpc__reflection *r = state(s);
  if (!r) return -ENOMEM;
  size_t had = r->nfiles;
  int rc = add_file(r, f, 0);
  if (rc < 0) r->nfiles = had; /* all or nothing */
  return rc;
}

/* ---- The service ------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_services(Gaio__Reflection__V1__Reflection_Service *svc,
                          const Gaio__Reflection__V1__ListServicesRequest *in,
                          Gaio__Reflection__V1__ListServicesResponse_Closure closure, void *data) {
  rpc_server *s = ((struct rpc__reflection *)svc)->srv;
  char **names = gaio__malloc((s->nservices ? s->nservices : 1) * sizeof *names);
  if (!names) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  for (size_t i = 0; i < s->nservices; i++) names[i] = (char *)s->services[i]->descriptor->name;
  qsort(names, s->nservices, sizeof *names, cmp_str);
  Gaio__Reflection__V1__ListServicesResponse out =
      GAIO__REFLECTION__V1__LIST_SERVICES_RESPONSE__INIT;
  out.n_services = s->nservices;
  out.services = names;
  closure(&out, data);
  free(names);
}

/* Mark file i and every file it imports, directly or not. Imports come before their importers
 * in r->files, so each mark goes to a smaller index and the recursion ends. */
static void mark(const struct rpc__reflection *r, size_t i, unsigned char *marks) {
  if (marks[i]) return;
  marks[i] = 1;
  const rpc_proto_file *f = r->files[i];
  for (size_t d = 0; f->deps && f->deps[d]; d++) {
    long at = find_file(r, f->deps[d]->name);
    if (at >= 0) mark(r, (size_t)at, marks);
  }
}

static void reply_files(const struct rpc__reflection *r, size_t file, void *data,
                        Gaio__Reflection__V1__FileResponse_Closure closure) {
  unsigned char marks[RPC_MAX_PROTO_FILES] = {0};
  mark(r, file, marks);
  ProtobufCBinaryData *out_files = gaio__malloc(RPC_MAX_PROTO_FILES * sizeof *out_files);
  if (!out_files) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  Gaio__Reflection__V1__FileResponse out = GAIO__REFLECTION__V1__FILE_RESPONSE__INIT;
  out.file_descriptor_proto = out_files;
  for (size_t i = 0; i < r->nfiles; i++)
    if (marks[i])
      out_files[out.n_file_descriptor_proto++] =
          (ProtobufCBinaryData){r->files[i]->descriptor_len, (uint8_t *)r->files[i]->descriptor};
  closure(&out, data);
  free(out_files);
}

static void file_containing(Gaio__Reflection__V1__Reflection_Service *svc,
                            const Gaio__Reflection__V1__FileRequest *in,
                            Gaio__Reflection__V1__FileResponse_Closure closure, void *data) {
  const struct rpc__reflection *r = (const struct rpc__reflection *)svc;
  char why[RPC_MAX_ERROR_MESSAGE];
  long at = -1;
  if (in->what_case == GAIO__REFLECTION__V1__FILE_REQUEST__WHAT_FILENAME) {
    at = find_file(r, in->filename);
    snprintf(why, sizeof why, "unknown file: %s", in->filename);
  } else if (in->what_case == GAIO__REFLECTION__V1__FILE_REQUEST__WHAT_SYMBOL) {
    for (size_t i = 0; at < 0 && i < r->nfiles; i++)
      if (file_has(r->files[i], in->symbol)) at = (long)i;
    snprintf(why, sizeof why, "unknown symbol: %s", in->symbol);
  } else {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_INVALID_ARGUMENT, "no symbol or filename");
    return;
  }
  if (at < 0) rpc_call_fail(rpc_server_call(data), RPC_STATUS_NOT_FOUND, why);
  else reply_files(r, (size_t)at, data, closure);
}

int rpc_server_enable_reflection(rpc_server *s) {
  if (!s) return -EINVAL;
  if (s->started) return -EBUSY;
  struct rpc__reflection *r = state(s);
  if (!r) return -ENOMEM;
  if (r->enabled) return -EEXIST;
  gaio__reflection__v1__reflection__init(&r->base, NULL);
  r->base.list_services = list_services;
  r->base.file_containing_symbol = file_containing;
  r->srv = s;
  int rc = rpc_server_add_service(s, &r->base.base);
  if (rc == 0) r->enabled = 1;
  return rc;
}

void rpc__reflection_free(rpc_server *s) {
  free(s->reflection);
  s->reflection = NULL;
}
