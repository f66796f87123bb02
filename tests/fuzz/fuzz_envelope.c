/*
 * fuzz_envelope — libFuzzer target for the envelope scanner. Every input is
 * judged by jansson and by the scanner through the shared oracle (see
 * envelope_oracle.h); any disagreement aborts, so the fuzzer keeps it as a
 * crash. libFuzzer hands us a buffer of exactly the input's size, so the
 * sanitizers also catch any read past `len`.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "envelope_oracle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = sb_envelope_oracle((const char *)data, size);
    if (why) {
        fprintf(stderr, "envelope disagrees with jansson: %s\n", why);
        abort();
    }
    return 0;
}
