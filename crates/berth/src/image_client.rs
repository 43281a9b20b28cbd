//! The image and registry commands as clients of the daemon's API (through bollard, and by
//! hand where bollard has no call: `/auth`, and inspect printed as the daemon sent it):
//! images, tag, rmi, history, inspect, prune, save, load, import, pull, push, login. Output
//! is docker's; progress bars on pull, push and load when stdout is a terminal. The formats
//! (columns, templates, sizes) are image_cmd.rs's.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptions, ListImagesOptions, PruneImagesOptions,
    RemoveImageOptions, TagImageOptions,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::cli::{format, CliError, Client};
use crate::image_cmd::{
    created_since, human_size, HistoryArgs, ImagesArgs, ImportArgs, InspectArgs, LoadArgs,
    PruneArgs, RmiArgs, SaveArgs, TagArgs,
};

/// The column titles of docker's image tables (`id` for history's ID column).
fn headers_json(id: Option<&str>) -> Value {
    json!({
        "Containers": "CONTAINERS",
        "CreatedAt": "CREATED AT",
        "CreatedSince": "CREATED",
        "Digest": "DIGEST",
        "ID": id.unwrap_or("IMAGE ID"),
        "Repository": "REPOSITORY",
        "SharedSize": "SHARED SIZE",
        "Size": "SIZE",
        "Tag": "TAG",
        "UniqueSize": "UNIQUE SIZE",
        "VirtualSize": "SIZE",
        "CreatedBy": "CREATED BY",
        "Comment": "COMMENT",
    })
}

/// An error of the daemon as docker prints it.
fn daemon_err(c: &Client, op: &str, e: bollard::errors::Error) -> anyhow::Error {
    match e {
        bollard::errors::Error::DockerStreamError { error } => {
            anyhow!("{error}")
        }
        e => anyhow!("{}", c.err(op, e)),
    }
}

/// `name[:tag]` → (name, tag): the tag is after the last `:` that follows the last `/`.
fn split_tag(s: &str) -> (String, Option<String>) {
    let slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
    match s[slash..].rfind(':') {
        Some(i) => (
            s[..slash + i].to_string(),
            Some(s[slash + i + 1..].to_string()),
        ),
        None => (s.to_string(), None),
    }
}

fn filters_of(raw: &[String]) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for item in raw {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("bad format of filter (expected name=value): {item}"))?;
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(m)
}

// ---- images ----

struct Row {
    id: String,
    created: Option<DateTime<Utc>>,
    size: u64,
    repository: String,
    tag: String,
    digest: String,
}

fn rows_of(s: &bollard::models::ImageSummary) -> Vec<Row> {
    let created = DateTime::from_timestamp(s.created, 0).filter(|_| s.created > 0);
    let size = u64::try_from(s.size).unwrap_or(0);
    let row = |repository: String, tag: String, digest: String| Row {
        id: s.id.clone(),
        created,
        size,
        repository,
        tag,
        digest,
    };
    let digest_for = |name: &str| {
        s.repo_digests
            .iter()
            .find_map(|d| {
                d.split_once('@')
                    .filter(|(n, _)| *n == name)
                    .map(|(_, d)| d.to_string())
            })
            .unwrap_or_else(|| "<none>".into())
    };
    let mut tags = s.repo_tags.clone();
    tags.sort();
    let mut rows = Vec::new();
    for t in tags.iter().filter(|t| *t != "<none>:<none>") {
        let (name, tag) = split_tag(t);
        rows.push(row(
            name.clone(),
            tag.unwrap_or_else(|| "latest".into()),
            digest_for(&name),
        ));
    }
    // repositories known only by digest
    for d in &s.repo_digests {
        if let Some((name, digest)) = d.split_once('@') {
            if !rows.iter().any(|r| r.repository == name) {
                rows.push(row(name.to_string(), "<none>".into(), digest.to_string()));
            }
        }
    }
    if rows.is_empty() {
        rows.push(row("<none>".into(), "<none>".into(), "<none>".into()));
    }
    rows
}

