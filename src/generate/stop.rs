//! Stop strings (`--stop`, `-r/--reverse-prompt`): generation ends when the text contains one
//! of them. Text that might be the start of a stop string is held back until it is known not
//! to be, so the stop string itself never reaches the output.

#[derive(Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Text received but not yet released.
    pending: String,
    hit: Option<usize>,
}

impl StopStrings {
    pub fn new(stops: Vec<String>) -> Self {
        StopStrings {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Which stop string ended generation, if one did.
    pub fn hit(&self) -> Option<&str> {
        self.hit.map(|i| self.stops[i].as_str())
    }

    /// Take in newly generated text; returns the text that can be shown now. After a stop
    /// string is found ([`hit`](Self::hit) is then set) it returns the text before it, and
    /// nothing ever after.
    pub fn push(&mut self, text: &str) -> String {
        if self.hit.is_some() {
            return String::new();
        }
        self.pending.push_str(text);
        let found = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.pending.find(s.as_str()).map(|at| (at, i)))
            .min();
        if let Some((at, i)) = found {
            self.hit = Some(i);
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return out;
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.pending, s))
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        out
    }

    /// The text still held back (generation ended without a stop string).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on char
/// boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = (stop.len() - 1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.starts_with(&text[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, Option<String>) {
        let mut s = StopStrings::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            out.push_str(&s.push(p));
        }
        if s.hit().is_none() {
            out.push_str(&s.flush());
        }
        (out, s.hit().map(str::to_string))
    }

    #[test]
    fn stops_across_pieces_and_hides_the_stop_string() {
        assert_eq!(
            run(&["User:"], &["Hello", " there\nUs", "er: more"]),
            ("Hello there\n".into(), Some("User:".into()))
        );
        assert_eq!(run(&["###"], &["a#", "b##", "c"]), ("a#b##c".into(), None));
        assert_eq!(
            run(&["xyz", "b"], &["aab", "xyz"]),
            ("aa".into(), Some("b".into()))
        );
        assert_eq!(run(&[], &["é", "x"]), ("éx".into(), None));
        assert_eq!(run(&["éa"], &["é", "b"]), ("éb".into(), None));
    }

    #[test]
    fn holds_back_only_what_could_start_a_stop() {
        let mut s = StopStrings::new(vec!["\n\n".into()]);
        assert_eq!(s.push("one\n"), "one");
        assert_eq!(s.push("two"), "\ntwo");
        assert_eq!(s.push("\n\nthree"), "");
        assert_eq!(s.hit(), Some("\n\n"));
    }
}
