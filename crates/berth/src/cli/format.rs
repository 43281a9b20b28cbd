//! `--format`: Go templates (through gtmpl) over the API's JSON, with the functions docker
//! adds (json, join, upper, lower, ...), the `table` directive and docker's column alignment.

use std::collections::HashMap;

use gtmpl::{Context, Template};
use gtmpl_value::{FuncError, Number, Value};

/// A parsed `--format`: `table ...` prints a header row and aligns columns, as docker does.
pub struct Format {
    table: bool,
    tmpl: Template,
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            // Go's encoding/json sorts map keys
            let sorted: std::collections::BTreeMap<_, _> =
                m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
    }
}

/// JSON as the API returned it → a template value.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else {
                Value::Number(Number::from(n.as_f64().unwrap_or(0.0)))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn one<'a>(name: &str, args: &'a [Value]) -> Result<&'a Value, FuncError> {
    match args {
        [v] => Ok(v),
        _ => Err(FuncError::ExactlyXArgs(name.to_string(), 1)),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(to_json(one("json", args)?).to_string()))
}

fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(text(one("upper", args)?).to_uppercase()))
}

fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(text(one("lower", args)?).to_lowercase()))
}

fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(one("title", args)?);
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(Value::String(out))
}

fn f_join(args: &[Value]) -> Result<Value, FuncError> {
    let [list, sep] = args else {
        return Err(FuncError::ExactlyXArgs("join".into(), 2));
    };
    let items: Vec<String> = match list {
        Value::Array(a) => a.iter().map(text).collect(),
        Value::NoValue | Value::Nil => Vec::new(),
        other => vec![text(other)],
    };
    Ok(Value::String(items.join(&text(sep))))
}

