//! Registry commands: `pull`, `push`, `login`, `logout`, with Docker's output. The work is in
//! crates/registry; this module parses arguments, opens the store, prompts for credentials
//! and prints results.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use berth_image::manifest::Platform;
use berth_image::reference::Reference;
use berth_registry::{
    progress, CredentialStore, Credentials, LocalImages, PullOptions, PushOptions, Registry,
    Settings,
};

#[derive(clap::Subcommand)]
pub enum RegistryCommand {
    /// Download an image from a registry
    Pull {
        /// Set platform if server is multi-platform capable (os/arch[/variant])
        #[arg(long)]
        platform: Option<String>,
        /// Suppress verbose output
        #[arg(short, long)]
        quiet: bool,
        /// NAME[:TAG|@DIGEST]
        name: String,
    },
    /// Upload an image to a registry
    Push {
        /// Suppress verbose output
        #[arg(short, long)]
        quiet: bool,
        /// Upload every blob in chunks (PATCH) instead of one request each
        #[arg(long, hide = true)]
        chunked: bool,
        /// NAME[:TAG]
        name: String,
    },
    /// Log in to a registry
    Login {
        /// Username
        #[arg(short, long)]
        username: Option<String>,
        /// Password
        #[arg(short, long)]
        password: Option<String>,
        /// Take the password from stdin
        #[arg(long)]
        password_stdin: bool,
        /// The registry (Docker Hub if omitted)
        server: Option<String>,
    },
    /// Log out from a registry
    Logout {
        /// The registry (Docker Hub if omitted)
        server: Option<String>,
    },
}

pub fn run(cmd: RegistryCommand, data_root: &Path, host: Option<String>) -> anyhow::Result<i32> {
    if !crate::image_cmd::offline(host.as_deref()) {
        return match cmd {
            RegistryCommand::Pull {
                platform,
                quiet,
                name,
            } => crate::image_cmd::with_client(host, move |c| {
                Box::pin(async move { crate::image_client::pull(c, &name, platform, quiet).await })
            }),
            RegistryCommand::Push { quiet, name, .. } => {
                crate::image_cmd::with_client(host, move |c| {
                    Box::pin(async move { crate::image_client::push(c, &name, quiet).await })
                })
            }
            RegistryCommand::Login {
                username,
                password,
                password_stdin,
                server,
            } => {
                let creds = read_credentials(username, password, password_stdin)?;
                crate::image_cmd::with_client(host, move |c| {
                    Box::pin(async move {
                        crate::image_client::login(c, server.as_deref(), creds).await
                    })
                })
            }
            // Credentials are the client's: logging out needs no daemon.
            cmd @ RegistryCommand::Logout { .. } => run_offline(cmd, data_root),
        };
    }
    run_offline(cmd, data_root)
}