fn short(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

fn row_value(r: &Row, no_trunc: bool) -> Value {
    let created_at = r
        .created
        .map(|t| t.format("%Y-%m-%d %H:%M:%S %z UTC").to_string())
        .unwrap_or_default();
    json!({
        "Containers": "N/A",
        "CreatedAt": created_at,
        "CreatedSince": created_since(r.created),
        "Digest": r.digest,
        "ID": short(&r.id, no_trunc),
        "Repository": r.repository,
        "SharedSize": "N/A",
        "Size": human_size(r.size),
        "Tag": r.tag,
        "UniqueSize": "N/A",
        // docker prints this one with four significant digits
        "VirtualSize": format::human_size_precision(r.size as f64, 4),
    })
}

pub async fn images(c: &Client, a: &ImagesArgs) -> anyhow::Result<i32> {
    let filters = filters_of(&a.filter)?;
    let reference = filters.get("reference").cloned().unwrap_or_default();
    let mut list = c
        .docker
        .list_images(Some(ListImagesOptions {
            all: a.all,
            filters: Some(filters),
            digests: a.digests,
            ..Default::default()
        }))
        .await
        .map_err(|e| daemon_err(c, "list images", e))?;
    list.sort_by_key(|x| std::cmp::Reverse(x.created));
    let positional = a.repository.as_deref().map(split_tag);
    let mut rows = Vec::new();
    for s in &list {
        for r in rows_of(s) {
            if !reference.is_empty()
                && (r.repository == "<none>"
                    || !reference.iter().any(|p| {
                        berth_image::query::glob_match(p, &r.repository)
                            || berth_image::query::glob_match(
                                p,
                                &format!("{}:{}", r.repository, r.tag),
                            )
                    }))
            {
                continue;
            }
            if let Some((name, tag)) = &positional {
                let name = name.trim_start_matches("docker.io/library/");
                if r.repository != name || tag.as_ref().is_some_and(|t| *t != r.tag) {
                    continue;
                }
            }
            rows.push(r);
        }
    }
    let mut out = io::stdout().lock();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            let id = short(&r.id, a.no_trunc);
            if seen.insert(id.clone()) {
                writeln!(out, "{id}")?;
            }
        }
        return Ok(0);
    }
    let values: Vec<Value> = rows.iter().map(|r| row_value(r, a.no_trunc)).collect();
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let text = format::format_rows(a.format.as_deref(), default, &values, &headers_json(None))
        .map_err(|e| anyhow!("{e}"))?;
    write!(out, "{text}")?;
    Ok(0)
}

// ---- tag, rmi ----

pub async fn tag(c: &Client, a: &TagArgs) -> anyhow::Result<i32> {
    let (repo, tag) = split_tag(&a.target);
    c.docker
        .tag_image(
            &a.source,
            Some(TagImageOptions {
                repo: Some(repo),
                tag,
            }),
        )
        .await
        .map_err(|e| daemon_err(c, "tag", e))?;
    Ok(0)
}

pub async fn rmi(c: &Client, a: &RmiArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &a.images {
        let r = c
            .docker
            .remove_image(
                name,
                Some(RemoveImageOptions {
                    force: a.force,
                    noprune: a.no_prune,
                    ..Default::default()
                }),
                None,
            )
            .await;
        match r {
            Ok(items) => {
                let mut out = io::stdout().lock();
                for i in items {
                    if let Some(u) = i.untagged {
                        writeln!(out, "Untagged: {u}")?;
                    }
                    if let Some(d) = i.deleted {
                        writeln!(out, "Deleted: {d}")?;
                    }
                }
            }
            Err(e) => {
                eprintln!("{}", daemon_err(c, "remove image", e));
                code = 1;
            }
        }
    }
    Ok(code)
}

// ---- history, inspect ----

pub async fn history(c: &Client, a: &HistoryArgs) -> anyhow::Result<i32> {
    let items = c
        .docker
        .image_history(&a.image)
        .await
        .map_err(|e| daemon_err(c, "history", e))?;
    let mut out = io::stdout().lock();
    let id_of = |id: &str| {
        if id == "<missing>" {
            id.to_string()
        } else {
            short(id, a.no_trunc)
        }
    };
    if a.quiet {
        for h in &items {
            writeln!(out, "{}", id_of(&h.id))?;
        }
        return Ok(0);
    }
    let values: Vec<Value> = items
        .iter()
        .map(|h| {
            let t = DateTime::from_timestamp(h.created, 0).filter(|_| h.created > 0);
            let created_by = if a.no_trunc || h.created_by.chars().count() <= 45 {
                h.created_by.clone()
            } else {
                format!("{}…", h.created_by.chars().take(44).collect::<String>())
            };
            let created = if a.human {
                created_since(t)
            } else {
                t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
            };
            let size = u64::try_from(h.size).unwrap_or(0);
            let size = if a.human {
                human_size(size)
            } else {
                size.to_string()
            };
            json!({"ID": id_of(&h.id), "CreatedSince": created,
                "CreatedAt": t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default(),
                "CreatedBy": created_by, "Size": size, "Comment": h.comment})
        })
        .collect();
    let default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    let text = format::format_rows(
        a.format.as_deref(),
        default,
        &values,
        &headers_json(Some("IMAGE")),
    )
    .map_err(|e| anyhow!("{e}"))?;
    write!(out, "{text}")?;
    Ok(0)
}

