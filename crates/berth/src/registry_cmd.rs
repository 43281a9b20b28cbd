//! Registry commands: `pull`, `push`, `login` as clients of the daemon (image_client.rs),
//! and `logout`, which only forgets the credentials kept client-side as docker's does. This
//! module parses arguments and prompts for credentials.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};
use berth_registry::{CredentialStore, Credentials};

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

pub fn run(cmd: RegistryCommand, host: Option<String>) -> anyhow::Result<i32> {
    match cmd {
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
                Box::pin(
                    async move { crate::image_client::login(c, server.as_deref(), creds).await },
                )
            })
        }
        // Credentials are the client's (Docker's config.json): logging out needs no daemon.
        RegistryCommand::Logout { server } => {
            let (name, _) = berth_registry::normalize_server(server.as_deref());
            if CredentialStore::default_location().remove(&name)? {
                println!("Removing login credentials for {name}");
            } else {
                println!("Not logged in to {name}");
            }
            Ok(0)
        }
    }
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
