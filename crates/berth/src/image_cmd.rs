//! Image commands that work on the local store: images, tag, rmi, inspect, prune, history,
//! save, load, import (and their `berth image ...` forms), with Docker's output formats.
//! The work is in crates/image; this module parses arguments and prints results.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use berth_image::archive::{self, ImportOptions};
use berth_image::store::RemoveAction;
use berth_image::{Image, ImageStore, Reference};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// List images
    Images(ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageSub),
}

#[derive(clap::Subcommand)]
pub enum ImageSub {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Mount a writable snapshot of IMAGE at DIR (for tests and debugging)
    #[command(hide = true)]
    Mount { image: String, dir: PathBuf },
    /// Unmount DIR and remove the snapshot `image mount` made for it
    #[command(hide = true)]
    Unmount { dir: PathBuf },
}

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub(crate) all: bool,
    /// Show digests
    #[arg(long)]
    pub(crate) digests: bool,
    /// Filter output based on conditions provided (reference=, dangling=, before=, since=, label=)
    #[arg(short, long = "filter")]
    pub(crate) filter: Vec<String>,
    /// Format output using a Go-style template ('table', 'json', or '{{.Repository}}:{{.Tag}}' ...)
    #[arg(long)]
    pub(crate) format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// REPOSITORY[:TAG]
    pub(crate) repository: Option<String>,
}

#[derive(clap::Args)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    pub(crate) source: String,
    /// TARGET_IMAGE[:TAG]
    pub(crate) target: String,
}

#[derive(clap::Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub(crate) force: bool,
    /// Do not delete untagged parents (accepted for compatibility)
    #[arg(long)]
    pub(crate) no_prune: bool,
    #[arg(required = true)]
    pub(crate) images: Vec<String>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Format output using a Go-style template
    #[arg(short, long)]
    pub(crate) format: Option<String>,
    #[arg(required = true)]
    pub(crate) images: Vec<String>,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub(crate) all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub(crate) force: bool,
    /// Provide filter values (e.g. 'label=<key>=<value>')
    #[arg(long = "filter")]
    pub(crate) filter: Vec<String>,
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// Format output using a Go-style template
    #[arg(long)]
    pub(crate) format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub(crate) quiet: bool,
    pub(crate) image: String,
}

#[derive(clap::Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,
    /// Write an OCI image layout directory instead of an archive (for `skopeo copy oci:DIR`)
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub(crate) oci_layout: Option<PathBuf>,
    #[arg(required = true)]
    pub(crate) images: Vec<String>,
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Read from tar archive file (or OCI layout directory), instead of STDIN
    #[arg(short, long)]
    pub(crate) input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL)
    #[arg(short, long)]
    pub(crate) change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub(crate) message: Option<String>,
    /// Set platform if server is multi-platform capable (accepted: the host platform)
    #[arg(long)]
    pub(crate) platform: Option<String>,
    /// file|- (a tarball, plain or compressed)
    pub(crate) file: String,
    /// REPOSITORY[:TAG]
    pub(crate) reference: Option<String>,
}

/// Whether the image commands work on the store directly instead of through the daemon:
/// only when a data root is named (`--data-root`, `BERTH_DATA_ROOT`) and no daemon is
/// (`-H`, `BERTH_HOST`). Kept for scripts that make an image before any daemon runs;
/// everything else is a client of the daemon, as docker's CLI is.
pub fn offline(host: Option<&str>) -> bool {
    host.is_none()
        && (std::env::var_os("BERTH_DATA_ROOT").is_some()
            || std::env::args().any(|a| a == "--data-root" || a.starts_with("--data-root=")))
}

