//! The shape every docker `inspect` shares (container, volume, network): each name looked up
//! in turn, a missing one reported on stderr as it comes, then the objects found printed
//! together (one JSON document, or one `--format` line each) and exit code 1 if any was missing.

use std::future::Future;

use super::format::Format;
use super::{CliError, Result};

/// One name looked up: the object, or the line that reports why there is none. An `Err` of
/// the outer `Result` ends the whole command, as a failed request does in docker.
pub(super) type Found<T> = std::result::Result<T, String>;

/// How the objects found are printed.
pub(super) struct Print<V, J> {
    /// An object as the value a `--format` template sees.
    pub template: V,
    /// All of them as JSON, when there is no template (`--format ""` or `json` included).
    pub json: J,
}

/// Runs an inspect: `format` is the `--format` flag as given; "" and "json" mean JSON, which
/// `print.json` writes (some commands treat "json" apart).
pub(super) async fn inspect<T, L, Fut, V, J>(
    names: &[String],
    format: Option<&str>,
    mut lookup: L,
    print: Print<V, J>,
) -> Result<i32>
where
    L: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Found<T>>>,
    V: Fn(&T) -> Result<gtmpl_value::Value>,
    J: FnOnce(&[T]) -> Result<String>,
{
    // a bad template is refused before anything is asked of the daemon
    let fmt = format
        .filter(|f| !f.is_empty() && *f != "json")
        .map(Format::parse)
        .transpose()
        .map_err(CliError::Usage)?;
    let mut items = Vec::new();
    let mut failed = false;
    for n in names {
        match lookup(n.clone()).await? {
            Ok(v) => items.push(v),
            Err(line) => {
                eprintln!("{line}");
                failed = true;
            }
        }
    }
    match fmt {
        Some(f) => {
            for it in &items {
                let out = f.render(&(print.template)(it)?).map_err(CliError::Usage)?;
                outln!("{out}");
            }
        }
        None => outln!("{}", (print.json)(&items)?),
    }
    if failed {
        return Err(CliError::Reported { code: 1 });
    }
    Ok(0)
}

/// An object's JSON as the daemon sent it, parsed for a template; `what` names the command.
pub(super) fn parse(raw: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str(raw).map_err(|e| CliError::Io {
        op: format!("parse {what} response"),
        source: e.into(),
    })
}

/// The objects' JSON as the daemon sent it, in one array indented as `docker inspect` does.
pub(super) fn indented(raw: &[String]) -> String {
    super::raw::indent_json(&format!("[{}]", raw.join(",")))
}
