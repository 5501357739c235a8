/* See usage.h. */
#include "examples/usage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct option ex_help_option[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

void ex_usage_exit(const ex_usage *u, int code) {
  FILE *out = code == 0 ? stdout : stderr;
  fprintf(out, "usage: %s %s\n", program_invocation_short_name, u->synopsis);
  for (const char *const *f = u->flags; f && *f; f++) fprintf(out, "  %s\n", *f);
  fprintf(out, "  -h, --help        this text\n");
  exit(code);
}

void ex_help_if_asked(int argc, char **argv, const ex_usage *u) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) ex_usage_exit(u, 0);
}
