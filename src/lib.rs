//! Ember: a GGUF language-model runner on ggml.
//!
//! Data flow: prompt → tokenizer → batch → model graph (ggml) → logits → sampler → token, with
//! `app` orchestrating the user-facing modes. `ggml` is the only module with `unsafe` code.
#![deny(unsafe_code)]

pub mod app;
pub mod chat;
pub mod cli;
pub mod constrain;
#[doc(hidden)]
pub mod fuzz_steps;
pub mod generate;
pub mod ggml;
pub mod gguf;
pub mod hash;
pub mod kv;
pub mod logging;
pub mod model;
pub mod perplexity;
pub mod sampling;
pub mod speculative;
pub mod switches;
#[cfg(test)]
mod test_data;
pub mod tokenizer;
