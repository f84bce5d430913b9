//! Reasoning apart from the answer. Models that think before they answer write their thoughts
//! in a syntax their chat template names:
//! - tags: `<think>…</think>` (Qwen3, DeepSeek R1, SmolLM3) or `[THINK]…[/THINK]` (Magistral,
//!   Ministral reasoning), at the start of the answer (or opened by the prompt itself);
//! - harmony (gpt-oss): messages `<|channel|>NAME<|message|>…`, each ended by `<|end|>` (a
//!   control token, unseen without `--special`) and the next one begun by `<|start|>`; the
//!   answer is the `final` channel, `analysis` and `commentary` are reasoning.
//!
//! [`Splitter`] takes the generated text as it streams and hands back answer and reasoning
//! parts, holding back only what could still be the start of a marker.

/// How a model marks its reasoning, read from its chat template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Tags {
        open: &'static str,
        close: &'static str,
    },
    Harmony,
}

const THINK: Syntax = Syntax::Tags {
    open: "<think>",
    close: "</think>",
};
const BRACKET_THINK: Syntax = Syntax::Tags {
    open: "[THINK]",
    close: "[/THINK]",
};

const START: &str = "<|start|>";
const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
const END: &str = "<|end|>";
const HARMONY_MARKERS: [&str; 4] = [START, CHANNEL, MESSAGE, END];

impl Syntax {
    /// The syntax a chat template's answers use, if it has one.
    pub fn detect(template_source: &str) -> Option<Syntax> {
        if template_source.contains(CHANNEL) && template_source.contains(MESSAGE) {
            Some(Syntax::Harmony)
        } else if template_source.contains("<think>") {
            Some(THINK)
        } else if template_source.contains("[THINK]") {
            Some(BRACKET_THINK)
        } else {
            None
        }
    }

    fn markers(&self) -> Vec<&'static str> {
        match self {
            Syntax::Tags { open, close } => vec![open, close],
            Syntax::Harmony => HARMONY_MARKERS.to_vec(),
        }
    }
}

/// A piece of the generated text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Answer(String),
    Reasoning(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Tags: before the first visible text; an opening tag here starts the reasoning.
    Start,
    /// Tags: inside the reasoning.
    Thinking,
    /// Tags: just after the closing tag (the whitespace that follows it is dropped).
    AfterThinking,
    /// Harmony: a message's header (role, channel, recipient), up to `<|message|>`.
    Header,
    /// Harmony: a message's text; `true` in the `final` channel.
    Body(bool),
    /// Everything is answer (no reasoning syntax, or a harmony answer without a header).
    Answer,
}

#[derive(Clone, Debug)]
pub struct Splitter {
    syntax: Syntax,
    markers: Vec<&'static str>,
    state: State,
    /// Text not yet handed out: it may end with the start of a marker.
    pending: String,
    /// Harmony: the current header's text.
    header: String,
    /// Harmony: a marker was seen (before one, text is an answer without channels).
    seen_marker: bool,
}

impl Splitter {
    /// `prompt` is the rendered prompt the answer continues: a template that opens the
    /// reasoning itself (a prompt ending in `<think>`) starts the answer inside it.
    pub fn new(syntax: Syntax, prompt: &str) -> Splitter {
        let state = match syntax {
            Syntax::Tags { open, .. } if prompt.trim_end().ends_with(open) => State::Thinking,
            Syntax::Tags { .. } => State::Start,
            Syntax::Harmony => State::Header,
        };
        Splitter {
            syntax,
            markers: syntax.markers(),
            state,
            pending: String::new(),
            header: String::new(),
            seen_marker: false,
        }
    }

    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// The next generated text; returns what can be handed out now.
    pub fn push(&mut self, text: &str) -> Vec<Part> {
        self.pending.push_str(text);
        let mut parts = Vec::new();
        self.run(false, &mut parts);
        parts
    }

    /// The end of the answer: hand out whatever was held back.
    pub fn finish(&mut self) -> Vec<Part> {
        let mut parts = Vec::new();
        self.run(true, &mut parts);
        parts
    }

