// Bulk llama_tokenize for parity checks (Ember's `parity_from_env` test): loads a GGUF's
// vocabulary once, then reads records "<add_special> <parse_special> <n_bytes>\n<bytes>\n"
// from stdin and prints each record's token ids on one line, space-separated. With
// `--detok`, each record gets a second line: llama_detokenize of those ids in hex, for
// (remove_special, unparse_special) = (0,0) (0,1) (1,0) (1,1). With `--pieces`, it prints
// instead llama_token_to_piece of every token in hex, special = 0 then 1, one token a line.
//
//   gcc -O2 -o tokenize-many tokenize-many.c -I$LLAMA/include -I$LLAMA/ggml/include
//     -L$LLAMA/build/bin -lllama -Wl,-rpath,$LLAMA/build/bin
//   (LLAMA = a llama.cpp tree built with build-llama-cpp.sh, e.g. ~/.cache/llama-cpp-peer/src)
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void hex(const char *p, int n) {
    if (n == 0) printf("-");
    for (int i = 0; i < n; i++) printf("%02x", (unsigned char)p[i]);
}
static void quiet(enum ggml_log_level l, const char *t, void *u) { (void)l; (void)t; (void)u; }
int main(int argc, char **argv) {
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *m = llama_model_load_from_file(argv[1], mp);
    if (!m) { fprintf(stderr, "load failed\n"); return 1; }
    const struct llama_vocab *v = llama_model_get_vocab(m);
    int detok = argc > 2 && !strcmp(argv[2], "--detok");
    if (argc > 2 && !strcmp(argv[2], "--pieces")) {
        char piece[4096];
        for (int id = 0; id < llama_vocab_n_tokens(v); id++) {
            for (int sp = 0; sp < 2; sp++) {
                int k = llama_token_to_piece(v, id, piece, sizeof piece, 0, sp);
                hex(piece, k < 0 ? 0 : k);
                printf(sp ? "\n" : " ");
            }
        }
        return 0;
    }
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
            if (detok) {
                int tcap = n * 4 + 64;
                char *text = malloc(tcap);
                for (int c = 0; c < 4; c++) {
                    int t = llama_detokenize(v, ids, k, text, tcap, c >> 1, c & 1);
                    if (c) printf(" ");
                    hex(text, t < 0 ? 0 : t);
                }
                printf("\n");
                free(text);
            }
        }
        free(ids); free(buf);
    }
    return 0;
}
