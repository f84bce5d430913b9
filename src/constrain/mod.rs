//! Structured output: a JSON schema, a grammar (GBNF or Lark) or "any JSON object" that every
//! generated text satisfies. The constraint engine is llguidance (an Earley parser over a
//! derivative-based lexer, walking a token trie); this module gives it Ember's vocabulary and
//! turns its token masks into logits a sampler cannot leave.
//!
//! ```text
//! --json-schema / --grammar(-file) / --format json ─► Format (checked at the command line)
//! Tokenizer ─► VocabSource ─► Vocab (token trie; VocabCell builds it once, on a thread)
//! Guard::deferred(cell, format) ─► each token: Guard::apply(logits) (mask) ─► sample
//!                                             ─► Guard::commit(id)
//! ```
//!
//! `vocab` owns the vocabulary, `guard` one answer's parser, `gbnf` the GBNF translator. The
//! mask for the next token depends only on the tokens committed so far, so the decode loops
//! compute it on another thread while the forward pass runs, where a core is free
//! ([`Guard::prepare`] through `Sampler::overlap`).

mod gbnf;
mod guard;
mod vocab;

use std::path::Path;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::ApproximateTokEnv;
use llguidance::ParserFactory;

pub use gbnf::{gbnf_to_lark, GbnfError};
pub use guard::{spare_core, Guard, GuardStats};
pub use vocab::{Vocab, VocabCell, VocabSource};

/// What the output must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Any JSON object (`--format json`).
    AnyJson,
    /// A JSON schema.
    Schema(serde_json::Value),
    /// A grammar in llguidance's Lark syntax (GBNF is translated to it when read).
    Lark(String),
}

/// A schema or grammar that cannot be used, naming where it went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

