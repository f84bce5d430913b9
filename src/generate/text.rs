//! Generated tokens to released text: token pieces decoded as UTF-8 arrives whole, stop strings
//! applied (the text of a stop string, and all after it, never released). One-shot output, the
//! chat and the batch engine all release text this way, so they give the same text.

use crate::chat::reasoning::{Part, Splitter};
use crate::tokenizer::{StreamDecoder, Tokenizer};

use super::stop::StopStrings;

pub struct TextStream {
    decoder: StreamDecoder,
    stops: StopStrings,
    /// Everything released so far.
    text: String,
    /// Reasoning apart from the answer (stop strings apply to the answer only).
    split: Option<Splitter>,
    /// All the reasoning so far, and where the part not yet taken begins.
    reasoning: String,
    reasoning_taken: usize,
}

impl TextStream {
    /// `special`: control tokens are shown as their text.
    pub fn new(special: bool, stops: Vec<String>) -> Self {
        TextStream {
            decoder: StreamDecoder::new(special),
            stops: StopStrings::new(stops),
            text: String::new(),
            split: None,
            reasoning: String::new(),
            reasoning_taken: 0,
        }
    }

    /// Keep the model's reasoning out of the text (see [`Splitter`]).
    pub fn with_reasoning(mut self, split: Option<Splitter>) -> Self {
        self.split = split;
        self
    }

    /// A generated token: returns the text released by it (maybe none yet).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        let piece = self.decoder.push(tok, id);
        self.release(piece, false)
    }

    /// The answer's part of `piece` through the stop strings; the reasoning kept apart.
    fn release(&mut self, piece: String, at_end: bool) -> String {
        let answer = match self.split.as_mut() {
            None => piece,
            Some(split) => {
                let mut parts = split.push(&piece);
                if at_end {
                    parts.extend(split.finish());
                }
                let mut answer = String::new();
                for p in parts {
                    match p {
                        Part::Answer(t) => answer.push_str(&t),
                        Part::Reasoning(t) if self.stops.hit().is_none() => {
                            self.reasoning.push_str(&t)
                        }
                        Part::Reasoning(_) => {}
                    }
                }
                answer
            }
        };
        let shown = self.stops.push(&answer);
        self.text.push_str(&shown);
        shown
    }

    /// The reasoning produced since the last call.
    pub fn take_reasoning(&mut self) -> &str {
        let from = self.reasoning_taken;
        self.reasoning_taken = self.reasoning.len();
        &self.reasoning[from..]
    }

    /// All the reasoning so far.
    pub fn reasoning(&self) -> &str {
        &self.reasoning
    }

    /// The stop string that ended the text, if one did.
    pub fn stop_hit(&self) -> Option<&str> {
        self.stops.hit()
    }

    /// Release what is held back (an incomplete character, a possible start of a stop
    /// string); returns that tail.
    pub fn finish(&mut self) -> String {
        let flushed = self.decoder.flush();
        let mut tail = self.release(flushed, true);
        if self.stops.hit().is_none() {
            let rest = self.stops.flush();
            self.text.push_str(&rest);
            tail.push_str(&rest);
        }
        tail
    }

    /// The text released so far (all of it after [`finish`](Self::finish)).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }
}
