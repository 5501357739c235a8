/* The libFuzzer entry point of a fuzz target in this package. clang's -fsanitize=fuzzer brings
 * the driver (tools/fuzz.sh); corpus_main.c is a plain driver that replays the seed corpus. */
#ifndef GAIO_TESTS_FUZZ_FUZZ_TARGET_H
#define GAIO_TESTS_FUZZ_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>

/* Runs one input; aborts when an invariant fails. Returns 0 (libFuzzer's convention). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* GAIO_TESTS_FUZZ_FUZZ_TARGET_H */
