//! What `docker images`, `image prune` and `history` ask of the store beyond lookups: Docker's
//! image filters (dangling, reference, label, before, since, until) and an image's history
//! with the size of each layer. Shared by the daemon's API and anything else that lists.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::manifest::ContainerConfig;

use crate::error::{Error, Result};
use crate::snapshot::Snapshotter;
use crate::store::{Image, ImageStore};

/// Docker's glob (Go's `path.Match`) for reference filters: `*` and `?` within a segment.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    fn rec(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                rec(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && rec(p, &s[1..]))
            }
            (Some(b'?'), Some(c)) if *c != b'/' => rec(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &s[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), s.as_bytes())
}

/// `until=` takes a duration before now (`24h`, `90m`, `30s`) or a timestamp (RFC 3339 or
/// Unix seconds), as Docker's prune filters do.
pub fn parse_until(v: &str) -> Result<DateTime<Utc>> {
    let bad = |why: &str| Error::InvalidArgument(format!("invalid until {v:?}: {why}"));
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = v.parse::<i64>() {
        return DateTime::from_timestamp(secs, 0).ok_or_else(|| bad("timestamp out of range"));
    }
    let mut total = 0i64;
    let mut num = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad("not a duration"))?;
        num.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad("use h, m or s")),
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !num.is_empty() {
        return Err(bad("missing unit"));
    }
    Ok(Utc::now() - chrono::Duration::seconds(total))
}

/// Docker's image filters, parsed once and matched against each image.
#[derive(Debug, Clone, Default)]
pub struct ImageFilters {
    pub reference: Vec<String>,
    pub dangling: Option<bool>,
    pub before: Option<DateTime<Utc>>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub labels: Vec<(String, Option<String>)>,
}

impl ImageFilters {
    /// From the API's `filters` map (`{"dangling": ["true"], "label": ["a=b"]}`); `before`
    /// and `since` name images, resolved in `store`. An unknown filter is refused, as dockerd.
    pub fn parse(store: &ImageStore, raw: &HashMap<String, Vec<String>>) -> Result<Self> {
        let mut f = ImageFilters::default();
        for (k, vs) in raw {
            for v in vs {
                match k.as_str() {
                    "reference" => f.reference.push(v.clone()),
                    "dangling" => {
                        f.dangling = Some(match v.to_ascii_lowercase().as_str() {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            _ => {
                                return Err(Error::InvalidArgument(format!(
                                    "invalid filter 'dangling={v}'"
                                )))
                            }
                        })
                    }
                    "before" => f.before = store.resolve(v)?.created,
                    "since" => f.since = store.resolve(v)?.created,
                    "until" => f.until = Some(parse_until(v)?),
                    "label" => f.labels.push(match v.split_once('=') {
                        Some((a, b)) => (a.to_string(), Some(b.to_string())),
                        None => (v.clone(), None),
                    }),
                    other => {
                        return Err(Error::InvalidArgument(format!("invalid filter '{other}'")))
                    }
                }
            }
        }
        Ok(f)
    }

    /// Whether `img` passes every filter but `reference` (which selects tags, see
    /// [`ImageFilters::reference_matches`]).
    pub fn matches(&self, img: &Image) -> bool {
        if let Some(d) = self.dangling {
            if d != img.repo_tags.is_empty() {
                return false;
            }
        }
        if let (Some(b), Some(c)) = (self.before, img.created) {
            if c >= b {
                return false;
            }
        }
        if let (Some(s), Some(c)) = (self.since, img.created) {
            if c <= s {
                return false;
            }
        }
        if let (Some(u), Some(c)) = (self.until, img.created) {
            if c >= u {
                return false;
            }
        }
        let labels = img
            .config
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        self.labels.iter().all(|(k, v)| match (labels.get(k), v) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            _ => false,
        })
    }

    /// Whether the tag `repository:tag` passes the reference filters (any of them).
    pub fn reference_matches(&self, repository: &str, tag: &str) -> bool {
        if self.reference.is_empty() {
            return true;
        }
        let with_tag = format!("{repository}:{tag}");
        self.reference
            .iter()
            .any(|p| glob_match(p, repository) || glob_match(p, &with_tag))
    }

    /// Whether any tag of `img` passes the reference filters (an untagged image passes only
    /// when there are none).
    pub fn any_tag_matches(&self, img: &Image) -> bool {
        self.reference.is_empty()
            || img.repo_tags.iter().any(|t| {
                self.reference_matches(&t.familiar_name(), t.tag.as_deref().unwrap_or("latest"))
            })
    }
}

/// One line of an image's history, newest first as Docker shows it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub created: Option<DateTime<Utc>>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    /// Whether the entry added a layer (Docker lists `<missing>` as the ID of all but the top).
    pub empty_layer: bool,
}

