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

/// A row's key that templates reach only through a method (`.Label "k"` reads the labels
/// kept under it); `json` and Go's printing leave such keys out, as docker's rows have them
/// as methods, not fields.
pub const LABELS_KEY: &str = "\u{0}labels";
/// Marks a list command's row: docker's rows marshal themselves with Go's HTML escaping,
/// where `json` of a plain value does not escape.
const ROW_KEY: &str = "\u{0}row";
/// Marks the header row of a table: a method such as `.Label "k"` gives its argument there.
const HEADER_KEY: &str = "\u{0}header";

/// Marks an object that docker's CLI decodes into Go types (an inspect): there a
/// null list prints as `[]` and a null map as `map[]`, where a plain map's null is `<nil>`.
const TYPED_KEY: &str = "\u{0}typed";

/// Fields of an image's or a container's inspect that are Go slices or maps (by the last
/// name of the path); pointers such as PidsLimit stay `<nil>`.
const SLICE_FIELDS: &[&str] = &[
    "Cmd",
    "Entrypoint",
    "Env",
    "OnBuild",
    "Shell",
    "RepoTags",
    "RepoDigests",
    "Layers",
    "ExecIDs",
    "Binds",
    "CapAdd",
    "CapDrop",
    "DeviceCgroupRules",
    "DeviceRequests",
    "ExtraHosts",
    "GroupAdd",
    "Links",
    "SecurityOpt",
    "VolumesFrom",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "SecondaryIPAddresses",
    "SecondaryIPv6Addresses",
    "Aliases",
];
const MAP_FIELDS: &[&str] = &[
    "Volumes",
    "Labels",
    "ExposedPorts",
    "Tmpfs",
    "Sysctls",
    "StorageOpt",
    "PortBindings",
    "Ports",
    "DriverOpts",
];

/// `v` as docker's CLI sees a typed object (see TYPED_KEY).
pub fn typed(v: Value) -> Value {
    mark(&v, TYPED_KEY)
}

fn marked(v: &Value, key: &str) -> bool {
    matches!(v, Value::Object(m) | Value::Map(m) if m.contains_key(key))
}

fn mark(v: &Value, key: &str) -> Value {
    match v {
        Value::Map(m) => {
            let mut m = m.clone();
            m.insert(key.to_string(), Value::Bool(true));
            Value::Map(m)
        }
        other => other.clone(),
    }
}

fn hidden(k: &str) -> bool {
    k.starts_with('\u{0}')
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
            let sorted: std::collections::BTreeMap<_, _> = m
                .iter()
                .filter(|(k, _)| !hidden(k))
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect();
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

/// Go's json.Marshal text of `v`: map keys sorted, and `<`, `>`, `&`, U+2028 and U+2029
/// escaped as Go escapes them (they occur only inside strings, so replacing is safe).
pub fn go_json(v: &serde_json::Value) -> String {
    let sorted = to_json(&from_json(v));
    sorted
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    let v = one("json", args)?;
    if marked(v, ROW_KEY) {
        return Ok(Value::String(go_json(&to_json(v))));
    }
    Ok(Value::String(to_json(v).to_string()))
}

/// A list command's output for `--format SPEC` as docker prints it: no SPEC or `table` is
/// `default`, `json` is `{{json .}}` a line, anything else a Go template (`table ...` with a
/// header row from `header`, whose fields hold the column titles).
pub fn format_rows(
    spec: Option<&str>,
    default: &str,
    rows: &[serde_json::Value],
    header: &serde_json::Value,
) -> Result<String, String> {
    let spec = match spec {
        None | Some("") | Some("table") => default,
        Some("json") => "{{json .}}",
        Some(f) => f,
    };
    let f = Format::parse(spec)?;
    let items: Vec<Value> = rows.iter().map(from_json).collect();
    f.render_all(&items, Some(&from_json(header)))
}

fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(text(one("upper", args)?).to_uppercase()))
}

fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(text(one("lower", args)?).to_lowercase()))
}

fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    // Go's strings.Title: a letter after anything but a letter, digit or `_` starts a word
    let s = text(one("title", args)?);
    let mut out = String::new();
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_');
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

/// `.Label "key"`, docker's method on a row: the label's value, or empty.
fn f_label(args: &[Value]) -> Result<Value, FuncError> {
    let [row, key] = args else {
        return Err(FuncError::ExactlyXArgs("Label".into(), 1));
    };
    if marked(row, HEADER_KEY) {
        return Ok(Value::String(text(key)));
    }
    let labels = match row {
        Value::Object(m) | Value::Map(m) => m.get(LABELS_KEY),
        _ => None,
    };
    let v = match labels {
        Some(Value::Object(m) | Value::Map(m)) => m.get(&text(key)).map(text),
        _ => None,
    };
    Ok(Value::String(v.unwrap_or_default()))
}