/// Runs `f` with a client of the daemon at `host` (or the default socket) on a runtime of
/// its own; a daemon that is not there is one line and docker's exit code 125.
pub fn with_client<F>(host: Option<String>, f: F) -> anyhow::Result<i32>
where
    F: for<'c> FnOnce(
        &'c crate::cli::Client,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<i32>> + 'c>,
    >,
{
    let host = host
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| crate::cli::DEFAULT_HOST.to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let r = rt.block_on(async {
        match crate::cli::connect(&host).await {
            Ok(c) => f(&c).await,
            Err(e) => {
                eprintln!("berth: {e}");
                Ok(crate::cli::EXIT_DAEMON)
            }
        }
    });
    rt.shutdown_background();
    r
}

pub fn run(cmd: ImageCommand, data_root: &Path, host: Option<String>) -> anyhow::Result<i32> {
    use crate::image_client as api;
    let remote = !offline(host.as_deref())
        && !matches!(
            cmd,
            ImageCommand::Image(ImageSub::Mount { .. } | ImageSub::Unmount { .. })
        );
    if remote {
        return quiet_pipe(with_client(host, move |c| {
            Box::pin(async move {
                match cmd {
                    ImageCommand::Images(a) | ImageCommand::Image(ImageSub::Ls(a)) => {
                        api::images(c, &a).await
                    }
                    ImageCommand::Tag(a) | ImageCommand::Image(ImageSub::Tag(a)) => {
                        api::tag(c, &a).await
                    }
                    ImageCommand::Rmi(a) | ImageCommand::Image(ImageSub::Rm(a)) => {
                        api::rmi(c, &a).await
                    }
                    ImageCommand::History(a) | ImageCommand::Image(ImageSub::History(a)) => {
                        api::history(c, &a).await
                    }
                    ImageCommand::Save(a) | ImageCommand::Image(ImageSub::Save(a)) => {
                        api::save(c, &a).await
                    }
                    ImageCommand::Load(a) | ImageCommand::Image(ImageSub::Load(a)) => {
                        api::load(c, &a).await
                    }
                    ImageCommand::Import(a) | ImageCommand::Image(ImageSub::Import(a)) => {
                        api::import(c, &a).await
                    }
                    ImageCommand::Image(ImageSub::Inspect(a)) => api::inspect(c, &a).await,
                    ImageCommand::Image(ImageSub::Prune(a)) => api::prune(c, &a).await,
                    ImageCommand::Image(ImageSub::Mount { .. } | ImageSub::Unmount { .. }) => Ok(0),
                }
            })
        }));
    }
    quiet_pipe(run_inner(cmd, data_root))
}

/// `berth images | head`: a closed pipe is the reader's choice, not an error.
fn quiet_pipe(r: anyhow::Result<i32>) -> anyhow::Result<i32> {
    match r {
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .map(|io| io.kind() == io::ErrorKind::BrokenPipe)
                    .unwrap_or(false)
            }) =>
        {
            Ok(0)
        }
        other => other,
    }
}

fn run_inner(cmd: ImageCommand, data_root: &Path) -> anyhow::Result<i32> {
    let open = || {
        ImageStore::open(data_root)
            .with_context(|| format!("open image store in {}", data_root.display()))
    };
    match cmd {
        ImageCommand::Images(a) | ImageCommand::Image(ImageSub::Ls(a)) => images(&open()?, &a),
        ImageCommand::Tag(a) | ImageCommand::Image(ImageSub::Tag(a)) => tag(&open()?, &a),
        ImageCommand::Rmi(a) | ImageCommand::Image(ImageSub::Rm(a)) => rmi(&open()?, &a),
        ImageCommand::History(a) | ImageCommand::Image(ImageSub::History(a)) => {
            history(&open()?, &a)
        }
        ImageCommand::Save(a) | ImageCommand::Image(ImageSub::Save(a)) => save(&open()?, &a),
        ImageCommand::Load(a) | ImageCommand::Image(ImageSub::Load(a)) => load(&open()?, &a),
        ImageCommand::Import(a) | ImageCommand::Image(ImageSub::Import(a)) => import(&open()?, &a),
        ImageCommand::Image(ImageSub::Inspect(a)) => inspect(&open()?, &a),
        ImageCommand::Image(ImageSub::Prune(a)) => prune(&open()?, &a),
        ImageCommand::Image(ImageSub::Mount { image, dir }) => mount(&open()?, &image, &dir),
        ImageCommand::Image(ImageSub::Unmount { dir }) => unmount(&open()?, &dir),
    }
}