/// The history of `img`: its config's history entries (each that is not `empty_layer`
/// consuming the next layer, bottom first, for its size), or one entry per layer when the
/// config has none. Newest first.
pub fn history(store: &ImageStore, img: &Image) -> Vec<HistoryEntry> {
    let sizes: Vec<u64> = img
        .chain_ids
        .iter()
        .map(|c| store.snapshotter().recorded_size(c.as_str()).unwrap_or(0))
        .collect();
    let hist = img.config.history.clone().unwrap_or_default();
    let mut entries = Vec::new();
    if hist.is_empty() {
        for s in &sizes {
            entries.push(HistoryEntry {
                created: img.created,
                created_by: String::new(),
                size: *s,
                comment: String::new(),
                empty_layer: false,
            });
        }
    } else {
        let mut li = 0;
        for h in &hist {
            let empty = h.empty_layer.unwrap_or(false);
            let size = if empty {
                0
            } else {
                let s = sizes.get(li).copied().unwrap_or(0);
                li += 1;
                s
            };
            entries.push(HistoryEntry {
                created: h
                    .created
                    .as_deref()
                    .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                    .map(|t| t.with_timezone(&Utc)),
                created_by: h.created_by.clone().unwrap_or_default(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
                empty_layer: empty,
            });
        }
    }
    entries.reverse();
    entries
}

/// An image config's `config` in Docker's shape: every field Docker prints, in its order,
/// with Docker's nulls.
pub fn docker_config(c: Option<&ContainerConfig>) -> Value {
    let c = c.cloned().unwrap_or_default();
    let mut m = Map::new();
    let d = |v: Option<Value>| v.unwrap_or(Value::Null);
    m.insert("Hostname".into(), json!(""));
    m.insert("Domainname".into(), json!(""));
    m.insert("User".into(), json!(c.user.clone().unwrap_or_default()));
    m.insert("AttachStdin".into(), json!(false));
    m.insert("AttachStdout".into(), json!(false));
    m.insert("AttachStderr".into(), json!(false));
    if let Some(p) = &c.exposed_ports {
        m.insert("ExposedPorts".into(), json!(p));
    }
    m.insert("Tty".into(), json!(false));
    m.insert("OpenStdin".into(), json!(false));
    m.insert("StdinOnce".into(), json!(false));
    m.insert("Env".into(), d(c.env.as_ref().map(|e| json!(e))));
    m.insert("Cmd".into(), d(c.cmd.as_ref().map(|e| json!(e))));
    m.insert("Image".into(), json!(""));
    m.insert("Volumes".into(), d(c.volumes.as_ref().map(|e| json!(e))));
    m.insert(
        "WorkingDir".into(),
        json!(c.working_dir.clone().unwrap_or_default()),
    );
    m.insert(
        "Entrypoint".into(),
        d(c.entrypoint.as_ref().map(|e| json!(e))),
    );
    m.insert("OnBuild".into(), Value::Null);
    m.insert("Labels".into(), d(c.labels.as_ref().map(|e| json!(e))));
    if let Some(s) = &c.stop_signal {
        m.insert("StopSignal".into(), json!(s));
    }
    // fields Docker knows that berth does not model (Healthcheck, Shell, ...) pass through
    for (k, v) in &c.extra {
        m.entry(k.clone()).or_insert(v.clone());
    }
    Value::Object(m)
}

/// `docker image inspect`'s object for `img` (what `GET /images/{name}/json` serves).
pub fn inspect(store: &ImageStore, img: &Image) -> Value {
    let top = img.top_snapshot();
    let graph = match &top {
        Some(t) => {
            let dirs = store.snapshotter().chain_dirs(t).unwrap_or_default();
            let mut data = Map::new();
            if let Some((upper, lower)) = dirs.split_first() {
                if !lower.is_empty() {
                    data.insert(
                        "LowerDir".into(),
                        json!(lower
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(":")),
                    );
                }
                data.insert("UpperDir".into(), json!(upper.display().to_string()));
            }
            json!({"Data": data, "Name": "overlay"})
        }
        None => json!({"Data": null, "Name": "overlay"}),
    };
    let last_tag = store
        .tag_history(None)
        .ok()
        .and_then(|h| {
            h.into_iter()
                .rev()
                .find(|(_, id, action, _)| id == img.id.as_str() && action == "tag")
                .map(|x| x.3)
        })
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    let mut v = json!({
        "Id": img.id.to_string(),
        "RepoTags": img.repo_tags.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
        "RepoDigests": img.repo_digests.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
        "Parent": "",
        "Comment": img.config.history.as_ref().and_then(|h| h.last()).and_then(|h| h.comment.clone()).unwrap_or_default(),
        "Created": img.config.created.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "DockerVersion": img.config.extra.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": img.config.author.clone().unwrap_or_default(),
        "Config": docker_config(img.config.config.as_ref()),
        "Architecture": img.config.architecture,
        "Os": img.config.os,
        "Size": img.size,
        "GraphDriver": graph,
        "RootFS": {"Type": "layers", "Layers": img.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        "Metadata": {"LastTagTime": last_tag},
        "Descriptor": {"mediaType": img.manifest_media_type, "digest": img.manifest_digest.to_string(),
            "size": store.content().size(&img.manifest_digest).unwrap_or(0)},
    });
    if let (Some(variant), Some(m)) = (&img.config.variant, v.as_object_mut()) {
        m.insert("Variant".into(), json!(variant));
    }
    v
}

/// Bytes of blobs and layer snapshots in the store (what a prune reclaimed is the difference).
pub fn usage(store: &ImageStore) -> u64 {
    let blobs: u64 = store
        .content()
        .list()
        .unwrap_or_default()
        .iter()
        .filter_map(|d| store.content().size(d).ok())
        .sum();
    let snaps: u64 = store
        .snapshotter()
        .list()
        .unwrap_or_default()
        .iter()
        .filter_map(|i| store.snapshotter().recorded_size(&i.key).ok())
        .sum();
    blobs + snaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("busy*", "library/busybox"));
        assert!(glob_match("*/x", "localhost:5000/x"));
    }

    #[test]
    fn until_forms() {
        assert!(parse_until("24h").is_ok());
        assert!(parse_until("1700000000").is_ok());
        assert!(parse_until("2024-01-01T00:00:00Z").is_ok());
        assert!(parse_until("5").is_ok());
        assert!(parse_until("5x").is_err());
        assert!(parse_until("h").is_err());
    }
}