/// Rewrites the method call `.Label ARG` on dot into `__label . ARG` (gtmpl has no methods
/// with arguments); text in string literals is left alone.
fn rewrite_label_method(action: &str) -> String {
    const CALL: &str = ".Label";
    let mut out = String::with_capacity(action.len() + 16);
    let mut in_str: Option<char> = None;
    let mut escaped = false;
    let mut i = 0;
    let bytes = action.as_bytes();
    while i < action.len() {
        let c = action[i..].chars().next().unwrap_or(' ');
        if let Some(q) = in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                in_str = None;
            }
            i += c.len_utf8();
            continue;
        }
        if c == '"' || c == '`' {
            in_str = Some(c);
        }
        let starts_call = action[i..].starts_with(CALL)
            && (i == 0 || matches!(bytes[i - 1], b' ' | b'(' | b'\t' | b'|'))
            && action[i + CALL.len()..].starts_with([' ', '\t']);
        if starts_call {
            out.push_str("__label .");
            i += CALL.len();
            continue;
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Go's `%v` of a value, as text/template prints what an action yields: `map[k:v]`,
/// `[a b]`, `<nil>` (gtmpl would print Rust's debug form).
fn go_print(v: &Value) -> String {
    match v {
        Value::NoValue => "<no value>".into(),
        Value::Nil => "<nil>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) | Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().filter(|k| !hidden(k)).collect();
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

/// `__goprint_field $ KIND VALUE`: a field that is a Go slice or map in a typed object
/// prints as an empty one when null.
fn f_goprint_field(args: &[Value]) -> Result<Value, FuncError> {
    let [root, kind, v] = args else {
        return Err(FuncError::ExactlyXArgs("goprint_field".into(), 3));
    };
    if matches!(v, Value::Nil) && marked(root, TYPED_KEY) {
        let empty = if text(kind) == "map" { "map[]" } else { "[]" };
        return Ok(Value::String(empty.into()));
    }
    Ok(Value::String(go_print(v)))
}

/// The kind of Go value a plain field chain such as `.Config.Cmd` names, if it is a slice
/// or a map of a typed object.
fn field_kind(body: &str) -> Option<&'static str> {
    let b = body.trim();
    let chain = b.starts_with('.')
        && b.len() > 1
        && b[1..]
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
    if !chain {
        return None;
    }
    let last = b.rsplit('.').next().unwrap_or("");
    if SLICE_FIELDS.contains(&last) {
        Some("slice")
    } else if MAP_FIELDS.contains(&last) {
        Some("map")
    } else {
        None
    }
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
        let rewritten = rewrite_label_method(&after[..end]);
        let inner = rewritten.as_str();
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
        if plain && field_kind(body).is_some() {
            let kind = field_kind(body).unwrap_or("slice");
            out.push_str(&format!(
                "{{{{{lead}__goprint_field $ \"{kind}\" ({}){trail}}}}}",
                body.trim()
            ));
        } else if plain {
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
        tmpl.add_func("__label", f_label);
        tmpl.add_func("__goprint_field", f_goprint_field);
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
                lines.push(self.render(&mark(h, HEADER_KEY))?);
            }
        }
        for it in items {
            lines.push(self.render(&mark(it, ROW_KEY))?);
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
    human_size_precision(size, 3)
}

/// go-units' HumanSizeWithPrecision: decimal units, `digits` significant digits (`%.*g`).
pub fn human_size_precision(size: f64, digits: i32) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    scaled(size, 1000.0, &units, digits)
}

/// go-units' way with sizes: `size` in the largest of `units` (each `base` times the one
/// before) that leaves at least 1, with `digits` significant digits.
pub fn scaled(size: f64, base: f64, units: &[&str], digits: i32) -> String {
    let mut s = size;
    let mut i = 0;
    while s >= base && i < units.len() - 1 {
        s /= base;
        i += 1;
    }
    format!("{}{}", go_g(s, digits), units[i])
}

/// Go's `%.Ng`: N significant digits, trailing zeros dropped.
fn go_g(v: f64, n: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = v.abs().log10().floor() as i32 + 1;
    let decimals = (n - digits).max(0) as usize;
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
        assert_eq!(render(r#"{{title "foo-bar baz_qux"}}"#), "Foo-Bar Baz_qux");
        assert_eq!(render(r#"{{json "<none>"}}"#), r#""<none>""#);
        assert_eq!(
            go_json(&json!({"b": "<none> & x", "a": 1})),
            r#"{"a":1,"b":"\u003cnone\u003e \u0026 x"}"#
        );
        assert_eq!(render(r#"[{{pad "x" 1 2}}]"#), "[ x  ]");
        assert_eq!(render(r#"{{truncate "abcdef" 3}}"#), "abc");
        assert_eq!(render(r#"{{join (split "a=b,c" ",") "|"}}"#), "a=b|c");
    }

    #[test]
    fn label_method_reads_the_hidden_labels() {
        let mut m = HashMap::new();
        m.insert("Labels".to_string(), Value::String("a=1,b.c=2".into()));
        let mut labels = HashMap::new();
        labels.insert("a".to_string(), Value::String("1".into()));
        labels.insert("b.c".to_string(), Value::String("2".into()));
        m.insert(LABELS_KEY.to_string(), Value::Map(labels));
        let row = Value::Map(m);
        let r = |f: &str| {
            Format::parse(f)
                .expect("parses")
                .render(&row)
                .expect("renders")
        };
        assert_eq!(r(r#"{{.Label "b.c"}}"#), "2");
        assert_eq!(r(r#"{{.Label "none"}}|{{.Labels}}"#), "|a=1,b.c=2");
        assert_eq!(r(r#"{{if eq (.Label "a") "1"}}one{{end}}"#), "one");
        assert_eq!(r(r#"{{printf ".Label %s" "x"}}"#), ".Label x");
        assert_eq!(r("{{json .}}"), r#"{"Labels":"a=1,b.c=2"}"#);
    }

    #[test]
    fn null_lists_and_maps_of_typed_objects_print_empty() {
        let v = from_json(&json!({"Config": {"Cmd": null, "Labels": null, "User": null}}));
        let f = Format::parse(
            "{{.Config.Cmd}}|{{.Config.Labels}}|{{.Config.User}}|{{json .Config.Cmd}}",
        )
        .expect("parses");
        assert_eq!(
            f.render(&typed(v.clone())).expect("renders"),
            "[]|map[]|<nil>|null"
        );
        assert_eq!(f.render(&v).expect("renders"), "<nil>|<nil>|<nil>|null");
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
        assert_eq!(human_size_precision(1_982_464.0, 4), "1.982MB");
    }
}