fn mount_key(dir: &Path) -> anyhow::Result<String> {
    let abs = fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))?;
    Ok(format!(
        "mount-{}",
        berth_image::Digest::of(abs.as_os_str().as_encoded_bytes()).short()
    ))
}

fn mount(store: &ImageStore, image: &str, dir: &Path) -> anyhow::Result<i32> {
    let img = store.resolve(image)?;
    let key = mount_key(dir)?;
    let mounts = store.prepare_container(&key, &img)?;
    if let Err(e) = berth_image::snapshot::mount(&mounts, dir) {
        let _ = store.remove_container_snapshot(&key);
        return Err(e.into());
    }
    Ok(0)
}

fn unmount(store: &ImageStore, dir: &Path) -> anyhow::Result<i32> {
    let key = mount_key(dir)?;
    berth_image::snapshot::unmount(dir)?;
    store.remove_container_snapshot(&key)?;
    Ok(0)
}

// ---- images ----

struct Row<'a> {
    img: &'a Image,
    repository: String,
    tag: String,
    digest: String,
}

fn rows_of(img: &Image) -> Vec<Row<'_>> {
    let mut rows = Vec::new();
    let digest_for = |name: &str| {
        img.repo_digests
            .iter()
            .find(|d| d.familiar_name() == name)
            .and_then(|d| d.digest.as_ref())
            .map(|d| d.to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let mut tags: Vec<&Reference> = img.repo_tags.iter().collect();
    tags.sort_by_key(|r| r.familiar());
    for t in tags {
        let name = t.familiar_name();
        rows.push(Row {
            img,
            digest: digest_for(&name),
            repository: name,
            tag: t.tag_or_latest().to_string(),
        });
    }
    // repositories known only by digest
    for d in &img.repo_digests {
        let name = d.familiar_name();
        if !rows.iter().any(|r| r.repository == name) {
            rows.push(Row {
                img,
                repository: name,
                tag: "<none>".into(),
                digest: d
                    .digest
                    .as_ref()
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "<none>".into()),
            });
        }
    }
    if rows.is_empty() {
        rows.push(Row {
            img,
            repository: "<none>".into(),
            tag: "<none>".into(),
            digest: "<none>".into(),
        });
    }
    rows
}

/// Docker's `units.HumanDuration`.
fn human_duration(secs: i64) -> String {
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
    let h = ((s as f64) / 3600.0 + 0.5) as i64;
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
    format!("{} years", s / 3600 / 24 / 365)
}

pub(crate) fn created_since(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) if t.timestamp() > 0 => {
            format!("{} ago", human_duration((Utc::now() - t).num_seconds()))
        }
        _ => "N/A".into(),
    }
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub(crate) fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", format_g3(v), UNITS[i])
}

// Go's %.3g for values in [0, 1000)
fn format_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits_before = if v >= 100.0 {
        3
    } else if v >= 10.0 {
        2
    } else {
        1
    };
    let decimals = 3usize.saturating_sub(digits_before);
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    // rounding up to 1000 (999.5 → "1e+03" in Go)
    if s == "1000" {
        return "1e+03".into();
    }
    s
}

fn short_id(img: &Image, no_trunc: bool) -> String {
    if no_trunc {
        img.id.to_string()
    } else {
        img.id.short().to_string()
    }
}