/// One request over the daemon's socket, by hand (Connection: close, so the body ends with
/// the connection); returns the status and the (de-chunked) body.
pub fn raw_request(
    c: &Client,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = c.endpoint.connect_sync().map_err(|_| {
        anyhow!(
            "{}",
            CliError::Connect {
                host: c.host.clone()
            }
        )
    })?;
    write!(
        s,
        "{method} /v{}{path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        c.api_version,
        body.len()
    )
    .and_then(|_| s.write_all(body))
    .with_context(|| format!("{method} {path}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("{method} {path}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path}: the daemon's answer has no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let rest = raw[split + 4..].to_vec();
    if !head.contains("transfer-encoding: chunked") {
        return Ok((status, rest));
    }
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(nl) = rest[i..].windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&rest[i..i + nl]).trim(), 16)
            .map_err(|_| anyhow!("{method} {path}: bad chunk size"))?;
        if n == 0 {
            break;
        }
        let start = i + nl + 2;
        let end = (start + n).min(rest.len());
        out.extend_from_slice(&rest[start..end]);
        i = end + 2;
        if i >= rest.len() {
            break;
        }
    }
    Ok((status, out))
}

/// A request whose answer is a stream of JSON lines, each given to `each` as it arrives
/// (HTTP/1.0, so the body is not chunked and ends with the connection). A status other than
/// 200 returns the body as the error.
fn stream_lines(
    c: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    mut each: impl FnMut(&Value),
) -> anyhow::Result<Result<(), Vec<u8>>> {
    use std::io::BufRead;
    let mut s = c.endpoint.connect_sync().map_err(|_| {
        anyhow!(
            "{}",
            CliError::Connect {
                host: c.host.clone()
            }
        )
    })?;
    let mut head = format!(
        "{method} /v{}{path} HTTP/1.0\r\nHost: berth\r\nContent-Length: 0\r\n",
        c.api_version
    );
    for (k, v) in headers.iter().filter(|(_, v)| !v.is_empty()) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .with_context(|| format!("{method} {path}"))?;
    let mut r = io::BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)
        .with_context(|| format!("{method} {path}"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    loop {
        let mut h = String::new();
        let n = r
            .read_line(&mut h)
            .with_context(|| format!("{method} {path}"))?;
        if n == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    if status != 200 {
        let mut body = Vec::new();
        r.read_to_end(&mut body)
            .with_context(|| format!("{method} {path}"))?;
        return Ok(Err(body));
    }
    for line in r.lines() {
        let line = line.with_context(|| format!("{method} {path}"))?;
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            each(&v);
        }
    }
    Ok(Ok(()))
}

fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

fn path_escape(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/@".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

pub async fn inspect(c: &Client, a: &InspectArgs) -> anyhow::Result<i32> {
    let mut values = Vec::new();
    let mut raws = Vec::new();
    let mut code = 0;
    for n in &a.images {
        let (status, body) =
            raw_request(c, "GET", &format!("/images/{}/json", path_escape(n)), b"")?;
        if status == 200 {
            values.push(serde_json::from_slice::<Value>(&body).context("the daemon's inspect")?);
            raws.push(String::from_utf8_lossy(&body).trim().to_string());
        } else {
            eprintln!("Error: {}", message_of(&body));
            code = 1;
        }
    }
    let mut out = io::stdout().lock();
    match a.format.as_deref().filter(|f| !f.is_empty()) {
        // docker 23+: the array on one line, keys sorted as Go prints them
        Some("json") => {
            let parts: Vec<String> = values.iter().map(format::go_json).collect();
            writeln!(out, "[{}]", parts.join(","))?;
        }
        Some(f) => {
            let f = format::Format::parse(f).map_err(|e| anyhow!("{e}"))?;
            for v in &values {
                let line = f
                    // docker's CLI decodes an image into Go types (null lists print as `[]`)
                    .render(&format::typed(format::from_json(v)))
                    .map_err(|e| anyhow!("{e}"))?;
                writeln!(out, "{line}")?;
            }
        }
        // the daemon's JSON as it sent it, indented as docker indents it
        None => writeln!(
            out,
            "{}",
            crate::cli::raw::indent_json(&format!("[{}]", raws.join(",")))
        )?,
    }
    Ok(code)
}

// ---- prune ----

pub async fn prune(c: &Client, a: &PruneArgs) -> anyhow::Result<i32> {
    let msg = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !crate::image_cmd::confirm(msg)? {
        return Ok(0);
    }
    let mut filters = filters_of(&a.filter)?;
    if a.all {
        filters.insert("dangling".into(), vec!["false".into()]);
    }
    let r = c
        .docker
        .prune_images(Some(PruneImagesOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| daemon_err(c, "prune", e))?;
    let mut out = io::stdout().lock();
    let deleted = r.images_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for i in &deleted {
            if let Some(u) = &i.untagged {
                writeln!(out, "untagged: {u}")?;
            }
            if let Some(d) = &i.deleted {
                writeln!(out, "deleted: {d}")?;
            }
        }
        writeln!(out)?;
    }
    let reclaimed = u64::try_from(r.space_reclaimed.unwrap_or(0)).unwrap_or(0);
    writeln!(out, "Total reclaimed space: {}", human_size(reclaimed))?;
    Ok(0)
}

// ---- save, load, import ----

pub async fn save(c: &Client, a: &SaveArgs) -> anyhow::Result<i32> {
    let names: Vec<&str> = a.images.iter().map(String::as_str).collect();
    let mut stream = c.docker.export_images(&names);
    // The archive lands under a temporary name (or directory) and is renamed once complete:
    // no half archive is left behind.
    enum Sink {
        File(std::path::PathBuf, io::BufWriter<std::fs::File>),
        Stdout(io::BufWriter<io::Stdout>),
        Layout(std::path::PathBuf, tempfile::NamedTempFile),
    }
    let tmp_beside = |path: &Path| {
        path.with_file_name(format!(
            ".{}.berth-save.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "archive".into())
        ))
    };
    let mut sink = if let Some(dir) = &a.oci_layout {
        Sink::Layout(
            dir.clone(),
            tempfile::NamedTempFile::new().context("create a temporary file for the archive")?,
        )
    } else if let Some(path) = &a.output {
        let tmp = tmp_beside(path);
        let f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        Sink::File(tmp, io::BufWriter::new(f))
    } else {
        if io::stdout().is_terminal() {
            bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        }
        Sink::Stdout(io::BufWriter::new(io::stdout()))
    };
    let res: anyhow::Result<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| daemon_err(c, "save", e))?;
            match &mut sink {
                Sink::File(_, w) => w.write_all(&chunk)?,
                Sink::Stdout(w) => w.write_all(&chunk)?,
                Sink::Layout(_, f) => f.write_all(&chunk)?,
            }
        }
        Ok(())
    }
    .await;
    match sink {
        Sink::File(tmp, w) => {
            let done = res.and_then(|_| {
                let f = w
                    .into_inner()
                    .map_err(|e| anyhow!("flush {}: {}", tmp.display(), e.error()))?;
                f.sync_all()?;
                Ok(())
            });
            if let Err(e) = done {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            if let Some(path) = &a.output {
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("rename to {}", path.display()))?;
            }
        }
        Sink::Stdout(mut w) => {
            res?;
            w.flush()?;
        }
        Sink::Layout(dir, f) => {
            res?;
            // berth's archives are OCI layouts too (oci-layout, index.json, blobs/): the
            // directory is the archive unpacked.
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let file = f.reopen().context("reopen the archive")?;
            let mut ar = tar::Archive::new(io::BufReader::new(file));
            for e in ar.entries().context("read the archive")? {
                let mut e = e.context("read the archive")?;
                let p = e.path().context("read the archive")?.into_owned();
                let top = p.components().next().map(|c| c.as_os_str().to_owned());
                let keep = matches!(
                    top.as_deref().and_then(|s| s.to_str()),
                    Some("blobs" | "oci-layout" | "index.json")
                );
                if keep {
                    e.unpack_in(&dir)
                        .with_context(|| format!("write {} in {}", p.display(), dir.display()))?;
                }
            }
        }
    }
    Ok(0)
}

