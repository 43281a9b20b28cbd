//! The `berth` binary: wires the library crates to a command line. No logic lives here
//! beyond parsing arguments and printing results.

mod daemon_cmd;
// The container CLI: a Docker Engine API client (src/cli).
mod cli;
mod image_client;
mod image_cmd;
mod registry_cmd;
mod runtime_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth", version, about = "A container engine for Linux")]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// The flags every command takes.
#[derive(clap::Args)]
struct Globals {
    /// Where berth keeps images, containers and its database.
    #[arg(
        long,
        global = true,
        env = "BERTH_DATA_ROOT",
        default_value = "/var/lib/berth"
    )]
    data_root: std::path::PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// The OCI runtime (runc-compatible command line).
    Runtime(runtime_cmd::RuntimeArgs),
    #[command(flatten)]
    Image(image_cmd::ImageCommand),
    #[command(flatten)]
    Registry(registry_cmd::RegistryCommand),
    /// The per-container monitor, started by the daemon (internal).
    #[command(hide = true)]
    Shim(berth_shim::ShimArgs),
    /// The daemon: serves the Docker Engine API and owns containers and images.
    Daemon(daemon_cmd::DaemonArgs),
    // the container commands (run, ps, exec, ...), clients of the daemon's API
    #[command(flatten)]
    Container(cli::ContainerCommand),
}

fn main() {
    // `berth-runtime ARGS` (a link to this binary) behaves as `berth runtime ARGS`, so that
    // engines that want a runc-like executable path can use it.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("berth")
        .to_string();
    if invoked_as == "berth-runtime" || invoked_as == "runc" {
        std::process::exit(runtime_cmd::main_from_args(args.split_off(1)));
    }
    // `berth shim ...` (started by the daemon for every container) parses only its own
    // flags: the whole CLI's parser would allocate heap that an idle shim keeps.
    if args.get(1).is_some_and(|a| a == "shim") {
        #[derive(clap::Parser)]
        struct Shim {
            #[command(flatten)]
            args: berth_shim::ShimArgs,
        }
        let parsed = <Shim as clap::Parser>::parse_from(
            std::iter::once(std::ffi::OsString::from("berth shim")).chain(args.split_off(2)),
        );
        std::process::exit(berth_shim::main(parsed.args));
    }
    if args.get(1).is_some_and(|a| a == "shim-zygote") {
        std::process::exit(berth_shim::zygote::main());
    }
    // Fast path: `berth runtime ...` skips the outer parser's work entirely.
    if args.get(1).map(|a| a == "runtime").unwrap_or(false) {
        std::process::exit(runtime_cmd::main_from_args(args.split_off(2)));
    }
    // Engines that resolve the `berth-runtime` link call the binary as `berth` with runc's
    // global flags first; no berth command starts with them.
    let runc_global = |a: &std::ffi::OsString| {
        let a = a.to_string_lossy();
        [
            "--root",
            "--log",
            "--log-format",
            "--systemd-cgroup",
            "--criu",
            "--rootless",
        ]
        .iter()
        .any(|f| a == *f || a.starts_with(&format!("{f}=")))
    };
    if args.get(1).is_some_and(runc_global) {
        std::process::exit(runtime_cmd::main_from_args(args.split_off(1)));
    }
    // `-H`/`--host` before the command, as docker takes it (not a clap global: `history -H`
    // means something else)
    cli::take_tls_flags(&mut args);
    let host = cli::take_host_flag(&mut args);
    // `berth run`, whose time is a container start's: its parser is built alone. Building
    // the whole command line's (sixty commands and their flags) cost every run ~0.4 ms and
    // 1 MiB of heap faulted in; the result, the help and the errors are the same.
    if args.get(1).is_some_and(|a| a == "run") {
        #[derive(Parser)]
        #[command(name = "berth")]
        struct RunOnly {
            #[command(flatten)]
            _globals: Globals,
            #[command(subcommand)]
            command: RunCommand,
        }
        #[derive(Subcommand)]
        enum RunCommand {
            /// Create and run a new container from an image
            Run(Box<cli::RunOpts>),
        }
        let code = match RunOnly::try_parse_from(&args) {
            Ok(RunOnly {
                command: RunCommand::Run(o),
                ..
            }) => cli::main(cli::ContainerCommand::Run(o), host),
            Err(e) => usage_error(e, &args),
        };
        std::process::exit(code);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => std::process::exit(usage_error(e, &args)),
    };
    // The store belongs to the daemon: a client that names one would silently talk to
    // whatever daemon -H points at, so it is refused (`berth daemon --data-root` is the flag).
    let names_root = args
        .iter()
        .any(|a| a == "--data-root" || a.to_string_lossy().starts_with("--data-root="));
    if names_root && matches!(cli.command, Command::Image(_) | Command::Registry(_)) {
        eprintln!(
            "berth: --data-root belongs to `berth daemon`; image commands are clients of a \
             daemon (start one with `berth daemon --data-root DIR -H unix:///PATH`, then use -H)"
        );
        std::process::exit(cli::EXIT_DAEMON);
    }
    let code = match cli.command {
        Command::Runtime(_) => unreachable_runtime(),
        Command::Image(c) => report(image_cmd::run(c, host.clone())),
        Command::Registry(c) => report(registry_cmd::run(c, host.clone())),
        Command::Shim(a) => berth_shim::main(a),
        Command::Daemon(a) => daemon_cmd::run(
            a,
            std::env::var_os("BERTH_DATA_ROOT")
                .map(Into::into)
                .or(Some(cli.globals.data_root.clone()))
                .filter(|_| std::env::var_os("BERTH_DATA_ROOT").is_some()),
        ),
        Command::Container(c) => cli::main(c, host),
    };
    std::process::exit(code);
}

/// Prints clap's message; a usage error in a container command exits 125 as docker's does.
fn usage_error(e: clap::Error, args: &[std::ffi::OsString]) -> i32 {
    let _ = e.print();
    if !e.use_stderr() {
        return 0;
    }
    // the command is the first word that is neither a flag nor --data-root's value
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    let mut command = None;
    while let Some(w) = words.next() {
        if w == "--data-root" {
            words.next();
        } else if !w.starts_with('-') {
            command = Some(w);
            break;
        }
    }
    let container_cmd = command.is_some_and(|c| cli::owns(&c));
    if container_cmd {
        cli::EXIT_DAEMON
    } else {
        e.exit_code()
    }
}

fn unreachable_runtime() -> i32 {
    // handled by the fast path above, which sees every `berth runtime` invocation
    eprintln!("berth: runtime arguments could not be dispatched");
    2
}

fn report(r: anyhow::Result<i32>) -> i32 {
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {}", error_chain(&e));
            1
        }
    }
}

/// An error and its causes on one line, each cause once: many errors already quote their
/// cause in their own message, and `{:#}` would print it again.
pub(crate) fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