fn row_value(r: &Row<'_>, no_trunc: bool) -> Value {
    let created_at = r
        .img
        .created
        .map(|t| t.format("%Y-%m-%d %H:%M:%S %z UTC").to_string())
        .unwrap_or_default();
    json!({
        "Containers": "N/A",
        "CreatedAt": created_at,
        "CreatedSince": created_since(r.img.created),
        "Digest": r.digest,
        "ID": short_id(r.img, no_trunc),
        "Repository": r.repository,
        "SharedSize": "N/A",
        "Size": human_size(r.img.size),
        "Tag": r.tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size(r.img.size),
    })
}

use berth_image::query::{glob_match, ImageFilters as Filters};

/// `-f key=value` flags as the API's filter map, parsed by the image library.
fn parse_filters(store: &ImageStore, raw: &[String]) -> anyhow::Result<Filters> {
    let mut m: std::collections::HashMap<String, Vec<String>> = Default::default();
    for item in raw {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("bad format of filter (expected name=value): {item}"))?;
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(Filters::parse(store, &m)?)
}

fn image_matches(f: &Filters, img: &Image) -> bool {
    f.matches(img)
}

fn row_matches_reference(patterns: &[String], r: &Row<'_>) -> bool {
    if patterns.is_empty() {
        return true;
    }
    if r.repository == "<none>" {
        return false;
    }
    let with_tag = format!("{}:{}", r.repository, r.tag);
    patterns
        .iter()
        .any(|p| glob_match(p, &r.repository) || glob_match(p, &with_tag))
}

fn images(store: &ImageStore, a: &ImagesArgs) -> anyhow::Result<i32> {
    let _ = a.all; // no intermediate images in this store
    let f = parse_filters(store, &a.filter)?;
    let mut imgs = store.list()?;
    imgs.sort_by(|x, y| {
        y.created
            .cmp(&x.created)
            .then_with(|| y.added.cmp(&x.added))
    });
    let positional = a
        .repository
        .as_deref()
        .map(|r| {
            Reference::parse_name_only(r)
                .map_err(|e| anyhow!("{e}"))
                .map(|p| (p.familiar_name(), p.tag.clone()))
        })
        .transpose()?;
    let mut rows: Vec<Row<'_>> = Vec::new();
    for img in imgs.iter().filter(|i| image_matches(&f, i)) {
        for r in rows_of(img) {
            if !row_matches_reference(&f.reference, &r) {
                continue;
            }
            if let Some((name, tag)) = &positional {
                if &r.repository != name || tag.as_ref().map(|t| t != &r.tag).unwrap_or(false) {
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
            let id = short_id(r.img, a.no_trunc);
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
    let format = a.format.as_deref().unwrap_or(default);
    let format = if format == "table" { default } else { format };
    print_formatted(&mut out, format, &values, &image_headers())?;
    Ok(0)
}

pub(crate) fn image_headers() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("Containers", "CONTAINERS"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedSince", "CREATED"),
        ("Digest", "DIGEST"),
        ("ID", "IMAGE ID"),
        ("Repository", "REPOSITORY"),
        ("SharedSize", "SHARED SIZE"),
        ("Size", "SIZE"),
        ("Tag", "TAG"),
        ("UniqueSize", "UNIQUE SIZE"),
        ("VirtualSize", "VIRTUAL SIZE"),
        ("CreatedBy", "CREATED BY"),
        ("Comment", "COMMENT"),
    ])
}

// ---- Go-template-ish formatting ----

pub(crate) enum Piece {
    Text(String),
    Field(Vec<String>),
    Json(Vec<String>),
}

pub(crate) fn parse_template(t: &str) -> anyhow::Result<Vec<Piece>> {
    // Docker's CLI turns the escapes \t and \n in --format into real characters
    let t = t.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = Vec::new();
    let mut rest = t.as_str();
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow!("template: unclosed action in {t:?}"))?;
        let action = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        let path = |s: &str| -> anyhow::Result<Vec<String>> {
            let s = s.trim();
            if s == "." {
                return Ok(vec![]);
            }
            let s = s
                .strip_prefix('.')
                .ok_or_else(|| anyhow!("template: unsupported action {{{{{action}}}}}"))?;
            Ok(s.split('.').map(str::to_string).collect())
        };
        if let Some(arg) = action.strip_prefix("json ") {
            out.push(Piece::Json(path(arg)?));
        } else {
            out.push(Piece::Field(path(action)?));
        }
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

fn lookup<'v>(v: &'v Value, path: &[String]) -> anyhow::Result<&'v Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p).ok_or_else(|| {
            anyhow!(
                "template: can't evaluate field {p} (known fields: {})",
                known_fields(cur)
            )
        })?;
    }
    Ok(cur)
}