    fn run(&mut self, at_end: bool, parts: &mut Vec<Part>) {
        loop {
            if self.state == State::Start {
                if !self.start(at_end, parts) {
                    return;
                }
                continue;
            }
            if self.state == State::AfterThinking {
                let t = self.pending.trim_start().len();
                self.pending.drain(..self.pending.len() - t);
                if self.pending.is_empty() && !at_end {
                    return;
                }
                self.state = State::Answer;
            }
            if self.state == State::Answer && self.syntax != Syntax::Harmony {
                // after the reasoning, tags are answer text like any other
                let all = std::mem::take(&mut self.pending);
                self.emit(all, parts);
                return;
            }
            match self.find_marker() {
                Some((at, marker)) => {
                    let before: String = self.pending.drain(..at).collect();
                    self.pending.drain(..marker.len());
                    self.emit(before, parts);
                    self.on_marker(marker);
                }
                None => {
                    let keep = if at_end { 0 } else { self.held_back() };
                    let out: String = self.pending.drain(..self.pending.len() - keep).collect();
                    self.emit(out, parts);
                    return;
                }
            }
        }
    }

    /// Tags, before any visible text: decide whether the answer opens with its reasoning.
    /// Returns false while that cannot be told yet.
    fn start(&mut self, at_end: bool, parts: &mut Vec<Part>) -> bool {
        let Syntax::Tags { open, .. } = self.syntax else {
            unreachable!("only tags start in State::Start")
        };
        let text = self.pending.trim_start();
        if let Some(rest) = text.strip_prefix(open) {
            self.pending = rest.to_string();
            self.state = State::Thinking;
            return true;
        }
        if !at_end && (text.is_empty() || open.starts_with(text)) {
            return false;
        }
        self.state = State::Answer;
        let all = std::mem::take(&mut self.pending);
        self.emit(all, parts);
        false
    }

    /// The earliest marker in the pending text that means something in this state.
    fn find_marker(&self) -> Option<(usize, &'static str)> {
        self.markers
            .iter()
            .filter(|m| self.wanted(m))
            .filter_map(|m| self.pending.find(*m).map(|at| (at, *m)))
            .min_by_key(|(at, _)| *at)
    }

    fn wanted(&self, marker: &str) -> bool {
        match (self.syntax, self.state) {
            (Syntax::Tags { close, .. }, State::Thinking) => marker == close,
            (Syntax::Tags { .. }, _) => false,
            (Syntax::Harmony, State::Header) => true,
            (Syntax::Harmony, State::Body(_)) => marker == START || marker == END,
            (Syntax::Harmony, _) => false,
        }
    }

    fn on_marker(&mut self, marker: &'static str) {
        self.seen_marker = true;
        match (self.syntax, self.state) {
            (Syntax::Tags { .. }, State::Thinking) => self.state = State::AfterThinking,
            (Syntax::Harmony, State::Header) => match marker {
                MESSAGE => {
                    let channel = channel_of(&self.header);
                    self.state = State::Body(channel == "final");
                    self.header.clear();
                }
                CHANNEL => self.header.push_str(CHANNEL),
                _ => self.header.clear(), // a new header begins
            },
            (Syntax::Harmony, State::Body(_)) => {
                self.header.clear();
                self.state = State::Header;
            }
            _ => {}
        }
    }

    /// Where the text goes in the current state.
    fn emit(&mut self, text: String, parts: &mut Vec<Part>) {
        if text.is_empty() {
            return;
        }
        match self.state {
            State::Thinking | State::Body(false) => push(parts, Part::Reasoning(text)),
            State::Body(true) | State::Answer | State::AfterThinking | State::Start => {
                push(parts, Part::Answer(text))
            }
            State::Header => {
                // A harmony answer that does not open with a channel is plain answer text.
                if !self.seen_marker && !text.trim_start().is_empty() {
                    self.state = State::Answer;
                    self.markers.clear();
                    push(parts, Part::Answer(text));
                    return;
                }
                self.header.push_str(&text);
            }
        }
    }

    /// How many bytes at the end of the pending text could begin a marker.
    fn held_back(&self) -> usize {
        let p = &self.pending;
        let mut keep = 0;
        for m in self.markers.iter().filter(|m| self.wanted(m)) {
            for n in (1..m.len().min(p.len() + 1)).rev() {
                if p.is_char_boundary(p.len() - n) && m.starts_with(&p[p.len() - n..]) {
                    keep = keep.max(n);
                    break;
                }
            }
        }
        keep
    }
}

