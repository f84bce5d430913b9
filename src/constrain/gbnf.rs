//! GBNF (llama.cpp's grammar format) to llguidance's Lark-like syntax: a translator, not a
//! second grammar engine. The GBNF is parsed with llama.cpp's rules (rule names of letters,
//! digits and `-`; a rule ends at a newline outside parentheses; `#` comments; escapes `\x`,
//! `\u`, `\U`, `\t`, `\r`, `\n`, `\\`, `\"`, `\[`, `\]`, `\-`), then written out with every
//! lexeme one character: each literal character, character class and `.` is a lexeme of its
//! own, and every GBNF rule a Lark rule.
//!
//! Why not merge the regular parts into multi-character terminals, which llguidance masks
//! faster? Its lexemes are greedy: a lexeme ends only where the next byte cannot continue it.
//! GBNF matches characters non-deterministically, so a merged terminal such as
//! `num ::= [0-9]+ ws` with `ws ::= [ \t\n]*`, followed by a required `"\n"` (llama.cpp's
//! `arithmetic.gbnf`), would swallow every newline into `ws` and the grammar could never
//! finish. One-character lexemes always end after their character, so the language is
//! exactly GBNF's. (JSON schemas do not go through here: llguidance compiles them itself, with
//! proper multi-character lexemes.)
//!
//! Character classes and `.` become `/.../` regexes with every non-alphanumeric character
//! written as `\x{..}`; literals become JSON-escaped strings. Token references (`<[id]>`,
//! `<|name|>`) pass through as llguidance spells them; negated tokens (`!<...>`) are refused.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// A GBNF text that does not parse, with the line and column where it went wrong (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {col}: {msg}")]
pub struct GbnfError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Lit(String),
    /// A character class: negated, inclusive ranges.
    Class(bool, Vec<(char, char)>),
    Any,
    Ref(String),
    /// A token reference as written (`<[12]>`, `<|im_end|>`).
    Token(String),
    Group(Vec<Vec<Item>>),
    Repeat(Box<Item>, u32, Option<u32>),
}

struct Rule {
    name: String,
    alts: Vec<Vec<Item>>,
}

/// Repetition bounds past this are refused (llama.cpp's own limit is of the same order).
const MAX_REPEAT: u32 = 100_000;

