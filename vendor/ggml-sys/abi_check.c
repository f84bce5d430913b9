// Build-time checks that the hand-written Rust declarations in src/lib.rs match ggml's headers.
// Any mismatch is a compile error, not silent memory corruption.
#include <stddef.h>
#include "ggml.h"
#include "ggml-backend.h"
#include "ggml-rpc.h"

#define CHECK(cond) _Static_assert(cond, #cond)

CHECK(GGML_MAX_DIMS == 4);
CHECK(GGML_MAX_SRC == 10);
CHECK(GGML_MAX_OP_PARAMS == 64);
CHECK(GGML_MAX_NAME == 64);

CHECK(GGML_TYPE_F32 == 0);
CHECK(GGML_TYPE_F16 == 1);
CHECK(GGML_TYPE_Q4_0 == 2);
CHECK(GGML_TYPE_Q4_1 == 3);
CHECK(GGML_TYPE_Q5_0 == 6);
CHECK(GGML_TYPE_Q5_1 == 7);
CHECK(GGML_TYPE_Q8_0 == 8);
CHECK(GGML_TYPE_IQ4_NL == 20);
CHECK(GGML_TYPE_I8 == 24);
CHECK(GGML_TYPE_I32 == 26);
CHECK(GGML_TYPE_I64 == 27);
CHECK(GGML_TYPE_BF16 == 30);
CHECK(GGML_TYPE_COUNT == 43);
CHECK(sizeof(enum ggml_type) == sizeof(int));

CHECK(GGML_PREC_F32 == 10);
CHECK(GGML_STATUS_SUCCESS == 0);
CHECK(GGML_LOG_LEVEL_NONE == 0 && GGML_LOG_LEVEL_DEBUG == 1 && GGML_LOG_LEVEL_INFO == 2);
CHECK(GGML_LOG_LEVEL_WARN == 3 && GGML_LOG_LEVEL_ERROR == 4 && GGML_LOG_LEVEL_CONT == 5);
CHECK(GGML_BACKEND_BUFFER_USAGE_WEIGHTS == 1);
CHECK(GGML_BACKEND_DEVICE_TYPE_CPU == 0 && GGML_BACKEND_DEVICE_TYPE_GPU == 1);
CHECK(GGML_BACKEND_DEVICE_TYPE_IGPU == 2 && GGML_BACKEND_DEVICE_TYPE_ACCEL == 3);
CHECK(sizeof(enum ggml_backend_dev_type) == sizeof(int));
CHECK(GGML_ROPE_TYPE_NEOX == 2);
CHECK(GGML_ROPE_TYPE_IMROPE == 40);
CHECK(GGML_MROPE_SECTIONS == 4);

CHECK(sizeof(struct ggml_init_params) == 24);
CHECK(offsetof(struct ggml_init_params, mem_size) == 0);
CHECK(offsetof(struct ggml_init_params, mem_buffer) == 8);
CHECK(offsetof(struct ggml_init_params, no_alloc) == 16);

// struct ggml_tensor, field by field, as declared in src/lib.rs (64-bit targets).
CHECK(offsetof(struct ggml_tensor, type) == 0);
CHECK(offsetof(struct ggml_tensor, buffer) == 8);
CHECK(offsetof(struct ggml_tensor, ne) == 16);
CHECK(offsetof(struct ggml_tensor, nb) == 48);
CHECK(offsetof(struct ggml_tensor, op) == 80);
CHECK(offsetof(struct ggml_tensor, op_params) == 84);
CHECK(offsetof(struct ggml_tensor, flags) == 148);
CHECK(offsetof(struct ggml_tensor, src) == 152);
CHECK(offsetof(struct ggml_tensor, view_src) == 232);
CHECK(offsetof(struct ggml_tensor, view_offs) == 240);
CHECK(offsetof(struct ggml_tensor, data) == 248);
CHECK(offsetof(struct ggml_tensor, name) == 256);
CHECK(offsetof(struct ggml_tensor, extra) == 320);
CHECK(offsetof(struct ggml_tensor, padding) == 328);
CHECK(sizeof(struct ggml_tensor) == 336);
CHECK(GGML_N_TASKS_MAX == -1);
CHECK(GGML_TYPE_Q4_K == 12);
CHECK(GGML_TYPE_Q6_K == 14);

// ggml-rpc: the protocol version Ember speaks (the HELLO handshake checks it).
CHECK(RPC_PROTO_MAJOR_VERSION == 7 && RPC_PROTO_MINOR_VERSION == 0 && RPC_PROTO_PATCH_VERSION == 0);
CHECK(GGML_RPC_MAX_SERVERS == 16);
CHECK(GGML_OP_MAP_CUSTOM1 == 92 && GGML_OP_MAP_CUSTOM2 == 93 && GGML_OP_MAP_CUSTOM3 == 94);
CHECK(GGML_OP_CUSTOM == 95 && GGML_OP_COUNT == 101);