/// A bar of bytes sent (load) when stdout is a terminal; hidden otherwise.
fn upload_bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::no_length(),
    };
    if io::stdout().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stdout());
        if let Ok(style) = ProgressStyle::with_template(
            "Loading layer [{bar:50}] {decimal_bytes:>9}/{decimal_total_bytes}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// A reader as a stream of chunks for a request body, counting on `bar`.
fn body_of(
    mut r: Box<dyn Read + Send>,
    bar: ProgressBar,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(4);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    bar.inc(n as u64);
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

/// An OCI layout directory as a tar (the daemon loads archives), refusing what the layout
/// must not hold: a symbolic link or anything but a regular file could make the reader
/// follow it out of the directory or block on it.
fn tar_layout(dir: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let tmp = tempfile::NamedTempFile::new().context("create a temporary file")?;
    let mut b = tar::Builder::new(io::BufWriter::new(tmp.reopen()?));
    b.follow_symlinks(false);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .with_context(|| format!("read {}", d.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("read {}", d.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap_or(&p).to_path_buf();
            let md =
                std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
            if md.file_type().is_symlink() {
                bail!(
                    "{}: a symbolic link in an OCI layout is refused",
                    rel.display()
                );
            } else if md.is_dir() {
                stack.push(p);
            } else if md.is_file() {
                let mut f =
                    std::fs::File::open(&p).with_context(|| format!("open {}", p.display()))?;
                b.append_file(&rel, &mut f)
                    .with_context(|| format!("pack {}", rel.display()))?;
            } else {
                bail!("{}: not a regular file", rel.display());
            }
        }
    }
    b.into_inner()
        .context("pack the layout")?
        .flush()
        .context("pack the layout")?;
    Ok(tmp)
}

pub async fn load(c: &Client, a: &LoadArgs) -> anyhow::Result<i32> {
    let mut _layout = None;
    let (reader, total): (Box<dyn Read + Send>, Option<u64>) = match &a.input {
        Some(p) if p.is_dir() => {
            let t = tar_layout(p)?;
            let f = t.reopen()?;
            let n = f.metadata().ok().map(|m| m.len());
            _layout = Some(t);
            (Box::new(f), n)
        }
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
            let n = f.metadata().ok().map(|m| m.len());
            (Box::new(f), n)
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            (Box::new(io::stdin()), None)
        }
    };
    let bar = upload_bar(total);
    if a.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let body = body_of(reader, bar.clone());
    // as docker: per-layer progress only for a terminal, where it is drawn in place
    let quiet = a.quiet || !io::stdout().is_terminal();
    let mut s = c.docker.import_image_stream(
        ImportImageOptions {
            quiet,
            ..Default::default()
        },
        body,
        None,
    );
    let mut bars = Bars::new(quiet);
    let mut lines = Vec::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(i) => {
                if let Some(t) = i.stream {
                    lines.push(t);
                }
                if let Some(status) = i.status.as_deref() {
                    // the upload is over once the daemon reads layers
                    bar.finish_and_clear();
                    let (cur, tot) = i
                        .progress_detail
                        .as_ref()
                        .map_or((None, None), |p| (p.current, p.total));
                    bars.update(i.id.as_deref(), status, cur, tot);
                }
            }
            Err(e) => {
                bar.finish_and_clear();
                bars.finish();
                return Err(daemon_err(c, "load", e));
            }
        }
    }
    bar.finish_and_clear();
    bars.finish();
    let mut out = io::stdout().lock();
    for l in lines {
        write!(out, "{l}")?;
    }
    Ok(0)
}

