//! run, create, start and attach: create (pulling a missing image), attach the streams, start,
//! wait, and leave with the container's exit code, in the order the docker CLI does them.

use std::io::{IsTerminal, Write};
use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::query_parameters::{
    AttachContainerOptions, CreateImageOptions, StartContainerOptions,
};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::each::each;
use super::opts::RunOpts;
use super::tty::{self, RawMode};
use super::{raw, wait, CliError, Client, Result};

pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// docker's exit code for a failed start: 127 when the command is missing, 126 when it cannot
/// be executed, 125 for anything else.
pub fn exit_code_for_start_error(msg: &str) -> i32 {
    if msg.contains("executable file not found")
        || msg.contains("no such file or directory")
        || msg.contains("system cannot find the file specified")
    {
        127
    } else if msg.contains("permission denied") || msg.contains("is a directory") {
        126
    } else {
        125
    }
}

/// `busybox` → `busybox:latest`, as docker names what it could not find.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

async fn pull(client: &Client, image: &str, quiet: bool) -> Result<()> {
    let reference = with_default_tag(image);
    let (from, tag) = match reference.rsplit_once('@') {
        Some(_) => (reference.clone(), None),
        None => match reference.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), Some(t.to_string())),
            _ => (reference.clone(), None),
        },
    };
    let mut progress = client.docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(from),
            tag,
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(item) = progress.next().await {
        let info = item.map_err(|e| client.err("pull", e))?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(CliError::Daemon {
                status: 500,
                message: detail,
            });
        }
        if quiet {
            continue;
        }
        if let Some(status) = info.status {
            // per-layer progress lines would need a terminal to redraw; the final ones suffice
            if info.progress_detail.is_some_and(|d| d.total.is_some()) {
                continue;
            }
            match info.id {
                Some(id) => eprintln!("{id}: {status}"),
                None => eprintln!("{status}"),
            }
        }
    }
    Ok(())
}

/// Creates the container, pulling its image first when the daemon does not have it. With
/// `start_for: Some(n)` (`run` in the foreground), berth's daemon is asked to start it as
/// soon as it is created, for `n` attach requests and a wait to come (the daemon's
/// `EarlyStart` says why that is safe). Returns the id and whether the daemon did begin the
/// start: another daemon (dockerd) ignores the request, and `run` then goes one step at a
/// time. Sent by hand (raw.rs), as bollard neither sends the parameter nor shows the answer's
/// headers.
pub async fn create(
    client: &Client,
    opts: &RunOpts,
    tty_size: Option<(u16, u16)>,
    start_for: Option<u32>,
) -> Result<(String, bool)> {
    let body = serde_json::to_vec(&opts.to_body(tty_size)?).map_err(|e| CliError::Io {
        op: "encode the create request".into(),
        source: std::io::Error::other(e),
    })?;
    let mut query = Vec::new();
    if let Some(n) = start_for {
        query.push(format!("berth-start={n}"));
    }
    if let Some(n) = &opts.name {
        query.push(format!("name={}", raw::query_escape(n)));
    }
    let mut path = "/containers/create".to_string();
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    if opts.pull == "always" {
        pull(client, opts.image(), opts.quiet).await?;
    }
    let mut pulled = false;
    loop {
        let r = raw::send_json(client, "POST", &path, &body).await?;
        let started = r.header("berth-started") == Some("1");
        match r.json().await {
            Ok(v) => {
                for w in v
                    .get("Warnings")
                    .and_then(|w| w.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|w| w.as_str())
                    .filter(|w| !w.is_empty())
                {
                    eprintln!("WARNING: {w}");
                }
                let id = v.get("Id").and_then(|i| i.as_str()).unwrap_or_default();
                if id.is_empty() {
                    return Err(CliError::Daemon {
                        status: 500,
                        message: "the daemon's answer to create has no Id".into(),
                    });
                }
                return Ok((id.to_string(), started));
            }
            Err(CliError::Daemon {
                status: 404,
                message,
            }) if message.contains("No such image") && opts.pull != "never" && !pulled => {
                eprintln!(
                    "Unable to find image '{}' locally",
                    with_default_tag(opts.image())
                );
                pull(client, opts.image(), opts.quiet).await?;
                pulled = true;
            }
            Err(e) => return Err(e),
        }
    }
}

