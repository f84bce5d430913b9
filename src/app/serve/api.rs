//! The OpenAI API's shapes: a request body checked into a [`JobSpec`] (every field untrusted:
//! wrong types and values are 400s naming the field), and the response, chunk and error objects.

use serde_json::{json, Map, Value};

use crate::chat::Message;
use crate::constrain::Format;

/// Which endpoint a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

/// What a request asks for, checked.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub kind: Kind,
    /// The completion prompt (`Kind::Completion`).
    pub prompt: String,
    /// The conversation (`Kind::Chat`).
    pub messages: Vec<Message>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub seed: Option<u64>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<i64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// `response_format` (or Ember's `json_schema`/`grammar`): the output constraint.
    pub format: Option<Format>,
    /// llama-server's `ignore_eos` (for benchmarks: exactly `max_tokens` tokens).
    pub ignore_eos: bool,
}

/// An error as the OpenAI API reports it, with its HTTP status.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn bad(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": Value::Null,
        }})
    }
}

fn field_f32(o: &Map<String, Value>, k: &str, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if (lo..=hi).contains(&v) {
                Ok(Some(v as f32))
            } else {
                Err(ApiError::bad(
                    format!("'{k}' must be between {lo} and {hi}, not {v}"),
                    Some(k),
                ))
            }
        }
        Some(_) => Err(ApiError::bad(format!("'{k}' must be a number"), Some(k))),
    }
}

fn field_int(o: &Map<String, Value>, k: &str) -> Result<Option<i64>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(i64::MAX)),
        Some(_) => Err(ApiError::bad(format!("'{k}' must be an integer"), Some(k))),
    }
}

fn field_bool(o: &Map<String, Value>, k: &str) -> Result<bool, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad(format!("'{k}' must be a boolean"), Some(k))),
    }
}

/// A message's content: a string, or a list of parts of which the text ones count.
fn content(v: &Value, i: usize) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some(other), _) if other != "text" => {
                        return Err(ApiError::bad(
                            format!("content parts of type '{other}' are not supported"),
                            Some(&param),
                        ))
                    }
                    _ => {
                        return Err(ApiError::bad(
                            "a content part needs 'type' and 'text'",
                            Some(&param),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::bad(
            "content must be a string or a list of parts",
            Some(&param),
        )),
    }
}

/// Checks a request body.
pub fn parse(kind: Kind, body: &[u8]) -> Result<JobSpec, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the body is not valid JSON: {e}"), None))?;
    let Value::Object(o) = v else {
        return Err(ApiError::bad("the body must be a JSON object", None));
    };
    if let Some(n) = field_int(&o, "n")? {
        if n != 1 {
            return Err(ApiError::bad("only n = 1 is supported", Some("n")));
        }
    }
    if field_bool(&o, "logprobs")? || o.get("tools").is_some_and(|t| !t.is_null()) {
        return Err(ApiError::bad(
            "logprobs and tools are not supported",
            Some(if o.contains_key("tools") {
                "tools"
            } else {
                "logprobs"
            }),
        ));
    }
    let (mut prompt, mut messages) = (String::new(), Vec::new());
    match kind {
        Kind::Chat => {
            let Some(Value::Array(ms)) = o.get("messages") else {
                return Err(ApiError::bad(
                    "'messages' is required: a list of {role, content}",
                    Some("messages"),
                ));
            };
            if ms.is_empty() {
                return Err(ApiError::bad("'messages' is empty", Some("messages")));
            }
            for (i, m) in ms.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
                    ApiError::bad(
                        "each message needs a string 'role'",
                        Some(&format!("messages[{i}].role")),
                    )
                })?;
                let text = content(m.get("content").unwrap_or(&Value::Null), i)?;
                messages.push(Message::new(role, &text));
            }
        }
        Kind::Completion => {
            prompt = match o.get("prompt") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                    a[0].as_str().unwrap_or_default().to_string()
                }
                Some(Value::Array(_)) => {
                    return Err(ApiError::bad(
                        "only one prompt per request is supported",
                        Some("prompt"),
                    ))
                }
                _ => {
                    return Err(ApiError::bad(
                        "'prompt' is required: a string",
                        Some("prompt"),
                    ))
                }
            };
        }
    }
    let stop = match o.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= 4 => a
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::bad("'stop' must be strings", Some("stop")))?,
        Some(_) => {
            return Err(ApiError::bad(
                "'stop' must be a string or a list of up to 4 strings",
                Some("stop"),
            ))
        }
    };
    let max_tokens = match field_int(&o, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => field_int(&o, "max_tokens")?,
    };
    if let Some(n) = max_tokens {
        if n < 1 {
            return Err(ApiError::bad(
                "'max_tokens' must be at least 1",
                Some("max_tokens"),
            ));
        }
    }
    let seed = match field_int(&o, "seed")? {
        Some(s) if s < 0 => return Err(ApiError::bad("'seed' must not be negative", Some("seed"))),
        s => s.map(|s| s as u64),
    };
    let include_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(so)) => field_bool(so, "include_usage")?,
        Some(_) => {
            return Err(ApiError::bad(
                "'stream_options' must be an object",
                Some("stream_options"),
            ))
        }
    };
    let format = Format::from_request(&o)
        .map_err(|e| ApiError::bad(e.to_string(), Some("response_format")))?;
    Ok(JobSpec {
        kind,
        prompt,
        messages,
        temperature: field_f32(&o, "temperature", 0.0, 2.0)?,
        top_p: field_f32(&o, "top_p", 0.0, 1.0)?,
        top_k: field_int(&o, "top_k")?.map(|k| k.clamp(0, i32::MAX as i64) as i32),
        min_p: field_f32(&o, "min_p", 0.0, 1.0)?,
        frequency_penalty: field_f32(&o, "frequency_penalty", -2.0, 2.0)?,
        presence_penalty: field_f32(&o, "presence_penalty", -2.0, 2.0)?,
        seed,
        max_tokens,
        stop,
        stream: field_bool(&o, "stream")?,
        include_usage,
        format,
        ignore_eos: field_bool(&o, "ignore_eos")?,
    })
}

