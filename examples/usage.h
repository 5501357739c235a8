/* -h/--help and bad-flag usage for the example and benchmark programs: each describes its flags
 * once, in an ex_usage. Not part of the library; no dependency. */
#ifndef GAIO_EXAMPLES_USAGE_H
#define GAIO_EXAMPLES_USAGE_H

#include <getopt.h>

/* A program describes its flags once, in an ex_usage, for -h/--help (on stdout, exit 0) and for
 * a bad or unknown flag (on stderr, exit 2). */
typedef struct ex_usage {
  const char *synopsis;     /* what follows the program name: "[-p port] [-a address]" */
  const char *const *flags; /* one line per flag, saying its default; NULL-terminated */
} ex_usage;

/* Usage lines of the flags several programs share. */
#define EX_USAGE_PORT "-p PORT           TCP port, 0..65535 (default 0: any free port, printed)"
#define EX_USAGE_ADDRESS "-a ADDRESS        numeric IPv4 or IPv6 address (default 127.0.0.1)"
#define EX_USAGE_BACKEND \
  "-b BACKEND        uring or epoll (default: gaio's choice; GAIO_BACKEND overrides it)"

/* getopt_long()'s long options for programs with short flags only: --help, as 'h'. */
extern const struct option ex_help_option[];

/* Print "usage: <prog> <synopsis>" (prog: the basename of argv[0]) and the flag lines, on
 * stdout when code is 0, else on stderr, and exit(code). */
_Noreturn void ex_usage_exit(const ex_usage *u, int code);

/* For programs that parse argv themselves: if an argument is "-h" or "--help", print the usage
 * on stdout and exit 0. Call first in main(). */
void ex_help_if_asked(int argc, char **argv, const ex_usage *u);

#endif /* GAIO_EXAMPLES_USAGE_H */