type Output =
    Pin<Box<dyn Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>>;
type Input = Pin<Box<dyn AsyncWrite + Send>>;

fn write_out(to_stderr: bool, bytes: &[u8]) -> std::io::Result<()> {
    if to_stderr {
        let mut e = std::io::stderr().lock();
        e.write_all(bytes)?;
        e.flush()
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(bytes)?;
        o.flush()
    }
}

/// Finds the detach keys in what the user types. The sequence may span reads: bytes that
/// start it are held back until it is known whether they complete it.
struct EscapeScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl EscapeScanner {
    /// The bytes to pass on, and whether the keys were completed (the rest is then dropped).
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        if self.keys.is_empty() {
            return (input.to_vec(), false);
        }
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

/// Copies stdin to the container and its output to stdout and stderr, until the output ends.
/// With a tty, stdin is watched for the detach keys (as docker does: without one, stdin may
/// be binary data). Returns true when the user detached.
pub async fn pump(
    client: &Client,
    mut output: Output,
    mut input: Input,
    stdin: bool,
    tty: bool,
    detach_keys: Option<&str>,
) -> Result<bool> {
    let mut scanner = EscapeScanner {
        keys: if tty {
            tty::parse_detach_keys(detach_keys.unwrap_or(DEFAULT_DETACH_KEYS))
                .map_err(CliError::Usage)?
        } else {
            Vec::new()
        },
        matched: 0,
    };
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
    let input_task = if stdin {
        tokio::spawn(async move {
            let mut src = tokio::io::stdin();
            let mut buf = [0u8; 4096];
            loop {
                let n = match src.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (out, detach) = scanner.feed(&buf[..n]);
                if detach {
                    let _ = detach_tx.send(());
                    return;
                }
                if input.write_all(&out).await.is_err() || input.flush().await.is_err() {
                    return;
                }
            }
            // end of input closes the container's stdin (a half-close, as docker does)
            let _ = input.shutdown().await;
            // keep the connection's write half alive until the output ends
            std::future::pending::<()>().await;
        })
    } else {
        // the write half stays open (a drop would not close it either) until output ends
        tokio::spawn(async move {
            let _keep = input;
            std::future::pending::<()>().await;
        })
    };
    let mut detached = false;
    // the sender is dropped when stdin ends without the detach keys; a finished oneshot must
    // not be polled again
    let mut detach_open = true;
    loop {
        tokio::select! {
            item = output.next() => {
                let Some(item) = item else { break };
                let item = item.map_err(|e| client.err("attach", e))?;
                let res = match item {
                    LogOutput::StdErr { message } => write_out(true, &message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        write_out(false, &message)
                    }
                    LogOutput::StdIn { .. } => Ok(()),
                };
                res.map_err(|e| CliError::Io { op: "write container output".into(), source: e })?;
            }
            r = &mut detach_rx, if detach_open => {
                detach_open = false;
                if r.is_ok() {
                    detached = true;
                    break;
                }
            }
        }
    }
    input_task.abort();
    Ok(detached)
}

pub async fn attach_streams(
    client: &Client,
    id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    detach_keys: Option<&str>,
    logs: bool,
) -> Result<(Output, Input)> {
    let res = client
        .docker
        .attach_container(
            id,
            Some(AttachContainerOptions {
                stream: true,
                logs,
                stdin,
                stdout,
                stderr,
                detach_keys: detach_keys.map(String::from),
            }),
        )
        .await
        .map_err(|e| client.err("attach", e))?;
    Ok((res.output, res.input))
}

pub async fn start_one(client: &Client, id: &str) -> Result<()> {
    client
        .docker
        .start_container(id, None::<StartContainerOptions>)
        .await
        .map_err(|e| client.err("start", e))
}

pub fn check_tty(opts_tty: bool, interactive: bool) -> Result<()> {
    if opts_tty && interactive && !std::io::stdin().is_terminal() {
        eprintln!("the input device is not a TTY");
        return Err(CliError::Reported { code: 1 });
    }
    Ok(())
}

/// docker's sig-proxy: the signals the CLI receives go to the container. Not with a tty,
/// where ctrl-c is a byte for the container's terminal instead.
fn forward_signals(docker: &bollard::Docker, id: &str) -> Vec<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ];
    let mut tasks = Vec::new();
    for (kind, name) in kinds {
        let Ok(mut sig) = signal(kind) else { continue };
        let docker = docker.clone();
        let id = id.to_string();
        tasks.push(tokio::spawn(async move {
            while sig.recv().await.is_some() {
                // the container may have just exited; nothing left to tell
                let _ = docker
                    .kill_container(
                        &id,
                        Some(bollard::query_parameters::KillContainerOptions {
                            signal: name.to_string(),
                        }),
                    )
                    .await;
            }
        }));
    }
    tasks
}

