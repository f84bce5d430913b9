//! SIGINT and SIGTERM during one-shot generation. The first signal asks the decode loop to stop
//! between tokens, so what was generated stays on stdout; the run then exits with 128 + the
//! signal number (130 for Ctrl-C, 143 for SIGTERM), as shells expect. A second signal while
//! stopping (e.g. during a long prompt evaluation) terminates at once with the default action.
//!
//! SIGPIPE needs nothing here: Rust ignores it, so a closed stdout is a `BrokenPipe` write error
//! that `app::main` turns into a quiet exit 0.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// The number of the signal received, 0 while none.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// Set by the first signal; arms the default action for the next one.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// The chat's SIGINT: set while waiting at the prompt, where it ends the process.
static AT_PROMPT: AtomicBool = AtomicBool::new(false);

/// The run was stopped by a signal; `app::main` exits with 128 + `signal` and prints nothing
/// more (the run has already said why it stopped).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {}", name(*.signal))]
pub struct Interrupted {
    pub signal: i32,
}

impl Interrupted {
    /// SIGINT: Ctrl-C, or `kill -INT`.
    pub fn is_ctrl_c(&self) -> bool {
        self.signal == SIGINT
    }

    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

/// The signal's name, e.g. `SIGINT`.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Catch SIGINT and SIGTERM from now on. If the handlers cannot be installed the signals keep
/// their default action (the process ends at once), which is logged and otherwise harmless.
pub fn install() {
    for sig in [SIGINT, SIGTERM] {
        // Registration order is run order: the default action only once a signal was seen.
        let r = flag::register_conditional_default(sig, &STOPPING)
            .and_then(|_| flag::register_usize(sig, &RECEIVED, sig as usize))
            .and_then(|_| flag::register(sig, &STOPPING));
        if let Err(e) = r {
            log::debug!("cannot catch {}: {e}", name(sig));
        }
    }
}

/// The signal received since [`install`], if any.
pub fn received() -> Option<Interrupted> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(Interrupted { signal: s as i32 }),
    }
}

/// The chat's handlers: SIGTERM as for one-shot runs, but SIGINT only ever stops the current
/// answer (any number of times: a conversation is never lost to Ctrl-C), except while
/// [`at_prompt`] says the REPL waits for input, where it ends the process.
pub fn install_chat() {
    let r = flag::register_conditional_default(SIGTERM, &STOPPING)
        .and_then(|_| flag::register_usize(SIGTERM, &RECEIVED, SIGTERM as usize))
        .and_then(|_| flag::register(SIGTERM, &STOPPING))
        .and_then(|_| flag::register_conditional_default(SIGINT, &AT_PROMPT))
        .and_then(|_| flag::register_usize(SIGINT, &RECEIVED, SIGINT as usize));
    if let Err(e) = r {
        log::debug!("cannot catch signals: {e}");
    }
}

/// Forget a SIGINT (the chat: Ctrl-C stopped one answer, the conversation goes on). A
/// SIGTERM stays recorded.
pub fn reset_interrupt() {
    let _ = RECEIVED.compare_exchange(SIGINT as usize, 0, Ordering::SeqCst, Ordering::SeqCst);
}

/// True once a signal asked to stop: the session's check between micro-batches.
pub fn interrupted() -> bool {
    RECEIVED.load(Ordering::SeqCst) != 0
}

/// The chat waits at its prompt (`true`) or works on an answer (`false`).
pub fn at_prompt(on: bool) {
    AT_PROMPT.store(on, Ordering::SeqCst);
}
