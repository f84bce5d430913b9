//! Ember: a GGUF language-model runner on ggml.
#![deny(unsafe_code)]

pub mod generate;
pub mod ggml;
pub mod gguf;
pub mod kv;
pub mod model;
pub mod perplexity;
pub mod sampling;
