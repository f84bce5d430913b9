//! Ember: a GGUF language-model runner on ggml.
#![deny(unsafe_code)]

pub mod ggml;
pub mod gguf;
