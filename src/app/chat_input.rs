//! Where the chat's lines come from: a line editor with history on a terminal, plain lines
//! (no prompts, no echo) when stdin is a pipe or a file.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

pub enum Read {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D, or the end of piped input.
    Eof,
}

pub enum Input {
    Editor {
        editor: Box<DefaultEditor>,
        history: Option<PathBuf>,
    },
    Lines(std::io::StdinLock<'static>),
}

/// `$EMBER_HISTORY`, else `$XDG_DATA_HOME/ember/history`, else `~/.local/share/ember/history`.
pub fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EMBER_HISTORY") {
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("ember").join("history"))
}

impl Input {
    pub fn open() -> Input {
        if std::io::stdin().is_terminal() {
            match DefaultEditor::new() {
                Ok(mut editor) => {
                    let history = history_path();
                    if let Some(h) = &history {
                        if let Some(dir) = h.parent() {
                            let _ = std::fs::create_dir_all(dir);
                        }
                        // A missing file is the normal first run.
                        let _ = editor.load_history(h);
                    }
                    return Input::Editor {
                        editor: Box::new(editor),
                        history,
                    };
                }
                Err(e) => log::warn!("line editing unavailable ({e}); reading plain lines"),
            }
        }
        Input::Lines(std::io::stdin().lock())
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Input::Editor { .. })
    }

    pub fn read(&mut self, prompt: &str) -> Read {
        match self {
            Input::Editor { editor, .. } => match editor.readline(prompt) {
                Ok(l) => Read::Line(l),
                Err(ReadlineError::Interrupted) => Read::Interrupted,
                Err(ReadlineError::Eof) => Read::Eof,
                Err(e) => {
                    log::warn!("reading input: {e}");
                    Read::Eof
                }
            },
            Input::Lines(stdin) => {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) => Read::Eof,
                    Ok(_) => {
                        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
                        Read::Line(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string())
                    }
                    Err(e) => {
                        log::warn!("reading input: {e}");
                        Read::Eof
                    }
                }
            }
        }
    }

    /// A message, possibly several lines: one starting with `"""` goes on until a line ending
    /// with `"""`. `None` at the end of input or on Ctrl-C inside it.
    pub fn read_message(&mut self, first: String) -> Option<String> {
        let Some(rest) = first.trim_start().strip_prefix("\"\"\"") else {
            return Some(first);
        };
        if let Some(body) = rest.strip_suffix("\"\"\"") {
            return Some(body.to_string());
        }
        let mut lines = vec![rest.to_string()];
        loop {
            match self.read("... ") {
                Read::Line(l) => match l.trim_end().strip_suffix("\"\"\"") {
                    Some(last) => {
                        lines.push(last.to_string());
                        break;
                    }
                    None => lines.push(l),
                },
                Read::Interrupted | Read::Eof => return None,
            }
        }
        if lines.first().is_some_and(|l| l.is_empty()) {
            lines.remove(0);
        }
        Some(lines.join("\n"))
    }

    pub fn add_history(&mut self, entry: &str) {
        if let Input::Editor { editor, history } = self {
            let _ = editor.add_history_entry(entry);
            if let Some(h) = history {
                if let Err(e) = editor.save_history(h) {
                    log::debug!("saving history to {}: {e}", h.display());
                }
            }
        }
    }
}