pub async fn import(c: &Client, a: &ImportArgs) -> anyhow::Result<i32> {
    let (repo, tag) = match &a.reference {
        Some(r) => {
            let (n, t) = split_tag(r);
            (Some(n), t)
        }
        None => (None, None),
    };
    let reader: Box<dyn Read + Send> = if a.file == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(std::fs::File::open(&a.file).with_context(|| format!("open {}", a.file))?)
    };
    let bar = upload_bar(None);
    bar.set_draw_target(ProgressDrawTarget::hidden());
    let body = bollard::body_try_stream(body_of(reader, bar));
    let mut s = c.docker.create_image(
        Some(CreateImageOptions {
            from_src: Some("-".into()),
            repo,
            tag,
            message: a.message.clone(),
            changes: a.change.clone(),
            platform: a.platform.clone().unwrap_or_default(),
            ..Default::default()
        }),
        Some(body),
        None,
    );
    let mut id = None;
    while let Some(item) = s.next().await {
        let i = item.map_err(|e| daemon_err(c, "import", e))?;
        if let Some(st) = i.status {
            id = Some(st);
        }
    }
    let id = id.ok_or_else(|| anyhow!("import: the daemon sent no image ID"))?;
    println!("{id}");
    Ok(0)
}

// ---- pull, push, login ----

