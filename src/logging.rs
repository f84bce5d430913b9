//! A minimal stderr logger for the `log` crate. Ember's own warnings always show; info and
//! ggml's messages only with `-v`, debug with `-vv`.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        let limit = if m.target() == "ggml" && self.level < LevelFilter::Info {
            LevelFilter::Error
        } else {
            self.level
        };
        m.level() <= limit && (m.target() != "ggml" || self.level >= LevelFilter::Info)
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let tag = match r.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            _ => "",
        };
        let prefix = if r.target() == "ggml" { "ggml: " } else { "" };
        let _ = writeln!(std::io::stderr().lock(), "{prefix}{tag}{}", r.args());
    }

    fn flush(&self) {}
}

/// Install the logger (once). `verbosity`: 0 = warnings, 1 = info, 2+ = debug.
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    };
    if log::set_boxed_logger(Box::new(StderrLogger { level })).is_ok() {
        log::set_max_level(level);
    }
    crate::ggml::install_log_callback();
}
