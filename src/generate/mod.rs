//! Generation: evaluation sessions, the decode loop, stop conditions and timings.

pub mod batch;
pub mod decode;
pub mod session;
pub mod state;
pub mod stop;
pub mod text;

pub use decode::{generate, GenerateError, GenerateParams, StopReason, Timings};
pub use session::{EvalError, Session, SessionParams, Want};