fn f_split(args: &[Value]) -> Result<Value, FuncError> {
    let [s, sep] = args else {
        return Err(FuncError::ExactlyXArgs("split".into(), 2));
    };
    Ok(Value::Array(
        text(s)
            .split(text(sep).as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

fn f_pad(args: &[Value]) -> Result<Value, FuncError> {
    let [s, l, r] = args else {
        return Err(FuncError::ExactlyXArgs("pad".into(), 3));
    };
    let n = |v: &Value| match v {
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    Ok(Value::String(format!(
        "{}{}{}",
        " ".repeat(n(l)),
        text(s),
        " ".repeat(n(r))
    )))
}

fn f_truncate(args: &[Value]) -> Result<Value, FuncError> {
    let [s, l] = args else {
        return Err(FuncError::ExactlyXArgs("truncate".into(), 2));
    };
    let n = match l {
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    Ok(Value::String(text(s).chars().take(n).collect()))
}

/// Go's `%v` of a value, as text/template prints what an action yields: `map[k:v]`,
/// `[a b]`, `<nil>` (gtmpl would print Rust's debug form).
fn go_print(v: &Value) -> String {
    match v {
        Value::NoValue => "<no value>".into(),
        Value::Nil => "<nil>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) | Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", m.get(*k).map(go_print).unwrap_or_default()))
                .collect();
            format!("map[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

fn f_goprint(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(go_print(one("goprint", args)?)))
}

/// Wraps every printing action `{{pipeline}}` as `{{__goprint (pipeline)}}`, so that what it
/// prints is formatted as Go would; control actions, comments and assignments stay as they are.
fn wrap_actions(src: &str) -> String {
    const CONTROL: &[&str] = &[
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::with_capacity(src.len() + 32);
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let (lead, body) = match inner.strip_prefix("- ") {
            Some(b) => ("- ", b),
            None => ("", inner),
        };
        let (body, trail) = match body.strip_suffix(" -") {
            Some(b) => (b, " -"),
            None => (body, ""),
        };
        let word = body
            .trim_start()
            .split([' ', '(', '\t'])
            .next()
            .unwrap_or("");
        let keeps_as_is = body.trim().is_empty()
            || body.trim_start().starts_with("/*")
            || CONTROL.contains(&word)
            || body.contains(":=")
            || (word.starts_with('$') && body.contains(" = "));
        let plain = !keeps_as_is;
        if plain {
            out.push_str(&format!("{{{{{lead}__goprint ({}){trail}}}}}", body.trim()));
        } else {
            out.push_str("{{");
            out.push_str(inner);
            out.push_str("}}");
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

impl Format {
    pub fn parse(spec: &str) -> Result<Format, String> {
        let (table, body) = match spec.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start().to_string()),
            None => (false, spec.to_string()),
        };
        // docker lets users type `\t` and `\n` in a shell string
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut tmpl = Template::default();
        tmpl.add_func("json", f_json);
        tmpl.add_func("upper", f_upper);
        tmpl.add_func("lower", f_lower);
        tmpl.add_func("title", f_title);
        tmpl.add_func("join", f_join);
        tmpl.add_func("split", f_split);
        tmpl.add_func("pad", f_pad);
        tmpl.add_func("truncate", f_truncate);
        tmpl.add_func("__goprint", f_goprint);
        tmpl.parse(wrap_actions(&body))
            .map_err(|e| format!("template parsing error: {e}"))?;
        Ok(Format { table, tmpl })
    }

    /// Renders one item.
    pub fn render(&self, v: &Value) -> Result<String, String> {
        self.tmpl
            .render(&Context::from(v.clone()))
            .map_err(|e| format!("template: {e}"))
    }

    /// Renders every item, one a line, with a header when the format is a table (the header
    /// is the same template over a context whose fields hold their column titles).
    pub fn render_all(&self, items: &[Value], header: Option<&Value>) -> Result<String, String> {
        let mut lines = Vec::new();
        if self.table {
            if let Some(h) = header {
                lines.push(self.render(h)?);
            }
        }
        for it in items {
            lines.push(self.render(it)?);
        }
        let mut out = String::new();
        if self.table {
            out = tabwrite(&lines);
        } else {
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
        Ok(out)
    }
}

/// Go's text/tabwriter as docker configures it (minwidth 10, padding 3, spaces): each cell of
/// a column padded to the widest, the last cell of a line left as is.
pub fn tabwrite(lines: &[String]) -> String {
    tabwrite_min(lines, 10)
}

/// Go's text/tabwriter with padding 3 and the given minimum cell width (`docker top` uses 20).
pub fn tabwrite_min(lines: &[String], min: usize) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            let w = c.chars().count();
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(w);
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                let width = (widths[i] + 3).max(min);
                line.push_str(&" ".repeat(width - c.chars().count()));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// go-units' HumanDuration, as `docker ps` prints CREATED and STATUS.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let m = s / 60;
    if m == 1 {
        return "About a minute".into();
    }
    if m < 60 {
        return format!("{m} minutes");
    }
    let h = (s as f64 / 3600.0).round() as i64;
    if h == 1 {
        return "About an hour".into();
    }
    if h < 48 {
        return format!("{h} hours");
    }
    if h < 24 * 7 * 2 {
        return format!("{} days", h / 24);
    }
    if h < 24 * 30 * 2 {
        return format!("{} weeks", h / 24 / 7);
    }
    if h < 24 * 365 * 2 {
        return format!("{} months", h / 24 / 30);
    }
    format!("{} years", h / 24 / 365)
}

/// go-units' HumanSizeWithPrecision(size, 3): decimal units, three significant digits.
pub fn human_size(size: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut s = size;
    let mut i = 0;
    while s >= 1000.0 && i < units.len() - 1 {
        s /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g3(s), units[i])
}

/// Go's `%.3g`: three significant digits, trailing zeros dropped.
fn go_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = v.abs().log10().floor() as i32 + 1;
    let decimals = (3 - digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        from_json(&json!({
            "Name": "/web",
            "State": {"Status": "running", "Pid": 42},
            "Args": ["a", "b"],
            "RepoDigests": ["busybox@sha256:1"],
            "NetworkSettings": {"Networks": {"n": {"IPAddress": "10.0.0.2"}}},
            "Config": {"Labels": {"k": "v"}}
        }))
    }

    fn render(f: &str) -> String {
        Format::parse(f)
            .expect("parses")
            .render(&ctx())
            .expect("renders")
    }

    #[test]
    fn fields_index_and_functions() {
        assert_eq!(render("{{.Name}} {{.State.Status}}"), "/web running");
        assert_eq!(render("{{index .RepoDigests 0}}"), "busybox@sha256:1");
        assert_eq!(
            render(r#"{{(index .NetworkSettings.Networks "n").IPAddress}}"#),
            "10.0.0.2"
        );
        assert_eq!(render(r#"{{join .Args ","}}"#), "a,b");
        assert_eq!(render("{{upper .State.Status}}"), "RUNNING");
        assert_eq!(render("{{lower \"ABC\"}}"), "abc");
        assert_eq!(render(r#"{{printf "%s-%d" .Name .State.Pid}}"#), "/web-42");
        assert_eq!(render("{{json .Config.Labels}}"), r#"{"k":"v"}"#);
        assert_eq!(render("{{json .Args}}"), r#"["a","b"]"#);
        assert_eq!(render("{{range .Args}}[{{.}}]{{end}}"), "[a][b]");
        assert_eq!(render("{{.State.Pid}}"), "42");
        assert_eq!(render("{{.Config.Labels}}"), "map[k:v]");
        assert_eq!(render("{{.Args}}"), "[a b]");
        assert_eq!(render("{{.Missing}}"), "<no value>");
        assert_eq!(render("{{- .Name -}}"), "/web");
        assert_eq!(
            render("{{if eq .State.Status \"running\"}}up{{else}}down{{end}}"),
            "up"
        );
        assert_eq!(render("{{$n := .Name}}{{$n}}"), "/web");
        assert_eq!(render("{{/* c */}}x"), "x");
        assert_eq!(render("{{.Args | json}}"), r#"["a","b"]"#);
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Format::parse("{{.Name").is_err());
        assert!(Format::parse("{{nosuchfunc .Name}}").is_err());
    }

    #[test]
    fn table_has_a_header_and_aligned_columns() {
        let f = Format::parse("table {{.ID}}\t{{.Names}}").expect("parses");
        let items = vec![
            from_json(&json!({"ID": "abc", "Names": "x"})),
            from_json(&json!({"ID": "abcdefghijklmnop", "Names": "y"})),
        ];
        let header = from_json(&json!({"ID": "CONTAINER ID", "Names": "NAMES"}));
        let out = f.render_all(&items, Some(&header)).expect("renders");
        assert_eq!(
            out,
            "CONTAINER ID       NAMES\nabc                x\nabcdefghijklmnop   y\n"
        );
    }

    #[test]
    fn tabwriter_minimum_width() {
        assert_eq!(
            tabwrite(&["A\tB".into(), "CC\tD".into()]),
            "A         B\nCC        D\n"
        );
    }

    #[test]
    fn durations_and_sizes_read_as_docker_prints_them() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(4_200_000.0), "4.2MB");
        assert_eq!(human_size(1234.0), "1.23kB");
        assert_eq!(human_size(999.0), "999B");
    }
}
