//! Conversations: messages, their rendering through a chat template (or as raw text for
//! models without one), and the bookkeeping that lets each turn re-use the KV cache of the
//! conversation so far and evaluate only the new tokens.

pub mod reasoning;
pub mod template;
mod tojson;

use serde::{Deserialize, Serialize};

use crate::tokenizer::{StreamDecoder, Tokenizer};
pub use template::{ChatTemplate, Reasoning, TemplateError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// How a conversation becomes model input.
#[derive(Debug)]
pub enum Format {
    Template(Box<ChatTemplate>),
    /// No template: the messages' texts one after another (plain completion).
    Raw,
}

impl Format {
    /// How the answer to `prompt` (rendered in this format with the generation prompt) keeps
    /// its reasoning apart, when the template has a reasoning syntax.
    pub fn reasoning_splitter(&self, prompt: &str) -> Option<reasoning::Splitter> {
        match self {
            Format::Template(t) => reasoning::Syntax::detect(t.source())
                .map(|syntax| reasoning::Splitter::new(syntax, prompt)),
            Format::Raw => None,
        }
    }
}

/// A prompt ready for evaluation: its tokens and the text they encode.
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    pub tokens: Vec<u32>,
    pub text: String,
}

/// The messages, and what the session's KV cache holds of them.
#[derive(Debug)]
pub struct Conversation {
    pub format: Format,
    pub messages: Vec<Message>,
    /// Tokens in the cache, positions `0..len`, and the text they were made from.
    cached: Prompt,
}

impl Conversation {
    /// How the answer to `prompt` (this conversation rendered with the generation prompt)
    /// keeps its reasoning apart, when the template has a reasoning syntax.
    pub fn reasoning_splitter(&self, prompt: &str) -> Option<reasoning::Splitter> {
        self.format.reasoning_splitter(prompt)
    }

    pub fn new(format: Format, system: Option<&str>) -> Self {
        let mut c = Conversation {
            format,
            messages: Vec::new(),
            cached: Prompt::default(),
        };
        c.set_system(system);
        c
    }

    /// Replace (or remove, with `None`) the system message.
    pub fn set_system(&mut self, system: Option<&str>) {
        if self.messages.first().is_some_and(|m| m.role == "system") {
            self.messages.remove(0);
        }
        if let Some(s) = system.filter(|s| !s.is_empty()) {
            self.messages.insert(0, Message::new("system", s));
        }
    }

    pub fn system(&self) -> Option<&str> {
        self.messages
            .first()
            .filter(|m| m.role == "system")
            .map(|m| m.content.as_str())
    }

    /// Forget the messages (the system message stays); the cache keeps what it can re-use.
    pub fn clear(&mut self) {
        self.messages.retain(|m| m.role == "system");
    }

    /// Remove the oldest exchange after the system message (a user message and the answers up
    /// to the next user message). False when there is no earlier exchange to drop (only the
    /// current question, and the system message, are left).
    pub fn drop_oldest_turn(&mut self) -> bool {
        let first = usize::from(self.messages.first().is_some_and(|m| m.role == "system"));
        let Some(next_user) = self.messages[first..]
            .iter()
            .skip(1)
            .position(|m| m.role == "user")
            .map(|i| first + 1 + i)
        else {
            return false;
        };
        self.messages.drain(first..next_user);
        true
    }

    /// The conversation's text, ending where the assistant's answer begins.
    pub fn render(&self) -> Result<String, TemplateError> {
        match &self.format {
            Format::Template(t) => t.render(&self.messages, true),
            Format::Raw => Ok(self.messages.iter().map(|m| m.content.as_str()).collect()),
        }
    }

    /// The prompt for the next answer. When the rendered text extends the cached text, the
    /// cached tokens are kept as they are and only the rest is tokenized, so the tokens the
    /// model generated itself are re-used even where a fresh tokenization would differ.
    pub fn prompt(&self, tok: &Tokenizer) -> Result<Prompt, TemplateError> {
        let text = self.render()?;
        let tokens = match text.strip_prefix(self.cached.text.as_str()) {
            Some(rest) if !self.cached.text.is_empty() => {
                let mut t = self.cached.tokens.clone();
                t.extend(tok.encode(rest, false, true));
                t
            }
            _ => {
                let mut t = tok.encode(&text, true, true);
                // A template that writes the BOS text itself, for a model that adds BOS.
                if t.len() >= 2 && tok.bos() == Some(t[0]) && t[1] == t[0] {
                    t.remove(0);
                }
                t
            }
        };
        Ok(Prompt { tokens, text })
    }

