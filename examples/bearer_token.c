/* See bearer_token.h. */
#include "examples/bearer_token.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static int b64token_ok(const char *s, size_t len) {
  size_t i = 0;
  for (; i < len; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          strchr("-._~+/", c) != NULL))
      break;
  }
  if (i == 0) return 0;
  while (i < len && s[i] == '=') i++;
  return i == len;
}

int ex_token_read(ex_token *t, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  /* One byte more than a token and its "\r\n" tells a long file from a full one. */
  char buf[EX_TOKEN_MAX + 3];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, sizeof buf - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = -errno;
      close(fd);
      return err;
    }
    if (n == 0 || (len += (size_t)n) == sizeof buf) break;
  }
  close(fd);
  if (len == sizeof buf) return -E2BIG;
  if (len > 0 && buf[len - 1] == '\n') len--;
  if (len > 0 && buf[len - 1] == '\r') len--;
  if (len > EX_TOKEN_MAX) return -E2BIG;
  if (!b64token_ok(buf, len)) return -EINVAL;
  memcpy(t->text, buf, len);
  t->text[len] = '\0';
  t->len = len;
  return 0;
}

const char *ex_token_strerror(int error) {
  switch (error) {
    case -EINVAL: return "not one bearer token (one line of A-Z a-z 0-9 - . _ ~ + /, then any =)";
    case -E2BIG: return "token longer than 512 bytes";
    default: return strerror(-error);
  }
}

int ex_token_equal(const ex_token *t, const char *p, size_t len) {
  /* Every byte of the token is looked at whatever the differences; the accumulated difference
   * is only tested at the end. */
  unsigned diff = len != t->len;
  for (size_t i = 0; i < t->len; i++) diff |= (unsigned char)(t->text[i] ^ (i < len ? p[i] : 0));
  return diff == 0;
}

int ex_token_verify(void *arg, const char *token, size_t len, const rpc_call *call) {
  (void)call;
  return ex_token_equal(arg, token, len);
}