struct Parser<'a> {
    s: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> GbnfError {
        self.err_at(self.pos, msg)
    }

    fn err_at(&self, pos: usize, msg: impl Into<String>) -> GbnfError {
        let before = &self.s[..pos.min(self.s.len())];
        let line = before.iter().filter(|&&c| c == '\n').count() + 1;
        let col = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
        GbnfError {
            line,
            col,
            msg: msg.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    fn at(&self, off: usize) -> Option<char> {
        self.s.get(self.pos + off).copied()
    }

    fn space(&mut self, newline_ok: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => self.pos += 1,
                '\r' | '\n' if newline_ok => self.pos += 1,
                '#' => {
                    while !matches!(self.peek(), None | Some('\r' | '\n')) {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn is_word(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '-'
    }

    fn name(&mut self) -> Result<String, GbnfError> {
        let start = self.pos;
        while self.peek().is_some_and(Self::is_word) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expecting a rule name"));
        }
        Ok(self.s[start..self.pos].iter().collect())
    }

    fn int(&mut self) -> Result<u32, GbnfError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expecting an integer"));
        }
        let text: String = self.s[start..self.pos].iter().collect();
        match text.parse::<u32>() {
            Ok(n) if n <= MAX_REPEAT => Ok(n),
            _ => Err(self.err_at(start, format!("repetition count {text} is too large"))),
        }
    }

    fn hex(&mut self, n: usize) -> Result<char, GbnfError> {
        let start = self.pos;
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.err(format!("expecting {n} hex digits")))?;
            v = v * 16 + d;
            self.pos += 1;
        }
        char::from_u32(v).ok_or_else(|| self.err_at(start, format!("U+{v:X} is not a character")))
    }

    /// One character of a literal or class, escapes decoded.
    fn char(&mut self) -> Result<char, GbnfError> {
        let c = self
            .peek()
            .ok_or_else(|| self.err("unexpected end of input"))?;
        self.pos += 1;
        if c != '\\' {
            return Ok(c);
        }
        let e = self
            .peek()
            .ok_or_else(|| self.err("unexpected end of input"))?;
        self.pos += 1;
        match e {
            'x' => self.hex(2),
            'u' => self.hex(4),
            'U' => self.hex(8),
            't' => Ok('\t'),
            'r' => Ok('\r'),
            'n' => Ok('\n'),
            '\\' | '"' | '[' | ']' | '-' => Ok(e),
            _ => Err(self.err_at(self.pos - 2, format!("unknown escape \\{e}"))),
        }
    }

    fn alternates(&mut self, nested: bool) -> Result<Vec<Vec<Item>>, GbnfError> {
        let mut alts = vec![self.sequence(nested)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(alts)
    }

    fn sequence(&mut self, nested: bool) -> Result<Vec<Item>, GbnfError> {
        let mut seq: Vec<Item> = Vec::new();
        while let Some(c) = self.peek() {
            let item = match c {
                '"' => {
                    self.pos += 1;
                    let mut lit = String::new();
                    while self.peek() != Some('"') {
                        lit.push(self.char()?);
                    }
                    self.pos += 1;
                    Item::Lit(lit)
                }
                '[' => {
                    self.pos += 1;
                    let neg = self.peek() == Some('^');
                    if neg {
                        self.pos += 1;
                    }
                    let mut ranges = Vec::new();
                    while self.peek() != Some(']') {
                        let lo = self.char()?;
                        let hi = if self.peek() == Some('-') && !matches!(self.at(1), Some(']')) {
                            self.pos += 1;
                            self.char()?
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    self.pos += 1;
                    Item::Class(neg, ranges)
                }
                '<' => Item::Token(self.token()?),
                '!' => return Err(self.err("negated tokens (!<...>) are not supported")),
                '(' => {
                    self.pos += 1;
                    self.space(true);
                    let alts = self.alternates(true)?;
                    if self.peek() != Some(')') {
                        return Err(self.err("expecting ')'"));
                    }
                    self.pos += 1;
                    Item::Group(alts)
                }
                '.' => {
                    self.pos += 1;
                    Item::Any
                }
                '*' | '+' | '?' | '{' => {
                    let (min, max) = self.repetition()?;
                    let prev = seq
                        .pop()
                        .ok_or_else(|| self.err("expecting an item before */+/?/{"))?;
                    Item::Repeat(Box::new(prev), min, max)
                }
                c if Self::is_word(c) => Item::Ref(self.name()?),
                _ => break,
            };
            seq.push(item);
            self.space(nested);
        }
        Ok(seq)
    }

    fn token(&mut self) -> Result<String, GbnfError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == '>' {
                return Ok(self.s[start..self.pos].iter().collect());
            }
        }
        Err(self.err_at(start, "unterminated token reference"))
    }

    fn repetition(&mut self) -> Result<(u32, Option<u32>), GbnfError> {
        let c = self.peek().unwrap_or(' ');
        self.pos += 1;
        Ok(match c {
            '*' => (0, None),
            '+' => (1, None),
            '?' => (0, Some(1)),
            _ => {
                self.space(true);
                let min = self.int()?;
                self.space(true);
                let max = match self.peek() {
                    Some('}') => Some(min),
                    Some(',') => {
                        self.pos += 1;
                        self.space(true);
                        let max = if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                            let m = self.int()?;
                            if m < min {
                                return Err(self.err("repetition maximum below its minimum"));
                            }
                            Some(m)
                        } else {
                            None
                        };
                        self.space(true);
                        if self.peek() != Some('}') {
                            return Err(self.err("expecting '}'"));
                        }
                        max
                    }
                    _ => return Err(self.err("expecting ',' or '}'")),
                };
                self.pos += 1;
                (min, max)
            }
        })
    }

    fn rule(&mut self) -> Result<Rule, GbnfError> {
        let name = self.name()?;
        self.space(false);
        if !(self.peek() == Some(':') && self.at(1) == Some(':') && self.at(2) == Some('=')) {
            return Err(self.err("expecting ::="));
        }
        self.pos += 3;
        self.space(true);
        let alts = self.alternates(false)?;
        match self.peek() {
            None | Some('\n') => {}
            Some('\r') => {}
            Some(c) => return Err(self.err(format!("unexpected '{c}' (expecting a newline)"))),
        }
        self.space(true);
        Ok(Rule { name, alts })
    }
}