    /// How many leading tokens of `tokens` the cache already holds; at least the last token
    /// is always left to evaluate (its logits are needed).
    pub fn reusable(&self, tokens: &[u32]) -> usize {
        let common = self
            .cached
            .tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        common.min(tokens.len().saturating_sub(1))
    }

    /// The cache now holds `prompt` followed by `generated` (tokens handed out, evaluated or
    /// not), cut to the `n_past` positions really evaluated. Tokens that end inside a
    /// character are left out (the text must be exactly theirs), as are control tokens' texts,
    /// as the answer shown to the user has none.
    pub fn set_cached(
        &mut self,
        tok: &Tokenizer,
        prompt: Prompt,
        generated: &[u32],
        n_past: usize,
    ) {
        let mut p = prompt;
        if n_past < p.tokens.len() {
            // Cannot happen after a successful turn; start over on the next one.
            self.cached = Prompt::default();
            return;
        }
        let evaluated = &generated[..(n_past - p.tokens.len()).min(generated.len())];
        let mut decoder = StreamDecoder::new(false);
        let (mut text, mut clean) = (String::new(), (0, 0));
        for (i, &id) in evaluated.iter().enumerate() {
            text.push_str(&decoder.push(tok, id));
            if decoder.is_clean() {
                clean = (i + 1, text.len());
            }
        }
        p.tokens.extend_from_slice(&evaluated[..clean.0]);
        p.text.push_str(&text[..clean.1]);
        self.cached = p;
    }

    /// The cache holds these tokens, whose text is not known (an interrupted prompt): the next
    /// prompt re-uses the tokens it shares with them.
    pub fn set_cached_tokens(&mut self, tokens: &[u32]) {
        self.cached = Prompt {
            tokens: tokens.to_vec(),
            text: String::new(),
        };
    }

    /// The cache is empty (e.g. after an error).
    pub fn reset_cache(&mut self) {
        self.cached = Prompt::default();
    }

    /// Restore what a saved state says the cache holds.
    pub fn restore_cache(&mut self, tokens: Vec<u32>, text: String) {
        self.cached = Prompt { tokens, text };
    }

    pub fn cached(&self) -> &Prompt {
        &self.cached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(msgs: &[(&str, &str)]) -> Conversation {
        let mut c = Conversation::new(Format::Raw, None);
        c.messages = msgs.iter().map(|(r, t)| Message::new(r, t)).collect();
        c
    }

    #[test]
    fn system_message_is_replaced_and_kept_by_clear() {
        let mut c = Conversation::new(Format::Raw, Some("be nice"));
        c.messages.push(Message::new("user", "hi"));
        c.set_system(Some("be brief"));
        assert_eq!(c.system(), Some("be brief"));
        assert_eq!(c.messages.len(), 2);
        c.clear();
        assert_eq!(c.messages, vec![Message::new("system", "be brief")]);
        c.set_system(None);
        assert!(c.messages.is_empty());
    }

    #[test]
    fn dropping_turns_keeps_system_and_current_question() {
        let mut c = conv(&[
            ("system", "s"),
            ("user", "1"),
            ("assistant", "a1"),
            ("user", "2"),
            ("assistant", "a2"),
            ("user", "3"),
        ]);
        assert!(c.drop_oldest_turn());
        assert_eq!(c.messages.len(), 4);
        assert_eq!(c.messages[1].content, "2");
        assert!(c.drop_oldest_turn());
        assert_eq!(
            c.messages,
            vec![Message::new("system", "s"), Message::new("user", "3")]
        );
        assert!(!c.drop_oldest_turn());
        let mut c = conv(&[("user", "1"), ("assistant", "a"), ("user", "2")]);
        assert!(c.drop_oldest_turn());
        assert_eq!(c.messages, vec![Message::new("user", "2")]);
    }

    #[test]
    fn reusable_prefix_leaves_the_last_token() {
        let mut c = conv(&[]);
        c.cached.tokens = vec![1, 2, 3, 4];
        assert_eq!(c.reusable(&[1, 2, 3, 4, 5, 6]), 4);
        assert_eq!(c.reusable(&[1, 2, 9]), 2);
        assert_eq!(c.reusable(&[1, 2, 3, 4]), 3);
        assert_eq!(c.reusable(&[7]), 0);
    }
}
