//! The `tojson` filter as chat templates expect it: Python's `json.dumps` with the arguments
//! `transformers` passes (`ensure_ascii=False`, key order kept, `", "` and `": "` between
//! items, `indent`, `separators` and `sort_keys` honoured), not minijinja's HTML-safe default
//! (which writes `'` as `\u0027` and refuses `ensure_ascii`).

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};

struct Style {
    ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

pub fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => Some(v.as_str().unwrap_or_default().to_string()),
        },
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be two strings",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let style = Style {
        ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

fn write(out: &mut String, v: &Value, s: &Style, depth: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number(v)),
        ValueKind::String => string(out, v.as_str().unwrap_or_default(), s.ascii),
        ValueKind::Seq => {
            let items: Vec<Value> = v.try_iter()?.collect();
            container(out, '[', ']', items.len(), s, depth, |out, i| {
                write(out, &items[i], s, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if s.sort_keys {
                keys.sort_by_key(|a| a.to_string());
            }
            container(out, '{', '}', keys.len(), s, depth, |out, i| {
                let k = &keys[i];
                match k.as_str() {
                    Some(t) => string(out, t, s.ascii),
                    None if k.is_none() => out.push_str("\"null\""),
                    None if k.kind() == ValueKind::Bool => {
                        string(out, if k.is_true() { "true" } else { "false" }, s.ascii)
                    }
                    None => string(out, &number(k), s.ascii),
                }
                out.push_str(&s.key_sep);
                write(out, &v.get_item(k)?, s, depth + 1)
            })?;
        }
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a value of kind {other} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

fn container(
    out: &mut String,
    open: char,
    close: char,
    n: usize,
    s: &Style,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if n == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..n {
        if i > 0 {
            out.push_str(&s.item_sep);
        }
        if let Some(ind) = &s.indent {
            out.push('\n');
            out.push_str(&ind.repeat(depth + 1));
        }
        item(out, i)?;
    }
    if let Some(ind) = &s.indent {
        out.push('\n');
        out.push_str(&ind.repeat(depth));
    }
    out.push(close);
    Ok(())
}

/// Python's `repr` of an int or a float: `1`, `1.5`, `1.0`, `1e+20`, `NaN`, `Infinity`.
fn number(v: &Value) -> String {
    if let Some(i) = v.as_i64() {
        if !v.to_string().contains(['.', 'e', 'E', 'i', 'n', 'N']) {
            return i.to_string();
        }
    }
    let Ok(f) = f64::try_from(v.clone()) else {
        return v.to_string();
    };
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let r = format!("{f:?}");
    match r.split_once('e') {
        Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
        _ => r,
    }
}

fn string(out: &mut String, t: &str, ascii: bool) {
    out.push('"');
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use minijinja::Environment;

    fn render(src: &str, ctx: serde_json::Value) -> String {
        let mut env = Environment::new();
        env.add_filter("tojson", super::tojson);
        env.render_str(
            src,
            minijinja::value::Value::from(minijinja::value::Serde(&ctx)),
        )
        .unwrap()
    }

    #[test]
    fn as_python_json_dumps() {
        let ctx =
            serde_json::json!({"x": {"b": [1, 2.5, 1.0, true, null], "a": "it's “é”\n\u{1}"}});
        assert_eq!(
            render("{{ x | tojson }}", ctx.clone()),
            r#"{"b": [1, 2.5, 1.0, true, null], "a": "it's “é”\n\u0001"}"#
        );
        assert_eq!(
            render(
                "{{ x | tojson(ensure_ascii=True, sort_keys=True) }}",
                ctx.clone()
            ),
            r#"{"a": "it's \u201c\u00e9\u201d\n\u0001", "b": [1, 2.5, 1.0, true, null]}"#
        );
        assert_eq!(
            render("{{ x.b | tojson(indent=2) }}", ctx.clone()),
            "[\n  1,\n  2.5,\n  1.0,\n  true,\n  null\n]"
        );
        assert_eq!(
            render("{{ x.b | tojson(separators=(',', ':')) }}", ctx),
            "[1,2.5,1.0,true,null]"
        );
    }
}