impl Format {
    /// A JSON schema's text; `origin` names it in errors (a file name, or `--json-schema`).
    pub fn schema(text: &str, origin: &str) -> Result<Format, FormatError> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| FormatError(format!("{origin}: not valid JSON: {e}")))?;
        if !(v.is_object() || v.is_boolean()) {
            return Err(FormatError(format!(
                "{origin}: a JSON schema is an object (or true/false)"
            )));
        }
        let f = Format::Schema(v);
        f.checked(origin)
    }

    /// A grammar's text: GBNF when `lark` is false and it has a `::=` rule, Lark otherwise.
    pub fn grammar(text: &str, origin: &str, lark: bool) -> Result<Format, FormatError> {
        let f = if !lark && text.contains("::=") {
            let lark = gbnf_to_lark(text).map_err(|e| FormatError(format!("{origin}: {e}")))?;
            Format::Lark(lark)
        } else {
            Format::Lark(text.to_string())
        };
        f.checked(origin)
    }

    /// [`check`](Self::check)ed: errors name `origin`, warnings go to the log.
    fn checked(self, origin: &str) -> Result<Format, FormatError> {
        let warnings = self
            .check()
            .map_err(|e| FormatError(format!("{origin}: {e}")))?;
        for w in warnings {
            log::warn!("{origin}: {w} (ignored: the output may not satisfy it)");
        }
        Ok(self)
    }

    /// A grammar or schema file, by its extension: `.json` a schema, `.lark` Lark, anything
    /// else GBNF (or Lark when it has no `::=` rule).
    pub fn file(path: &Path) -> Result<Format, FormatError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FormatError(format!("{}: {e}", path.display())))?;
        let origin = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::schema(&text, &origin),
            Some("lark") => Format::grammar(&text, &origin, true),
            _ => Format::grammar(&text, &origin, false),
        }
    }

    /// A `format` value as the chat and the batch requests give it: `json`, a schema object,
    /// or a file (schema, GBNF or Lark).
    pub fn from_value(v: &serde_json::Value, origin: &str) -> Result<Format, FormatError> {
        match v {
            serde_json::Value::String(s) if s == "json" => Ok(Format::AnyJson),
            serde_json::Value::String(s) => Format::file(Path::new(s)),
            serde_json::Value::Object(_) | serde_json::Value::Bool(_) => {
                Format::schema(&v.to_string(), origin)
            }
            _ => Err(FormatError(format!(
                "{origin}: expected \"json\", a schema object or a file name"
            ))),
        }
    }

    /// The constraint a JSON request gives, if any: `format` (`"json"` or a schema, as Ollama
    /// takes it), `json_schema` (a schema), `grammar` (GBNF or Lark text) or OpenAI's
    /// `response_format` (`{"type": "json_object"}`, or `{"type": "json_schema", "json_schema":
    /// {"schema": ...}}`). At most one.
    pub fn from_request(
        obj: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Format>, FormatError> {
        use serde_json::Value;
        let keys = ["format", "json_schema", "grammar", "response_format"];
        let given: Vec<&str> = keys
            .into_iter()
            .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        let (key, v) = match given.as_slice() {
            [] => return Ok(None),
            [k] => (*k, &obj[*k]),
            _ => {
                return Err(FormatError(format!(
                    "give one of {}, not several",
                    given.join(", ")
                )))
            }
        };
        let f = match (key, v) {
            ("format", Value::String(s)) if s == "json" => Format::AnyJson,
            ("format", Value::Object(_)) | ("json_schema", Value::Object(_) | Value::Bool(_)) => {
                Format::schema(&v.to_string(), key)?
            }
            ("format", _) => {
                return Err(FormatError(
                    "'format' must be \"json\" or a JSON schema object".into(),
                ))
            }
            ("json_schema", _) => {
                return Err(FormatError("'json_schema' must be a schema object".into()))
            }
            ("grammar", Value::String(g)) => Format::grammar(g, "grammar", false)?,
            ("grammar", _) => return Err(FormatError("'grammar' must be a string".into())),
            _ => match v.get("type").and_then(Value::as_str) {
                Some("text") => return Ok(None),
                Some("json_object") => match v.get("schema") {
                    Some(s) => Format::schema(&s.to_string(), "response_format.schema")?,
                    None => Format::AnyJson,
                },
                Some("json_schema") => {
                    let s = v
                        .get("json_schema")
                        .and_then(|j| j.get("schema"))
                        .ok_or_else(|| {
                            FormatError("response_format: json_schema.schema is missing".into())
                        })?;
                    Format::schema(&s.to_string(), "response_format.json_schema.schema")?
                }
                _ => {
                    return Err(FormatError(
                        "response_format.type must be text, json_object or json_schema".into(),
                    ))
                }
            },
        };
        Ok(Some(f))
    }

    fn top_level(&self) -> TopLevelGrammar {
        match self {
            Format::AnyJson => TopLevelGrammar::from_json_schema(with_layout(
                serde_json::json!({"type": "object"}),
            )),
            Format::Schema(v) => TopLevelGrammar::from_json_schema(with_layout(v.clone())),
            Format::Lark(s) => TopLevelGrammar::from_lark(s.clone()),
        }
    }

    /// Compiles the format against a byte-level vocabulary, so that grammar and schema errors
    /// show before a model is loaded; returns llguidance's warnings (what it ignores).
    pub fn check(&self) -> Result<Vec<String>, String> {
        let env = ApproximateTokEnv::single_byte_env();
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        let mut parser = factory
            .create_parser(self.top_level())
            .map_err(|e| e.to_string())?;
        Ok(parser.grammar_warnings())
    }

    /// A short description for logs.
    pub fn describe(&self) -> &'static str {
        match self {
            Format::AnyJson => "any JSON object",
            Format::Schema(_) => "a JSON schema",
            Format::Lark(_) => "a grammar",
        }
    }
}

/// Whitespace between JSON tokens as llama.cpp's schema grammars allow it: none, one space, or
/// a newline and up to 20 spaces or tabs of indentation (a model cannot pad forever). Keywords
/// llguidance does not implement (`uniqueItems`, unknown `format`s) are warned about and
/// ignored, as llama.cpp's converter ignores them. A schema that sets llguidance's own
/// `x-guidance` options keeps them instead.
const JSON_SPACE: &str = r"\x20|\x0A[\x20\x09]{0,20}";

fn with_layout(schema: serde_json::Value) -> serde_json::Value {
    let mut schema = match schema {
        serde_json::Value::Bool(true) => serde_json::json!({}),
        other => other,
    };
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(
            || serde_json::json!({"whitespace_pattern": JSON_SPACE, "lenient": true}),
        );
    }
    schema
}

#[cfg(test)]
mod tests;
