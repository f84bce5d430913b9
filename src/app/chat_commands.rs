//! The chat REPL's slash commands: parsing and help. Running them is `chat`'s business.

use std::path::PathBuf;

#[derive(Debug, PartialEq)]
pub enum Command {
    Help,
    Set(Setting),
    Show(Show),
    Clear,
    Save(PathBuf),
    Load(PathBuf),
    Bye,
}

#[derive(Debug, PartialEq)]
pub enum Setting {
    Temp(f32),
    TopK(i32),
    TopP(f32),
    MinP(f32),
    RepeatPenalty(f32),
    Seed(u64),
    NPredict(i64),
    /// An empty text removes the system message.
    System(String),
    /// The answers' output constraint: `json`, a schema/grammar file, or `off`.
    Format(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Show {
    Info,
    Template,
    Stats,
    Params,
    System,
}

pub const HELP: &str = "\
Commands:
  /set temp|top-k|top-p|min-p|repeat-penalty|seed|n-predict VALUE
  /set system TEXT     set the system prompt (/set system with no text removes it)
  /set format json|FILE|off
                       answers as one JSON object, or under a JSON schema (.json) or
                       grammar (.gbnf, .lark) file; off lifts it
  /show info           model, context and cache
  /show template       the chat template in use
  /show stats          the last turn: tokens re-used, evaluated and generated, speeds
  /show params         sampling settings
  /show system         the system prompt
  /clear               forget the conversation (the system prompt stays)
  /save FILE           save the conversation and its KV cache
  /load FILE           restore a conversation saved with /save
  /bye                 exit (also Ctrl-D, or Ctrl-C twice)
  /help, /?            this help

Start a message with \"\"\" to write several lines; end it with \"\"\".
Ctrl-C stops an answer; what was written so far stays in the conversation.";

/// Parse a line starting with `/`. Errors are messages for the user.
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (cmd, rest) = split_word(line);
    match cmd {
        "/help" | "/?" | "/h" => Ok(Command::Help),
        "/bye" | "/exit" | "/quit" | "/q" => Ok(Command::Bye),
        "/clear" | "/reset" => Ok(Command::Clear),
        "/save" => path(rest, "/save").map(Command::Save),
        "/load" => path(rest, "/load").map(Command::Load),
        "/show" => match rest {
            "info" => Ok(Command::Show(Show::Info)),
            "template" => Ok(Command::Show(Show::Template)),
            "stats" => Ok(Command::Show(Show::Stats)),
            "params" | "parameters" => Ok(Command::Show(Show::Params)),
            "system" => Ok(Command::Show(Show::System)),
            _ => Err("usage: /show info|template|stats|params|system".into()),
        },
        "/set" => parse_set(rest).map(Command::Set),
        _ => Err(format!("unknown command {cmd} (/? lists them)")),
    }
}

fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((a, b)) => (a, b.trim()),
        None => (s, ""),
    }
}

fn path(rest: &str, cmd: &str) -> Result<PathBuf, String> {
    if rest.is_empty() {
        Err(format!("usage: {cmd} FILE"))
    } else {
        Ok(PathBuf::from(rest))
    }
}

fn parse_set(rest: &str) -> Result<Setting, String> {
    let (name, value) = split_word(rest);
    fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("/set {name}: '{v}' is not a valid value"))
    }
    match name {
        "system" => Ok(Setting::System(value.to_string())),
        "format" if value.is_empty() => Err("usage: /set format json|FILE|off".into()),
        "format" => Ok(Setting::Format(value.to_string())),
        "temp" | "temperature" => num(name, value).map(Setting::Temp),
        "top-k" | "top_k" => num(name, value).map(Setting::TopK),
        "top-p" | "top_p" => num(name, value).map(Setting::TopP),
        "min-p" | "min_p" => num(name, value).map(Setting::MinP),
        "repeat-penalty" | "repeat_penalty" => num(name, value).map(Setting::RepeatPenalty),
        "seed" => num(name, value).map(Setting::Seed),
        "n-predict" | "n_predict" | "num_predict" => num(name, value).map(Setting::NPredict),
        "" => Err(
            "usage: /set temp|top-k|top-p|min-p|repeat-penalty|seed|n-predict|system|format VALUE"
                .into(),
        ),
        _ => Err(format!("/set: unknown setting '{name}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("/bye"), Ok(Command::Bye));
        assert_eq!(parse("  /? "), Ok(Command::Help));
        assert_eq!(parse("/set temp 0.2"), Ok(Command::Set(Setting::Temp(0.2))));
        assert_eq!(parse("/set top-k 5"), Ok(Command::Set(Setting::TopK(5))));
        assert_eq!(
            parse("/set format json"),
            Ok(Command::Set(Setting::Format("json".into())))
        );
        assert!(parse("/set format").is_err());
        assert_eq!(
            parse("/set system You are terse.  "),
            Ok(Command::Set(Setting::System("You are terse.".into())))
        );
        assert_eq!(
            parse("/set system"),
            Ok(Command::Set(Setting::System(String::new())))
        );
        assert_eq!(parse("/show stats"), Ok(Command::Show(Show::Stats)));
        assert_eq!(
            parse("/save /tmp/a b.chat"),
            Ok(Command::Save("/tmp/a b.chat".into()))
        );
        assert!(parse("/set temp hot")
            .unwrap_err()
            .contains("not a valid value"));
        assert!(parse("/load").unwrap_err().contains("usage"));
        assert!(parse("/frobnicate")
            .unwrap_err()
            .contains("unknown command"));
    }
}