fn known_fields(v: &Value) -> String {
    match v {
        Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        _ => "none".into(),
    }
}

/// Go's default printing of a value (`[a b]`, `map[k:v]`, `<nil>`).
fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

pub(crate) fn render(pieces: &[Piece], v: &Value) -> anyhow::Result<String> {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => s.push_str(t),
            Piece::Field(path) => s.push_str(&go_string(lookup(v, path)?)),
            Piece::Json(path) => s.push_str(&serde_json::to_string(lookup(v, path)?)?),
        }
    }
    Ok(s)
}

/// Prints `values` with a Docker `--format`: `json`, `table <template>` (header row and
/// aligned columns, as Go's tabwriter with minwidth 10, padding 3), or a plain template.
pub(crate) fn print_formatted(
    out: &mut dyn Write,
    format: &str,
    values: &[Value],
    headers: &BTreeMap<&str, &str>,
) -> anyhow::Result<()> {
    if format == "json" {
        for v in values {
            writeln!(out, "{}", serde_json::to_string(v)?)?;
        }
        return Ok(());
    }
    if let Some(t) = format.strip_prefix("table") {
        let t = t.trim_start();
        let pieces = parse_template(t)?;
        let header: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Field(path) | Piece::Json(path) => {
                    let k = path.last().cloned().unwrap_or_default();
                    headers
                        .get(k.as_str())
                        .map(|h| h.to_string())
                        .unwrap_or_else(|| k.to_uppercase())
                }
            })
            .collect();
        let mut lines = vec![header];
        for v in values {
            lines.push(render(&pieces, v)?);
        }
        write!(out, "{}", tabwrite(&lines))?;
        return Ok(());
    }
    let pieces = parse_template(format)?;
    for v in values {
        writeln!(out, "{}", render(&pieces, v)?)?;
    }
    Ok(())
}

/// Go's text/tabwriter with (minwidth 10, tabwidth 1, padding 3, ' '): tab-separated cells
/// padded to the widest cell of their column plus 3, at least 10; the last cell unpadded.
fn tabwrite(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let ncols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; ncols];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                widths[i] = widths[i].max(c.chars().count() + 3).max(10);
            }
        }
    }
    let mut s = String::new();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            s.push_str(c);
            if i + 1 < r.len() {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(&" ".repeat(pad));
            }
        }
        s.push('\n');
    }
    s
}

// ---- tag, rmi ----

fn tag(store: &ImageStore, a: &TagArgs) -> anyhow::Result<i32> {
    let img = store.resolve(&a.source)?;
    let target: Reference = a.target.parse()?;
    store.tag(&img, &target)?;
    Ok(0)
}

