// Ember's own C helpers over ggml's backend interface (no ggml code here).
//
// ember_capped_device: a device that is `dev` in every way except the memory it reports, which
// is at most `cap` bytes. `ember rpc-server --mem` serves it, so clients split layers by the
// memory the user grants instead of all that is free. Backends it initialises point back to it
// (the RPC server asks a backend's device for its memory).
#include <stdlib.h>
#include "ggml-backend-impl.h"

#define EMBER_MAX_CAPPED 16

struct ember_capped {
    struct ggml_backend_device * proxy;
    ggml_backend_dev_t inner;
    size_t cap;
};

static struct ember_capped ember_capped_devs[EMBER_MAX_CAPPED];
static int ember_n_capped = 0;

static struct ember_capped * ember_find(ggml_backend_dev_t proxy) {
    for (int i = 0; i < ember_n_capped; i++) {
        if (ember_capped_devs[i].proxy == proxy) {
            return &ember_capped_devs[i];
        }
    }
    return NULL;
}

static void ember_capped_get_memory(ggml_backend_dev_t dev, size_t * free, size_t * total) {
    struct ember_capped * c = ember_find(dev);
    if (c == NULL) {
        *free = 0;
        *total = 0;
        return;
    }
    c->inner->iface.get_memory(c->inner, free, total);
    if (*total == 0 || *total > c->cap) {
        *total = c->cap;
    }
    if (*free == 0 || *free > c->cap) {
        *free = c->cap;
    }
}

static ggml_backend_t ember_capped_init_backend(ggml_backend_dev_t dev, const char * params) {
    struct ember_capped * c = ember_find(dev);
    if (c == NULL) {
        return NULL;
    }
    ggml_backend_t b = c->inner->iface.init_backend(c->inner, params);
    if (b != NULL) {
        b->device = dev;
    }
    return b;
}

// Not thread-safe: called once at start-up, before serving. Returns NULL when `dev` is NULL,
// the table is full or memory runs out.
ggml_backend_dev_t ember_capped_device(ggml_backend_dev_t dev, size_t cap) {
    if (dev == NULL || ember_n_capped == EMBER_MAX_CAPPED) {
        return NULL;
    }
    struct ggml_backend_device * proxy = malloc(sizeof(*proxy));
    if (proxy == NULL) {
        return NULL;
    }
    *proxy = *dev;
    proxy->iface.get_memory = ember_capped_get_memory;
    proxy->iface.init_backend = ember_capped_init_backend;
    ember_capped_devs[ember_n_capped].proxy = proxy;
    ember_capped_devs[ember_n_capped].inner = dev;
    ember_capped_devs[ember_n_capped].cap = cap;
    ember_n_capped++;
    return proxy;
}