/// Attaches (when asked), starts, and waits: the common tail of `run` and `start -a`.
/// `started`: the daemon began the start at create (`create`); the start request
/// then only fetches its outcome, and goes with the attach and the wait at once.
#[allow(clippy::too_many_arguments)]
async fn attach_start_wait(
    client: &Client,
    id: &str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    detach_keys: Option<&str>,
    condition: &str,
    sig_proxy: bool,
    started: bool,
) -> Result<i32> {
    // the attach and the wait are independent round trips: both in flight at once
    let attach = async {
        if stdin || stdout || stderr {
            attach_streams(client, id, stdin, stdout, stderr, detach_keys, false)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    };
    let raw = if started && tty && stdin {
        RawMode::enter()
    } else {
        None
    };
    let (streams, waiter, raw) = if started {
        let (streams, waiter, start) = tokio::join!(
            attach,
            wait::register(client, id, condition),
            start_one(client, id)
        );
        if let Err(e) = start {
            drop(raw);
            return Err(CliError::Start(Box::new(e)));
        }
        (streams?, waiter?, raw)
    } else {
        let (streams, waiter) = tokio::join!(attach, wait::register(client, id, condition));
        let (streams, waiter) = (streams?, waiter?);
        let raw = if tty && stdin { RawMode::enter() } else { None };
        if let Err(e) = start_one(client, id).await {
            drop(raw);
            return Err(CliError::Start(Box::new(e)));
        }
        (streams, waiter, raw)
    };
    let resizer = tty.then(|| {
        tty::follow_window(
            client.docker.clone(),
            tty::Target::Container(id.to_string()),
        )
    });
    let proxies = if sig_proxy && !tty {
        forward_signals(&client.docker, id)
    } else {
        Vec::new()
    };
    let detached = match streams {
        Some((out, inp)) => pump(client, out, inp, stdin, tty, detach_keys).await,
        None => Ok(false),
    };
    if let Some(r) = resizer {
        r.abort();
    }
    drop(raw);
    let stop_proxies = || proxies.iter().for_each(|p| p.abort());
    match detached {
        Ok(true) => {
            stop_proxies();
            Ok(0)
        }
        Err(e) => {
            stop_proxies();
            Err(e)
        }
        Ok(false) => {
            // signals keep going to the container until it has exited
            let code = waiter.status().await;
            stop_proxies();
            Ok(i32::try_from(code?).unwrap_or(125))
        }
    }
}

pub async fn run(client: &Client, opts: RunOpts) -> Result<i32> {
    let streams = opts.streams()?;
    if !opts.detach {
        check_tty(opts.tty, streams.stdin)?;
    }
    let size = if opts.tty { tty::size() } else { None };
    if opts.detach {
        let (id, _) = create(client, &opts, size, None).await?;
        // a process that cannot be started is 126/127 with -d too, as docker's run says
        start_one(client, &id)
            .await
            .map_err(|e| CliError::Start(Box::new(e)))?;
        outln!("{id}");
        return Ok(0);
    }
    let attaches = u32::from(streams.stdin || streams.stdout || streams.stderr);
    let (id, started) = create(client, &opts, size, Some(attaches)).await?;
    let condition = if opts.rm { "removed" } else { "next-exit" };
    attach_start_wait(
        client,
        &id,
        opts.tty,
        streams.stdin,
        streams.stdout,
        streams.stderr,
        opts.detach_keys.as_deref(),
        condition,
        opts.sig_proxy,
        started,
    )
    .await
}

pub async fn create_cmd(client: &Client, opts: RunOpts) -> Result<i32> {
    let size = if opts.tty { tty::size() } else { None };
    let (id, _) = create(client, &opts, size, None).await?;
    outln!("{id}");
    Ok(0)
}

#[derive(clap::Args, Debug, Clone)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn start(client: &Client, args: StartArgs) -> Result<i32> {
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            return Err(CliError::Usage(
                "you cannot start and attach multiple containers at once".into(),
            ));
        }
        let id = &args.containers[0];
        let info = client
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| client.err("inspect", e))?;
        let config = info.config.unwrap_or_default();
        let tty = config.tty.unwrap_or(false);
        let stdin = args.interactive && config.open_stdin.unwrap_or(false);
        check_tty(tty, stdin)?;
        return attach_start_wait(
            client,
            id,
            tty,
            stdin,
            true,
            true,
            args.detach_keys.as_deref(),
            "next-exit",
            true,
            false,
        )
        .await;
    }
    let done = each(
        &args.containers,
        |c| async move { start_one(client, &c).await },
    )
    .await;
    if done.is_err() {
        eprintln!(
            "Error: failed to start containers: {}",
            args.containers.join(", ")
        );
    }
    done
}