fn parse(text: &str) -> Result<Vec<Rule>, GbnfError> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser { s: &chars, pos: 0 };
    p.space(true);
    let mut rules: Vec<Rule> = Vec::new();
    while p.peek().is_some() {
        let start = p.pos;
        let r = p.rule()?;
        // a later definition replaces an earlier one, as in llama.cpp
        if let Some(old) = rules.iter_mut().find(|o| o.name == r.name) {
            *old = r;
        } else {
            rules.push(r);
        }
        debug_assert!(p.pos > start);
    }
    let defined: HashSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    if !defined.contains("root") {
        return Err(GbnfError {
            line: 1,
            col: 1,
            msg: "the grammar has no 'root' rule".into(),
        });
    }
    for r in &rules {
        let mut missing = None;
        for_refs(&r.alts, &mut |n| {
            if missing.is_none() && !defined.contains(n) {
                missing = Some(n.to_string());
            }
        });
        if let Some(n) = missing {
            let at = text
                .find(&format!("{} ::=", r.name))
                .map_or(0, |b| text[..b].chars().count());
            return Err(p.err_at(
                at,
                format!("rule '{}' uses '{n}', which is not defined", r.name),
            ));
        }
    }
    Ok(rules)
}

fn for_refs(alts: &[Vec<Item>], f: &mut impl FnMut(&str)) {
    for seq in alts {
        for it in seq {
            item_refs(it, f);
        }
    }
}

fn item_refs(it: &Item, f: &mut impl FnMut(&str)) {
    match it {
        Item::Ref(n) => f(n),
        Item::Group(alts) => for_refs(alts, f),
        Item::Repeat(inner, ..) => item_refs(inner, f),
        _ => {}
    }
}

struct Writer {
    /// GBNF name → Lark name.
    names: HashMap<String, String>,
}

impl Writer {
    fn alts(&self, alts: &[Vec<Item>]) -> String {
        let body: Vec<String> = alts
            .iter()
            .map(|s| self.seq(s))
            .filter(|s| !s.is_empty())
            .collect();
        if body.is_empty() {
            return "\"\"".into();
        }
        let joined = body.join(" | ");
        if body.len() < alts.len() {
            format!("({joined})?")
        } else {
            joined
        }
    }