fn push(parts: &mut Vec<Part>, part: Part) {
    match (parts.last_mut(), part) {
        (Some(Part::Answer(a)), Part::Answer(b)) => a.push_str(&b),
        (Some(Part::Reasoning(a)), Part::Reasoning(b)) => a.push_str(&b),
        (_, p) => parts.push(p),
    }
}

/// The channel a harmony header names: `<|channel|>analysis`, `<|channel|>commentary
/// to=functions.get_weather <|constrain|>json`.
fn channel_of(header: &str) -> &str {
    header
        .rsplit_once(CHANNEL)
        .map_or("", |(_, rest)| rest)
        .split(|c: char| c.is_whitespace() || c == '<')
        .next()
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `pieces` one by one; returns (answer, reasoning).
    fn split(syntax: Syntax, prompt: &str, pieces: &[&str]) -> (String, String) {
        let mut s = Splitter::new(syntax, prompt);
        let mut parts = Vec::new();
        for p in pieces {
            parts.extend(s.push(p));
        }
        parts.extend(s.finish());
        let (mut a, mut r) = (String::new(), String::new());
        for p in parts {
            match p {
                Part::Answer(t) => a.push_str(&t),
                Part::Reasoning(t) => r.push_str(&t),
            }
        }
        (a, r)
    }

    #[test]
    fn syntax_from_the_template() {
        assert_eq!(Syntax::detect("{{ '<think>\\n' }}"), Some(THINK));
        assert_eq!(
            Syntax::detect("[THINK]{{ t }}[/THINK]"),
            Some(BRACKET_THINK)
        );
        assert_eq!(
            Syntax::detect("<|start|>assistant<|channel|>final<|message|>"),
            Some(Syntax::Harmony)
        );
        assert_eq!(Syntax::detect("<|im_start|>assistant\n"), None);
    }

    #[test]
    fn think_tags_at_the_start_are_reasoning() {
        let pieces = [
            "<think>", "\nLet me", " add.\n", "</", "think>", "\n\n", "It is ", "4.",
        ];
        assert_eq!(
            split(THINK, "<|im_start|>assistant\n", &pieces),
            ("It is 4.".into(), "\nLet me add.\n".into())
        );
        // thinking switched off: an empty block, then the answer
        let pieces = ["<think>\n\n</think>\n\n", "4."];
        assert_eq!(split(THINK, "", &pieces), ("4.".into(), "\n\n".into()));
        // no block: all answer, tags later on are text
        assert_eq!(
            split(THINK, "", &["4, ", "not <think>"]),
            ("4, not <think>".into(), String::new())
        );
        // a prompt that opens the block itself
        assert_eq!(
            split(THINK, "<|Assistant|><think>\n", &["hmm", "</think>", "4."]),
            ("4.".into(), "hmm".into())
        );
        // an unclosed block is all reasoning
        assert_eq!(
            split(THINK, "", &["<think>a", " <"]),
            (String::new(), "a <".into())
        );
        assert_eq!(
            split(BRACKET_THINK, "", &["[THINK]x[/THINK]", "y"]),
            ("y".into(), "x".into())
        );
    }

    #[test]
    fn harmony_channels() {
        // <|end|> is a control token: unseen without --special
        let pieces = [
            "<|channel|>",
            "analysis",
            "<|message|>",
            "User asks 2+2.",
            "<|start|>",
            "assistant",
            "<|channel|>",
            "final",
            "<|message|>",
            "It is ",
            "4.",
        ];
        assert_eq!(
            split(Syntax::Harmony, "<|start|>assistant", &pieces),
            ("It is 4.".into(), "User asks 2+2.".into())
        );
        let with_end = "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>done";
        assert_eq!(
            split(Syntax::Harmony, "", &[with_end]),
            ("done".into(), "think".into())
        );
        // a tool call's header, and text one byte at a time
        let call = "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\":1}<|start|>assistant<|channel|>final<|message|>ok";
        let bytes: Vec<String> = call.chars().map(String::from).collect();
        let pieces: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(
            split(Syntax::Harmony, "", &pieces),
            ("ok".into(), "{\"a\":1}".into())
        );
        // a model that answers without a channel
        assert_eq!(
            split(Syntax::Harmony, "", &["Hello", " there"]),
            ("Hello there".into(), String::new())
        );
    }
}
