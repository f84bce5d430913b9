//! Ember's integration tests: one binary (ggml is linked once), one module per area. Most run
//! the real `ember` binary (`CARGO_BIN_EXE_ember`) on tiny random-weight models written by our
//! GGUF writer (`common`); the ones on real data need `models/fetch-default` (SmolLM2) and
//! `scripts/fetch-vocab-tests` (llama.cpp's tokenizer vectors), which `.ci/run` runs first, and
//! fail naming that command when the data is missing. Run one area with
//! `cargo test --test it AREA::` (e.g. `cargo test --test it malformed::`).

mod common;

mod batch_cli;
mod batch_engine;
mod bench_cli;
mod chat;
mod chat_templates;
mod cli;
mod forward;
mod fuzz_regressions;
mod gpu_cli;
mod integrity;
mod kv_types;
mod malformed;
mod model_errors;
mod reasoning;
mod rpc;
mod runtime;
mod scripting;
mod serve;
mod speculative;
mod structured;
mod tokenize_cli;
