//! Generation: evaluation sessions, the decode loop, stop conditions and timings.

pub mod session;

pub use session::{EvalError, Session, SessionParams, Want};
