//! The image commands' arguments (images, tag, rmi, inspect, prune, history, save, load,
//! import and their `berth image ...` forms) and their dispatch: each is a client of the
//! daemon (image_client.rs), as docker's CLI is; nothing here opens the image store.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};

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

pub fn run(cmd: ImageCommand, host: Option<String>) -> anyhow::Result<i32> {
    use crate::image_client as api;
    quiet_pipe(with_client(host, move |c| {
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
            }
        })
    }))
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

/// docker's CREATED column: `5 minutes ago`, or N/A without a time.
pub(crate) fn created_since(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) if t.timestamp() > 0 => format!(
            "{} ago",
            crate::cli::format::human_duration((Utc::now() - t).num_seconds())
        ),
        _ => "N/A".into(),
    }
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub(crate) fn human_size(size: u64) -> String {
    crate::cli::format::human_size(size as f64)
}

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