    fn seq(&self, seq: &[Item]) -> String {
        seq.iter()
            .map(|it| self.item(it))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn item(&self, it: &Item) -> String {
        match it {
            Item::Lit(s) => {
                // one lexeme per character (see the module comment)
                let chars: Vec<String> = s
                    .chars()
                    .map(|c| serde_json::to_string(&c.to_string()).unwrap_or_default())
                    .collect();
                match chars.len() {
                    0 | 1 => chars.concat(),
                    _ => format!("({})", chars.join(" ")),
                }
            }
            Item::Class(neg, ranges) => class_regex(*neg, ranges),
            Item::Any => "/[\\x{0}-\\x{10FFFF}]/".into(),
            Item::Ref(n) => self.names[n].clone(),
            Item::Token(t) => t.clone(),
            Item::Group(alts) => format!("({})", self.alts(alts)),
            Item::Repeat(inner, min, max) => {
                let inner_s = self.item(inner);
                if inner_s.is_empty() {
                    return String::new();
                }
                let wrapped = match inner.as_ref() {
                    Item::Group(_) => inner_s,
                    _ => format!("({inner_s})"),
                };
                match (min, max) {
                    (0, None) => format!("{wrapped}*"),
                    (1, None) => format!("{wrapped}+"),
                    (0, Some(1)) => format!("{wrapped}?"),
                    (m, None) => format!("{wrapped}{{{m},}}"),
                    (m, Some(n)) if m == n => format!("{wrapped}{{{m}}}"),
                    (m, Some(n)) => format!("{wrapped}{{{m},{n}}}"),
                }
            }
        }
    }
}

fn class_regex(neg: bool, ranges: &[(char, char)]) -> String {
    let esc = |c: char| {
        if c.is_ascii_alphanumeric() {
            c.to_string()
        } else {
            format!("\\x{{{:X}}}", c as u32)
        }
    };
    let mut s = String::from("/[");
    if neg {
        s.push('^');
    }
    for &(lo, hi) in ranges {
        s.push_str(&esc(lo));
        if hi != lo {
            s.push('-');
            s.push_str(&esc(hi));
        }
    }
    s.push_str("]/");
    s
}

/// A Lark rule name for each GBNF rule: lowercase, `-` as `_`, made unique (GBNF names are
/// case-sensitive and may start with a digit; `start` is Lark's entry point).
fn lark_names(rules: &[Rule]) -> HashMap<String, String> {
    let mut used: HashSet<String> = ["start".to_string()].into();
    let mut names = HashMap::new();
    for r in rules {
        let mut base: String = r
            .name
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        if base.starts_with(|c: char| c.is_ascii_digit()) {
            base.insert_str(0, "g_");
        }
        let mut name = base.clone();
        let mut i = 2;
        while used.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        used.insert(name.clone());
        names.insert(r.name.clone(), name);
    }
    names
}

/// Translates a GBNF grammar (its `root` rule is the start) into llguidance's Lark syntax.
pub fn gbnf_to_lark(text: &str) -> Result<String, GbnfError> {
    let rules = parse(text)?;
    let w = Writer {
        names: lark_names(&rules),
    };
    let mut out = String::new();
    let _ = writeln!(out, "start: {}", w.names["root"]);
    for r in &rules {
        let _ = writeln!(out, "{}: {}", w.names[&r.name], w.alts(&r.alts));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_become_lowercase_rules_of_one_character_lexemes() {
        let g = "root ::= item+\nitem ::= \"- \" [^\\r\\n]+ \"\\n\"\n";
        let lark = gbnf_to_lark(g).unwrap();
        assert_eq!(
            lark,
            "start: root\nroot: (item)+\nitem: (\"-\" \" \") (/[^\\x{D}\\x{A}]/)+ \"\\n\"\n"
        );
    }

    #[test]
    fn multi_line_rules_comments_and_escapes() {
        let g = "# c\nroot ::=\n  \"a\\x41\\u00e9\" | # tail\n  [\\-\\]]{2,3} .\n";
        let lark = gbnf_to_lark(g).unwrap();
        assert!(lark.contains("(\"a\" \"A\" \"é\")"), "{lark}");
        assert!(lark.contains("(/[\\x{2D}\\x{5D}]/){2,3}"), "{lark}");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = gbnf_to_lark("root ::= \"a\"\nx ::= y\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1), "{e}");
        assert!(e.msg.contains("'y'"), "{e}");
        let e = gbnf_to_lark("root ::= \"a\" )\n").unwrap_err();
        assert_eq!((e.line, e.col), (1, 14), "{e}");
        let e = gbnf_to_lark("root = \"a\"\n").unwrap_err();
        assert!(e.msg.contains("::="), "{e}");
        let e = gbnf_to_lark("a ::= \"x\"\n").unwrap_err();
        assert!(e.msg.contains("root"), "{e}");
        let e = gbnf_to_lark("root ::= \"\\q\"\n").unwrap_err();
        assert!(e.msg.contains("escape"), "{e}");
        let e = gbnf_to_lark("root ::= [a-z]{3,1}\n").unwrap_err();
        assert!(e.msg.contains("maximum"), "{e}");
    }

    #[test]
    fn names_are_made_lark_safe_and_unique() {
        let g = "root ::= a-b A-B 1x\na-b ::= \"x\" root\nA-B ::= \"y\" root\n1x ::= \"z\"\n";
        let lark = gbnf_to_lark(g).unwrap();
        assert!(lark.contains("a_b: \"x\" root"), "{lark}");
        assert!(lark.contains("a_b_2: \"y\" root"), "{lark}");
        assert!(lark.contains("g_1x: \"z\""), "{lark}");
    }
}
