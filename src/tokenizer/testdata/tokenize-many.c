// Bulk llama_tokenize for parity checks (Ember's `parity_from_env` test): loads a GGUF's
// vocabulary once, then reads records "<add_special> <parse_special> <n_bytes>\n<bytes>\n"
// from stdin and prints each record's token ids on one line, space-separated.
//
//   gcc -O2 -o tokenize-many tokenize-many.c -I$LLAMA/include -I$LLAMA/ggml/include \
//       -L$LLAMA/build/bin -lllama -Wl,-rpath,$LLAMA/build/bin
//   (LLAMA = a llama.cpp tree built with build-llama-cpp.sh, e.g. ~/.cache/llama-cpp-peer/src)
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void quiet(enum ggml_log_level l, const char *t, void *u) { (void)l; (void)t; (void)u; }
int main(int argc, char **argv) {
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *m = llama_model_load_from_file(argv[1], mp);
    if (!m) { fprintf(stderr, "load failed\n"); return 1; }
    const struct llama_vocab *v = llama_model_get_vocab(m);
    int add, parse; long n;
    while (scanf("%d %d %ld", &add, &parse, &n) == 3) {
        getchar();
        char *buf = malloc(n + 1);
        if (fread(buf, 1, n, stdin) != (size_t)n) return 2;
        getchar();
        int cap = n * 2 + 16;
        llama_token *ids = malloc(sizeof(llama_token) * cap);
        int k = llama_tokenize(v, buf, n, ids, cap, add, parse);
        if (k < 0) { printf("ERR\n"); } else {
            for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
        }
        free(ids); free(buf);
    }
    return 0;
}
