//! `exec`: a process in a running container, attached or detached, through a real terminal
//! with `-t`; the command's exit code is berth's.

use std::io::IsTerminal;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};

use super::run;
use super::tty::{self, RawMode};
use super::{CliError, Client, Result};

#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub async fn exec(client: &Client, a: ExecArgs) -> Result<i32> {
    let (container, cmd) = a
        .args
        .split_first()
        .ok_or_else(|| CliError::Usage("\"exec\" requires at least 2 arguments".into()))?;
    let attach_stdin = a.interactive && !a.detach;
    if a.tty && attach_stdin && !std::io::stdin().is_terminal() {
        // docker names a missing container before a missing terminal
        client
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| client.err("inspect", e))?;
        run::check_tty(a.tty, attach_stdin)?;
    }
    let env: Vec<String> = a.env.iter().map(|e| super::opts::env_value(e)).collect();
    let created = client
        .docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(attach_stdin),
                attach_stdout: Some(!a.detach),
                attach_stderr: Some(!a.detach),
                tty: Some(a.tty),
                detach_keys: a.detach_keys.clone(),
                env: (!env.is_empty()).then_some(env),
                cmd: Some(cmd.to_vec()),
                privileged: Some(a.privileged),
                user: a.user.clone(),
                working_dir: a.workdir.clone(),
            },
        )
        .await
        .map_err(|e| client.err("exec create", e))?;
    let id = created.id;
    let start = |detach| {
        client.docker.start_exec(
            &id,
            Some(StartExecOptions {
                detach,
                tty: a.tty,
                output_capacity: None,
            }),
        )
    };
    if a.detach {
        start(true).await.map_err(|e| client.err("exec start", e))?;
        return Ok(0);
    }
    let raw = if a.tty && attach_stdin {
        RawMode::enter()
    } else {
        None
    };
    let started = start(false)
        .await
        .map_err(|e| client.err("exec start", e))?;
    let resizer = a
        .tty
        .then(|| tty::follow_window(client.docker.clone(), tty::Target::Exec(id.clone())));
    let detached = match started {
        StartExecResults::Attached { output, input } => {
            run::pump(
                client,
                output,
                input,
                attach_stdin,
                a.tty,
                a.detach_keys.as_deref(),
            )
            .await
        }
        StartExecResults::Detached => Ok(false),
    };
    if let Some(r) = resizer {
        r.abort();
    }
    drop(raw);
    if detached? {
        return Ok(0);
    }
    let inspect = client
        .docker
        .inspect_exec(&id)
        .await
        .map_err(|e| client.err("exec inspect", e))?;
    Ok(inspect
        .exit_code
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(0))
}