/// The credentials `login` was given, asked for on the terminal or read from stdin.
fn read_credentials(
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<Credentials> {
    if password.is_some() && password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    if password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let username = match username {
        Some(u) => u,
        None if password_stdin => bail!("Must provide --username with --password-stdin"),
        None => prompt("Username: ")?,
    };
    if username.is_empty() {
        bail!("Error: Non-null Username Required");
    }
    let password = match password {
        Some(p) => p,
        None if password_stdin => {
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut s)
                .context("read the password from stdin")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        None => prompt_hidden("Password: ")?,
    };
    if password.is_empty() {
        bail!("Error: Non-null Password Required");
    }
    Ok(Credentials { username, password })
}

/// The registry commands on the store directly (see `image_cmd::offline`).
fn run_offline(cmd: RegistryCommand, data_root: &Path) -> anyhow::Result<i32> {
    // `RUST_LOG=debug berth pull` prints where the time goes (manifest, download, unpack).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(run_async(cmd, data_root))
}

fn registry(data_root: &Path) -> anyhow::Result<Registry> {
    let settings = Settings::load(data_root)?;
    Ok(Registry::new(
        settings,
        CredentialStore::default_location(),
    )?)
}

fn open_image_store(data_root: &Path) -> anyhow::Result<berth_image::store::ImageStore> {
    berth_image::store::ImageStore::open(data_root)
        .with_context(|| format!("open the image store in {}", data_root.display()))
}

fn open_store(data_root: &Path) -> anyhow::Result<Arc<dyn LocalImages>> {
    Ok(Arc::new(open_image_store(data_root)?))
}

fn parse_reference(name: &str) -> anyhow::Result<Reference> {
    name.parse::<Reference>()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run_async(cmd: RegistryCommand, data_root: &Path) -> anyhow::Result<i32> {
    match cmd {
        RegistryCommand::Pull {
            platform,
            quiet,
            name,
        } => {
            let reference = parse_reference(&name)?;
            say_default_tag(&name, quiet);
            let platform = platform
                .map(|p| Platform::parse(&p))
                .transpose()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let reg = registry(data_root)?;
            // The store picks the manifest from an index by its platform: the same one.
            let store = open_image_store(data_root)?;
            let store: Arc<dyn LocalImages> = match &platform {
                Some(p) => Arc::new(store.with_platform(p.clone())),
                None => Arc::new(store),
            };
            let progress: Box<dyn berth_registry::Progress> = if quiet {
                Box::new(progress::Silent)
            } else {
                progress::for_stdout()
            };
            let opts = PullOptions {
                platform,
                ..PullOptions::default()
            };
            let report = reg
                .pull(store, &reference, &opts, progress.as_ref())
                .await?;
            let shown = reference.familiar();
            if !quiet {
                progress.line(&format!("Digest: {}", report.resolved_digest));
                if report.fetched.is_empty() {
                    progress.line(&format!("Status: Image is up to date for {shown}"));
                } else {
                    progress.line(&format!("Status: Downloaded newer image for {shown}"));
                }
            }
            println!("{reference}");
            Ok(0)
        }
        RegistryCommand::Push {
            quiet,
            chunked,
            name,
        } => {
            let reference = parse_reference(&name)?;
            say_default_tag(&name, quiet);
            let reg = registry(data_root)?;
            let store = open_store(data_root)?;
            let progress: Arc<dyn berth_registry::Progress> = if quiet {
                Arc::new(progress::Silent)
            } else {
                Arc::from(progress::for_stdout())
            };
            let opts = PushOptions {
                force_chunked: chunked,
                ..PushOptions::default()
            };
            let report = reg.push(store, &reference, &opts, progress).await?;
            if quiet {
                if let Some(d) = report.manifest_digest {
                    println!("{}@{d}", reference.name());
                }
            }
            Ok(0)
        }
        RegistryCommand::Login {
            username,
            password,
            password_stdin,
            server,
        } => {
            if password.is_some() && password_stdin {
                bail!("--password and --password-stdin are mutually exclusive");
            }
            if password.is_some() {
                eprintln!(
                    "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
                );
            }
            let username = match username {
                Some(u) => u,
                None if password_stdin => {
                    bail!("Must provide --username with --password-stdin")
                }
                None => prompt("Username: ")?,
            };
            if username.is_empty() {
                bail!("Error: Non-null Username Required");
            }
            let password = match password {
                Some(p) => p,
                None if password_stdin => {
                    let mut s = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut s)
                        .context("read the password from stdin")?;
                    s.trim_end_matches(['\n', '\r']).to_string()
                }
                None => prompt_hidden("Password: ")?,
            };
            if password.is_empty() {
                bail!("Error: Non-null Password Required");
            }
            let reg = registry(data_root)?;
            let stored_as = reg
                .login(server.as_deref(), Credentials { username, password })
                .await?;
            tracing::debug!(registry = %stored_as, "credentials stored");
            println!(
                "Login Succeeded (credentials saved in {})",
                reg.credential_store().path().display()
            );
            Ok(0)
        }
        RegistryCommand::Logout { server } => {
            let reg = registry(data_root)?;
            let (name, _) = berth_registry::normalize_server(server.as_deref());
            if reg.logout(server.as_deref())? {
                println!("Removing login credentials for {name}");
            } else {
                println!("Not logged in to {name}");
            }
            Ok(0)
        }
    }
}

/// Docker says so when a name without tag or digest is taken as `:latest`.
fn say_default_tag(name: &str, quiet: bool) {
    let last = name.rsplit('/').next().unwrap_or(name);
    if !quiet && !last.contains(':') && !last.contains('@') {
        println!("Using default tag: latest");
    }
}

fn prompt(label: &str) -> anyhow::Result<String> {
    let mut out = std::io::stdout();
    let _ = write!(out, "{label}");
    let _ = out.flush();
    let mut s = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut s)
        .context("read from stdin")?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a line with the terminal's echo off, so the password is not shown; echo is
/// restored even if reading fails.
fn prompt_hidden(label: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return prompt(label);
    }
    let saved = tcgetattr(&stdin).context("read terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turn terminal echo off")?;
    let r = prompt(label);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    println!();
    r
}