/// Token counts of one answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub prompt: usize,
    pub completion: usize,
}

impl Usage {
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// Names one answer in its responses.
#[derive(Clone, Debug)]
pub struct Reply {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Reply {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn choice(&self, text: &str, finish: Option<&str>, chunk: bool) -> Value {
        match (self.kind, chunk) {
            (Kind::Chat, false) => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": Value::Null,
                "finish_reason": finish,
            }),
            (Kind::Chat, true) => {
                let delta = if finish.is_some() && text.is_empty() {
                    json!({})
                } else {
                    json!({"content": text})
                };
                json!({"index": 0, "delta": delta, "logprobs": Value::Null, "finish_reason": finish})
            }
            (Kind::Completion, _) => json!({
                "index": 0,
                "text": text,
                "logprobs": Value::Null,
                "finish_reason": finish,
            }),
        }
    }

    /// The whole answer (not streamed).
    pub fn full(&self, text: &str, finish: &str, usage: Usage) -> Value {
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": [self.choice(text, Some(finish), false)],
            "usage": usage.json(),
        })
    }

    /// One streamed chunk: text, or the end (`finish`).
    pub fn chunk(&self, text: &str, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [self.choice(text, finish, true)],
        })
    }

    /// The whole answer with the model's reasoning apart (`reasoning_content`, as
    /// llama-server names it), when there is any.
    pub fn full_with_reasoning(
        &self,
        text: &str,
        reasoning: &str,
        finish: &str,
        usage: Usage,
    ) -> Value {
        let mut v = self.full(text, finish, usage);
        if !reasoning.is_empty() && self.kind == Kind::Chat {
            v["choices"][0]["message"]["reasoning_content"] = reasoning.into();
        }
        v
    }

    /// A streamed chunk of reasoning (chat only): `delta.reasoning_content`.
    pub fn reasoning_chunk(&self, reasoning: &str) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": {"reasoning_content": reasoning}, "logprobs": Value::Null, "finish_reason": Value::Null}],
        })
    }

    /// The chat stream's first chunk: the assistant's role.
    pub fn role_chunk(&self) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": Value::Null, "finish_reason": Value::Null}],
        })
    }

    /// The usage chunk (`stream_options.include_usage`): no choices.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage.json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_field_by_field() {
        let ok = parse(
            Kind::Chat,
            br#"{"model":"x","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":5,"stop":"\n","stream":true,"stream_options":{"include_usage":true},"seed":3,"temperature":0,"user":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(ok.messages[0].content, "hi");
        assert_eq!(
            (ok.max_tokens, ok.seed, ok.stream, ok.include_usage),
            (Some(5), Some(3), true, true)
        );
        assert_eq!(ok.stop, vec!["\n".to_string()]);
        let bad = |body: &str, param: &str| {
            let e = parse(Kind::Chat, body.as_bytes()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        };
        bad(r#"{"messages":[]}"#, "messages");
        bad(r#"{"messages":[{"content":"x"}]}"#, "messages[0].role");
        bad(
            r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            "temperature",
        );
        bad(
            r#"{"messages":[{"role":"user","content":"x"}],"temperature":9}"#,
            "temperature",
        );
        bad(r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, "n");
        bad(
            r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            "max_tokens",
        );
        bad(
            r#"{"messages":[{"role":"user","content":"x"}],"stop":[1]}"#,
            "stop",
        );
        bad(
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}"#,
            "response_format",
        );
        assert!(parse(Kind::Chat, b"{not json")
            .unwrap_err()
            .message
            .contains("JSON"));
        assert!(parse(Kind::Completion, br#"{"prompt": 5}"#).is_err());
        let c = parse(Kind::Completion, br#"{"prompt": ["one"]}"#).unwrap();
        assert_eq!(c.prompt, "one");
        let f = parse(
            Kind::Chat,
            br#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#,
        )
        .unwrap();
        assert_eq!(f.format, Some(Format::AnyJson));
    }

    #[test]
    fn responses_have_the_openai_shapes() {
        let r = Reply {
            kind: Kind::Chat,
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m".into(),
        };
        let full = r.full(
            "hi",
            "stop",
            Usage {
                prompt: 3,
                completion: 1,
            },
        );
        assert_eq!(full["object"], "chat.completion");
        assert_eq!(full["choices"][0]["message"]["content"], "hi");
        assert_eq!(full["usage"]["total_tokens"], 4);
        assert_eq!(
            r.chunk("", Some("length"))["choices"][0]["delta"],
            json!({})
        );
        assert_eq!(r.usage_chunk(Usage::default())["choices"], json!([]));
        let c = Reply {
            kind: Kind::Completion,
            ..r
        };
        assert_eq!(c.chunk("a", None)["choices"][0]["text"], "a");
    }
}