fn rmi(store: &ImageStore, a: &RmiArgs) -> anyhow::Result<i32> {
    let _ = a.no_prune;
    let mut code = 0;
    let mut out = io::stdout().lock();
    for name in &a.images {
        match store.remove(name, a.force) {
            Ok(actions) => {
                for act in actions {
                    match act {
                        RemoveAction::Untagged(r) => writeln!(out, "Untagged: {r}")?,
                        RemoveAction::Deleted(d) => writeln!(out, "Deleted: {d}")?,
                    }
                }
            }
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

// ---- inspect ----

fn inspect(store: &ImageStore, a: &InspectArgs) -> anyhow::Result<i32> {
    let mut values = Vec::new();
    let mut code = 0;
    for n in &a.images {
        match store.resolve(n) {
            Ok(img) => values.push(berth_image::query::inspect(store, &img)),
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    let mut out = io::stdout().lock();
    match &a.format {
        Some(f) => {
            let pieces = parse_template(f)?;
            for v in &values {
                writeln!(out, "{}", render(&pieces, v)?)?;
            }
        }
        None => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&Value::Array(values))?
        )?,
    }
    Ok(code)
}

// ---- prune ----

pub(crate) fn confirm(msg: &str) -> anyhow::Result<bool> {
    eprint!("{msg}\nAre you sure you want to continue? [y/N] ");
    io::stderr().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn prune(store: &ImageStore, a: &PruneArgs) -> anyhow::Result<i32> {
    let msg = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(msg)? {
        return Ok(0);
    }
    let f = parse_filters(store, &a.filter)?;
    let mut lines = Vec::new();
    let mut reclaimed = 0u64;
    for img in store.list()? {
        if !image_matches(&f, &img)
            || (!a.all && !img.repo_tags.is_empty())
            || store.in_use(&img)?
        {
            continue;
        }
        let before: u64 = berth_image::query::usage(store);
        let name = img.id.to_string();
        let actions = store.remove(&name, true)?;
        reclaimed += before.saturating_sub(berth_image::query::usage(store));
        for act in actions {
            match act {
                RemoveAction::Untagged(r) => lines.push(format!("untagged: {r}")),
                RemoveAction::Deleted(d) => lines.push(format!("deleted: {d}")),
            }
        }
    }
    let gc = store.gc()?;
    reclaimed += gc.bytes;
    let mut out = io::stdout().lock();
    if !lines.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for l in &lines {
            writeln!(out, "{l}")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(reclaimed))?;
    Ok(0)
}

// ---- history ----

fn history(store: &ImageStore, a: &HistoryArgs) -> anyhow::Result<i32> {
    let img = store.resolve(&a.image)?;
    let entries = berth_image::query::history(store, &img);
    let mut out = io::stdout().lock();
    let id_for = |i: usize| {
        if i == 0 {
            short_id(&img, a.no_trunc)
        } else {
            "<missing>".to_string()
        }
    };
    if a.quiet {
        for i in 0..entries.len() {
            writeln!(out, "{}", id_for(i))?;
        }
        return Ok(0);
    }
    let values: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let created_by = if a.no_trunc || h.created_by.chars().count() <= 45 {
                h.created_by.clone()
            } else {
                format!("{}…", h.created_by.chars().take(44).collect::<String>())
            };
            let created = if a.human {
                created_since(h.created)
            } else {
                h.created.map(|t| t.to_rfc3339()).unwrap_or_default()
            };
            let size = if a.human { human_size(h.size) } else { h.size.to_string() };
            json!({"ID": id_for(i), "CreatedSince": created, "CreatedAt": h.created.map(|t| t.to_rfc3339()).unwrap_or_default(),
                "CreatedBy": created_by, "Size": size, "Comment": h.comment})
        })
        .collect();
    let default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    let format = a.format.as_deref().unwrap_or(default);
    let format = if format == "table" { default } else { format };
    let mut headers = image_headers();
    headers.insert("ID", "IMAGE");
    print_formatted(&mut out, format, &values, &headers)?;
    Ok(0)
}

// ---- save, load, import ----

fn save(store: &ImageStore, a: &SaveArgs) -> anyhow::Result<i32> {
    if let Some(dir) = &a.oci_layout {
        archive::export_oci_layout(store, &a.images, dir)?;
        return Ok(0);
    }
    match &a.output {
        Some(path) => {
            // a temporary name beside the target, renamed when complete: no half archive
            let tmp = path.with_file_name(format!(
                ".{}.berth-save.tmp",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "archive".into())
            ));
            let f = fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
            let res = archive::save(store, &a.images, io::BufWriter::new(f))
                .map_err(anyhow::Error::from)
                .and_then(|w| {
                    let f = w
                        .into_inner()
                        .map_err(|e| anyhow!("flush {}: {}", tmp.display(), e.error()))?;
                    f.sync_all()?;
                    Ok(())
                });
            if let Err(e) = res {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let w = archive::save(store, &a.images, io::BufWriter::new(io::stdout().lock()))?;
            w.into_inner()
                .map_err(|e| anyhow!("write stdout: {}", e.error()))?
                .flush()?;
        }
    }
    Ok(0)
}

fn load(store: &ImageStore, a: &LoadArgs) -> anyhow::Result<i32> {
    let loaded = match &a.input {
        Some(p) if p.is_dir() => archive::load_oci_dir(store, p)?,
        Some(p) => {
            let f = fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
            archive::load(store, io::BufReader::new(f))?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            archive::load(store, io::stdin().lock())?
        }
    };
    if !a.quiet {
        let mut out = io::stdout().lock();
        for l in &loaded {
            if l.tags.is_empty() {
                writeln!(out, "Loaded image ID: {}", l.id)?;
            }
            for t in &l.tags {
                writeln!(out, "Loaded image: {}", t.familiar())?;
            }
        }
    }
    Ok(0)
}

fn import(store: &ImageStore, a: &ImportArgs) -> anyhow::Result<i32> {
    if let Some(p) = &a.platform {
        let want = berth_image::Platform::parse(p)?;
        if store.platform().match_score(&want).is_none() {
            bail!(
                "import for platform {p} is not supported on this host ({})",
                store.platform()
            );
        }
    }
    let reference = a
        .reference
        .as_deref()
        .map(str::parse::<Reference>)
        .transpose()?;
    let opts = ImportOptions {
        message: a.message.clone(),
        source: a.file.clone(),
        config: Some(archive::parse_changes(&a.change)?),
    };
    let img = if a.file == "-" {
        archive::import(store, io::stdin().lock(), reference.as_ref(), &opts)?
    } else {
        let f = fs::File::open(&a.file).with_context(|| format!("open {}", a.file))?;
        archive::import(store, io::BufReader::new(f), reference.as_ref(), &opts)?
    };
    println!("{}", img.id);
    Ok(0)
}

/// Reads all of a reader (for tests of the formatting helpers).
#[allow(dead_code)]
fn read_all(mut r: impl Read) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(77_800_000), "77.8MB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3600 * 5), "5 hours");
        assert_eq!(human_duration(3600 * 24 * 3), "3 days");
        assert_eq!(human_duration(3600 * 24 * 20), "2 weeks");
        assert_eq!(human_duration(3600 * 24 * 90), "3 months");
        assert_eq!(human_duration(3600 * 24 * 365 * 3), "3 years");
    }

    #[test]
    fn templates() {
        let v = json!({"Repository": "busybox", "Tag": "latest", "Config": {"Cmd": ["sh", "-c"], "Env": null}});
        let p = parse_template("{{.Repository}}:{{.Tag}}").unwrap();
        assert_eq!(render(&p, &v).unwrap(), "busybox:latest");
        let p = parse_template("{{.Config.Cmd}} {{json .Config.Cmd}} {{.Config.Env}}").unwrap();
        assert_eq!(render(&p, &v).unwrap(), r#"[sh -c] ["sh","-c"] <nil>"#);
        let p = parse_template("{{.Nope}}").unwrap();
        assert!(render(&p, &v).unwrap_err().to_string().contains("Nope"));
        let mut out = Vec::new();
        print_formatted(
            &mut out,
            "table {{.Repository}}\\t{{.Tag}}",
            &[v],
            &image_headers(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "REPOSITORY   TAG\nbusybox      latest\n"
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("busy*", "library/busybox"));
        assert!(glob_match("*/x", "localhost:5000/x"));
    }
}