/// The credentials `berth login` (or `docker login`) stored for the registry of `name`.
fn credentials_for(name: &str) -> Option<DockerCredentials> {
    let r: berth_image::Reference = name.parse().ok()?;
    let store = berth_registry::CredentialStore::default_location();
    let creds = store.get(&r.registry).ok().flatten()?;
    Some(DockerCredentials {
        username: Some(creds.username),
        password: Some(creds.password),
        serveraddress: Some(r.registry),
        ..Default::default()
    })
}

/// Docker's progress: on a terminal a bar per layer, updated in place; otherwise one line
/// per change of a layer's state.
struct Bars {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    last: HashMap<String, String>,
}

impl Bars {
    fn new(quiet: bool) -> Bars {
        Bars {
            multi: (!quiet && io::stdout().is_terminal()).then(MultiProgress::new),
            bars: HashMap::new(),
            last: HashMap::new(),
        }
    }

    fn quiet(&self) -> bool {
        self.multi.is_none() && self.last.contains_key("\0quiet")
    }

    /// One progress message: `id` a layer (or a tag), `status` its state.
    fn update(&mut self, id: Option<&str>, status: &str, current: Option<i64>, total: Option<i64>) {
        if self.quiet() {
            return;
        }
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            match &self.multi {
                Some(m) => {
                    let _ = m.println(status);
                }
                None => println!("{status}"),
            }
            return;
        };
        match &self.multi {
            Some(m) => {
                // Docker's look: `id: Status` alone, and with a 50-wide bar and decimal sizes
                // while bytes move (`id: Downloading [====>   ]  1.2 MB/3.4 MB`).
                let plain = ProgressStyle::with_template("{prefix}: {msg}").ok();
                let bar = self.bars.entry(id.to_string()).or_insert_with(|| {
                    let b = m.add(ProgressBar::new(0));
                    if let Some(s) = &plain {
                        b.set_style(s.clone());
                    }
                    b.set_prefix(id.to_string());
                    b
                });
                bar.set_message(status.to_string());
                match (current, total) {
                    (Some(c), Some(t)) if t > 0 => {
                        if let Ok(s) = ProgressStyle::with_template(
                            "{prefix}: {msg} [{bar:50}] {decimal_bytes:>9}/{decimal_total_bytes}",
                        ) {
                            bar.set_style(s.progress_chars("=> "));
                        }
                        bar.set_length(u64::try_from(t).unwrap_or(0));
                        bar.set_position(u64::try_from(c).unwrap_or(0));
                    }
                    _ => {
                        if let Some(s) = &plain {
                            bar.set_style(s.clone());
                        }
                    }
                }
                if matches!(
                    status,
                    "Pull complete" | "Already exists" | "Pushed" | "Layer already exists"
                ) || status.starts_with("Mounted from")
                {
                    bar.finish();
                }
            }
            None => {
                // Byte counts change too often for a line each.
                if current.is_some() && matches!(status, "Downloading" | "Pushing" | "Extracting") {
                    return;
                }
                if self.last.get(id).map(String::as_str) != Some(status) {
                    println!("{id}: {status}");
                    self.last.insert(id.to_string(), status.to_string());
                }
            }
        }
    }

    fn finish(&self) {
        for b in self.bars.values() {
            if !b.is_finished() {
                b.finish();
            }
        }
    }
}