#[derive(clap::Args, Debug, Clone)]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    pub container: String,
}

pub async fn attach(client: &Client, args: AttachArgs) -> Result<i32> {
    let info = client
        .docker
        .inspect_container(&args.container, None)
        .await
        .map_err(|e| client.err("inspect", e))?;
    let state = info.state.clone().unwrap_or_default();
    if !state.running.unwrap_or(false) {
        return Err(CliError::Usage(
            "You cannot attach to a stopped container, start it first".into(),
        ));
    }
    if state.paused.unwrap_or(false) {
        return Err(CliError::Usage(
            "You cannot attach to a paused container, unpause it first".into(),
        ));
    }
    let id = info.id.clone().unwrap_or(args.container.clone());
    let config = info.config.unwrap_or_default();
    let tty = config.tty.unwrap_or(false);
    let stdin = !args.no_stdin && config.open_stdin.unwrap_or(false);
    check_tty(tty, stdin)?;
    let (out, inp) = attach_streams(
        client,
        &id,
        stdin,
        true,
        true,
        args.detach_keys.as_deref(),
        false,
    )
    .await?;
    let waiter = wait::register(client, &id, "not-running").await?;
    let raw = if tty && stdin { RawMode::enter() } else { None };
    let target = tty::Target::Container(id.clone());
    if tty {
        tty::nudge(&client.docker, &target).await;
    }
    let resizer = tty.then(|| tty::follow_window(client.docker.clone(), target));
    let proxies = if args.sig_proxy && !tty {
        forward_signals(&client.docker, &id)
    } else {
        Vec::new()
    };
    let detached = pump(client, out, inp, stdin, tty, args.detach_keys.as_deref()).await;
    if let Some(r) = resizer {
        r.abort();
    }
    proxies.iter().for_each(|p| p.abort());
    drop(raw);
    if detached? {
        return Ok(0);
    }
    let code = waiter.status().await?;
    Ok(i32::try_from(code).unwrap_or(125))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_map_to_docker_exit_codes() {
        assert_eq!(
            exit_code_for_start_error("exec: \"nosuch\": executable file not found in $PATH"),
            127
        );
        assert_eq!(
            exit_code_for_start_error("exec: \"/etc/passwd\": permission denied"),
            126
        );
        assert_eq!(exit_code_for_start_error("No such image: x"), 125);
    }

    #[test]
    fn detach_keys_are_found_across_reads() {
        let mut s = EscapeScanner {
            keys: vec![16, 17],
            matched: 0,
        };
        assert_eq!(s.feed(b"ab"), (b"ab".to_vec(), false));
        assert_eq!(s.feed(&[b'x', 16]), (b"x".to_vec(), false));
        assert_eq!(s.feed(b"y"), (vec![16, b'y'], false));
        assert_eq!(s.feed(&[16, 16]), (vec![16], false));
        assert_eq!(s.feed(&[17, b'z']), (vec![], true));
        let mut none = EscapeScanner {
            keys: vec![],
            matched: 0,
        };
        assert_eq!(none.feed(&[16, 17]), (vec![16, 17], false));
    }

    #[test]
    fn default_tag() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("busybox:1"), "busybox:1");
        assert_eq!(
            with_default_tag("reg:5000/busybox"),
            "reg:5000/busybox:latest"
        );
        assert_eq!(with_default_tag("b@sha256:ab"), "b@sha256:ab");
    }
}
