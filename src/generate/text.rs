//! Generated tokens to released text: token pieces decoded as UTF-8 arrives whole, stop strings
//! applied (the text of a stop string, and all after it, never released). One-shot output, the
//! chat and the batch engine all release text this way, so they give the same text.

use crate::tokenizer::{StreamDecoder, Tokenizer};

use super::stop::StopStrings;

pub struct TextStream {
    decoder: StreamDecoder,
    stops: StopStrings,
    /// Everything released so far.
    text: String,
}

impl TextStream {
    /// `special`: control tokens are shown as their text.
    pub fn new(special: bool, stops: Vec<String>) -> Self {
        TextStream {
            decoder: StreamDecoder::new(special),
            stops: StopStrings::new(stops),
            text: String::new(),
        }
    }

    /// A generated token: returns the text released by it (maybe none yet).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        let piece = self.decoder.push(tok, id);
        let shown = self.stops.push(&piece);
        self.text.push_str(&shown);
        shown
    }

    /// The stop string that ended the text, if one did.
    pub fn stop_hit(&self) -> Option<&str> {
        self.stops.hit()
    }

    /// Release what is held back (an incomplete character, a possible start of a stop
    /// string); returns that tail.
    pub fn finish(&mut self) -> String {
        let mut tail = self.stops.push(&self.decoder.flush());
        if self.stops.hit().is_none() {
            tail.push_str(&self.stops.flush());
        }
        self.text.push_str(&tail);
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