pub async fn pull(
    c: &Client,
    name: &str,
    platform: Option<String>,
    quiet: bool,
) -> anyhow::Result<i32> {
    let (image, tag) = match name.split_once('@') {
        Some((n, d)) => (n.to_string(), Some(d.to_string())),
        None => split_tag(name),
    };
    if tag.is_none() && !quiet {
        println!("Using default tag: latest");
    }
    let tag = tag.unwrap_or_else(|| "latest".into());
    let mut bars = Bars::new(quiet);
    if quiet {
        bars.last.insert("\0quiet".into(), String::new());
    }
    let mut s = c.docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(image.clone()),
            tag: Some(tag.clone()),
            platform: platform.unwrap_or_default(),
            ..Default::default()
        }),
        None,
        credentials_for(name),
    );
    while let Some(item) = s.next().await {
        match item {
            Ok(i) => {
                let (cur, tot) = i
                    .progress_detail
                    .as_ref()
                    .map(|p| (p.current, p.total))
                    .unwrap_or((None, None));
                if let Some(st) = &i.status {
                    let id = i.id.as_deref();
                    // `latest: Pulling from x` is a line, not a layer.
                    if st.starts_with("Pulling from") {
                        bars.update(None, &format!("{}: {st}", id.unwrap_or(&tag)), None, None);
                    } else {
                        bars.update(id, st, cur, tot);
                    }
                }
            }
            Err(e) => {
                bars.finish();
                return Err(daemon_err(c, "pull", e));
            }
        }
    }
    bars.finish();
    let shown = if tag.contains(':') {
        format!("{image}@{tag}")
    } else {
        format!("{image}:{tag}")
    };
    let full: String = shown
        .parse::<berth_image::Reference>()
        .map(|r| r.to_string())
        .unwrap_or(shown);
    println!("{full}");
    Ok(0)
}

pub async fn push(c: &Client, name: &str, quiet: bool) -> anyhow::Result<i32> {
    let (image, tag) = split_tag(name);
    if tag.is_none() && !quiet {
        println!("Using default tag: latest");
    }
    let tag = tag.unwrap_or_else(|| "latest".into());
    let mut bars = Bars::new(quiet);
    if quiet {
        bars.last.insert("\0quiet".into(), String::new());
    }
    // By hand: bollard's push items drop the layer `id`, which the bars need.
    let mut path = format!(
        "/images/{}/push?tag={}",
        path_escape(&image),
        path_escape(&tag)
    );
    if path.ends_with("?tag=") {
        path.truncate(path.len() - 5);
    }
    let auth = credentials_for(name)
        .map(|d| {
            base64::engine::general_purpose::URL_SAFE.encode(
                json!({"username": d.username, "password": d.password,
                    "serveraddress": d.serveraddress})
                .to_string(),
            )
        })
        .unwrap_or_default();
    let mut digest_line = None;
    let mut failed = None;
    let status = stream_lines(c, "POST", &path, &[("X-Registry-Auth", &auth)], |v| {
        if let Some(e) = v["error"].as_str() {
            failed = Some(e.to_string());
            return;
        }
        let cur = v["progressDetail"]["current"].as_i64();
        let tot = v["progressDetail"]["total"].as_i64();
        if let Some(st) = v["status"].as_str() {
            if st.contains(": digest: ") {
                digest_line = Some(st.to_string());
            }
            bars.update(v["id"].as_str(), st, cur, tot);
        }
    })?;
    bars.finish();
    if let Err(body) = status {
        bail!("Error response from daemon: {}", message_of(&body));
    }
    if let Some(e) = failed {
        bail!("{e}");
    }
    if quiet {
        if let Some(d) = digest_line
            .as_deref()
            .and_then(|l| l.split(": digest: ").nth(1))
        {
            let digest = d.split_whitespace().next().unwrap_or(d);
            println!("{image}@{digest}");
        }
    }
    Ok(0)
}

/// Checks the credentials with the daemon (`/auth`, which stores nothing) and, accepted,
/// keeps them client-side in Docker's config.json, as `docker login` does.
pub async fn login(
    c: &Client,
    server: Option<&str>,
    creds: berth_registry::Credentials,
) -> anyhow::Result<i32> {
    let (registry, _) = berth_registry::normalize_server(server);
    let body = json!({
        "username": creds.username,
        "password": creds.password,
        "serveraddress": server.unwrap_or(&registry),
    });
    let (status, resp) = raw_request(c, "POST", "/auth", body.to_string().as_bytes())?;
    if status != 200 {
        bail!("Error response from daemon: {}", message_of(&resp));
    }
    let store = berth_registry::CredentialStore::default_location();
    store.store(&registry, &creds)?;
    println!(
        "Login Succeeded (credentials saved in {})",
        store.path().display()
    );
    Ok(0)
}
