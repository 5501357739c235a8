/* Replays a fuzz corpus through LLVMFuzzerTestOneInput without libFuzzer, so that a plain
 * `bazel test` (gcc, any config) runs every seed, and a reproducer can be replayed without
 * clang. Each input, and each of its prefixes, is copied into a buffer of exactly its size, so
 * ASan (--config=asan) sees any over-read.
 * Arguments: [--whole] files or directories; none = the runfiles copy of
 * tests/fuzz/corpus/FUZZ_CORPUS. --whole runs each input once, without its prefixes; FUZZ_WHOLE
 * 1 makes it the default (for targets whose every run costs a connection). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz_target.h"

/* The target's corpus under tests/fuzz/corpus/, and whether prefixes are skipped: set by the
 * BUILD file (local_defines). */
#ifndef FUZZ_CORPUS
#define FUZZ_CORPUS frame
#endif
#ifndef FUZZ_WHOLE
#define FUZZ_WHOLE 0
#endif
#define CORPUS_STR2(x) #x
#define CORPUS_STR(x) CORPUS_STR2(x)

enum { CORPUS_MAX_INPUT = 1 << 20, CORPUS_MAX_PATH = 4096 };

static int g_whole = FUZZ_WHOLE; /* no prefixes */

/* Runs the input and every prefix of it. Returns 0, or -1 when the file cannot be read. */
static int run_file(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) return -1;
  uint8_t *data = malloc(CORPUS_MAX_INPUT);
  size_t n = data ? fread(data, 1, CORPUS_MAX_INPUT, fp) : 0;
  int bad = data == NULL || ferror(fp) || !feof(fp);
  fclose(fp);
  for (size_t len = g_whole ? n : 0; !bad && len <= n; len++) {
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) {
      bad = 1;
      break;
    }
    memcpy(copy, data, len);
    LLVMFuzzerTestOneInput(copy, len);
    free(copy);
  }
  free(data);
  return bad ? -1 : 0;
}

/* Runs every regular file of dir in name order. Returns the count, or -1 on an error. */
static int run_dir(const char *dir) {
  struct dirent **names;
  int n = scandir(dir, &names, NULL, alphasort), count = 0;
  if (n < 0) return -1;
  for (int i = 0; i < n; i++) {
    char path[CORPUS_MAX_PATH];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      if (run_file(path) < 0) {
        fprintf(stderr, "corpus: cannot read %s\n", path);
        count = -1;
      } else if (count >= 0) {
        count++;
      }
    }
    free(names[i]);
  }
  free(names);
  return count;
}

static int run_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  if (S_ISDIR(st.st_mode)) return run_dir(path);
  return run_file(path) < 0 ? -1 : 1;
}

int main(int argc, char **argv) {
  char dflt[CORPUS_MAX_PATH];
  const char *const *paths = (const char *const *)argv + 1;
  const char *one[1] = {dflt};
  int npaths = argc - 1, total = 0;

  if (npaths > 0 && strcmp(paths[0], "--whole") == 0) {
    g_whole = 1;
    paths++;
    npaths--;
  }
  if (npaths == 0) {
    const char *srcdir = getenv("TEST_SRCDIR"), *ws = getenv("TEST_WORKSPACE");
    if (srcdir == NULL) {
      fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE... (or run it with bazel test)\n", argv[0]);
      return 2;
    }
    snprintf(dflt, sizeof dflt, "%s/%s/tests/fuzz/corpus/" CORPUS_STR(FUZZ_CORPUS), srcdir,
             ws ? ws : "gaio_c");
    paths = one;
    npaths = 1;
  }
  for (int i = 0; i < npaths; i++) {
    int n = run_path(paths[i]);
    if (n < 0) {
      fprintf(stderr, "corpus: cannot read %s\n", paths[i]);
      return 1;
    }
    total += n;
  }
  /* An empty corpus would pass silently: refuse it. */
  if (total == 0) {
    fprintf(stderr, "corpus: no input found\n");
    return 1;
  }
  printf("corpus: %d inputs%s ran without a finding\n", total,
         g_whole ? "" : " and all their prefixes");
  return 0;
}
