//! `berth shim-zygote`: a small single-threaded process the daemon starts once, which forks
//! a shim for each container instead of the daemon executing `berth shim` every time.
//!
//! Executing the 30 MB static binary costs a couple of milliseconds per container here (page
//! faults, libc's start-up, argument parsing), about a tenth of `run --rm`; a fork of this
//! idle process costs a fraction of that, and the shims share its pages until they write
//! them. The daemon itself cannot fork shims: it is multithreaded.
//!
//! Protocol, over the SOCK_SEQPACKET socket that is the zygote's stdin: the daemon sends one
//! datagram per shim, the JSON array of `berth shim` arguments (without `berth shim`), with
//! two descriptors attached (SCM_RIGHTS): what becomes the shim's stdout (its one-line
//! report) and stderr. The zygote forks; the child runs the shim exactly as `berth shim`
//! would with those as its stdout and stderr (reporting on the stdout), and the zygote answers
//! one datagram, `{"ok":true}` once it has forked or `{"error":"..."}`. The shims are the
//! zygote's children, reaped by the kernel (SIGCHLD is ignored here: no zombie waits for a
//! zygote blocked on its socket), until it ends; then they are the subreaper's or init's.
//! End of file on the socket (the daemon is gone) ends the zygote; running shims do not
//! depend on it. (A second fork in the child, so that the shim was never the zygote's, cost
//! every start a fork, an exit and a wait, ~0.3 ms here.)

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{send, MsgFlags};

use crate::ShimArgs;

/// The zygote's loop on `sock` (its stdin). Returns its exit status.
pub fn main() -> i32 {
    // fd 0 is the socket the daemon gave us as stdin
    let sock = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(s) => s,
        Err(_) => return 1,
    };
    // Stdin itself becomes /dev/null, so a forked shim does not hold the daemon's socket.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
    }
    // Only from a protected binary (the daemon starts us from a read-only mount): a shim
    // forked from here cannot re-execute itself to get there.
    if berth_sys::executable_is_writable() && !berth_sys::running_from_sealed_copy() {
        let _ = send(sock.as_raw_fd(), b"writable", MsgFlags::empty());
        return 1;
    }
    // Exited shims are reaped by the kernel; each child puts SIGCHLD back at once (below).
    if berth_sys::set_sigchld_ignored(true).is_err() {
        return 1;
    }
    // What every shim would otherwise read for itself: the cgroup mounts.
    berth_runtime::warm_up();
    if send(sock.as_raw_fd(), b"ready", MsgFlags::empty()).is_err() {
        return 1;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, fds) = match receive(&sock, &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => return 0,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return 1,
        };
        let answer = match serve(&buf[..n], fds, &sock) {
            Ok(()) => serde_json::json!({ "ok": true }),
            Err(e) => serde_json::json!({ "error": e }),
        };
        let _ = send(
            sock.as_raw_fd(),
            answer.to_string().as_bytes(),
            MsgFlags::empty(),
        );
    }
}

fn receive(sock: &OwnedFd, buf: &mut [u8]) -> std::io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let (n, fds) = berth_sys::recv_with_fds(sock.as_fd(), buf)?;
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some((n, fds)))
}

fn serve(req: &[u8], mut fds: Vec<OwnedFd>, sock: &OwnedFd) -> Result<(), String> {
    let argv: Vec<String> =
        serde_json::from_slice(req).map_err(|e| format!("zygote request: {e}"))?;
    if fds.len() != 2 {
        return Err(format!(
            "zygote request: {} descriptors attached, 2 expected",
            fds.len()
        ));
    }
    #[derive(clap::Parser)]
    struct Shim {
        #[command(flatten)]
        args: ShimArgs,
    }
    let argv_shown = argv.clone();
    let parsed = <Shim as clap::Parser>::try_parse_from(
        std::iter::once("berth shim".to_string()).chain(argv),
    )
    .map_err(|e| format!("shim arguments: {e}"))?;
    let err = fds.pop().ok_or("no stderr")?;
    let out = fds.pop().ok_or("no stdout")?;
    match berth_sys::clone_fork(0).map_err(|e| format!("fork a shim: {e}"))? {
        berth_sys::Forked::Child => {
            // First of all: the shim reaps its container's init, and the init would inherit
            // an ignored SIGCHLD across exec (a fresh process has it at its default).
            if berth_sys::set_sigchld_ignored(false).is_err() {
                berth_sys::exit_child(1)
            }
            let ok = nix::unistd::dup2(out.as_raw_fd(), 1).is_ok()
                && nix::unistd::dup2(err.as_raw_fd(), 2).is_ok();
            drop((out, err));
            // the daemon's socket is the zygote's, not the shim's
            let _ = nix::unistd::close(sock.as_raw_fd());
            // Shown as what it is, `berth shim --id <id>`, not as the zygote it was forked
            // from (the zygote leaves room for this in its argument area).
            let exe = std::env::args_os().nth(2).unwrap_or_else(|| "berth".into());
            let mut words: Vec<&[u8]> = vec![exe.as_encoded_bytes(), b"shim"];
            words.extend(argv_shown.iter().map(|a| a.as_bytes()));
            let _ = berth_sys::set_cmdline(&words);
            // The monitor itself: no second fork (this is the fork), and no check of the
            // binary, which was made once, above, for every shim forked here.
            let code = if ok {
                crate::monitor::run(parsed.args)
            } else {
                1
            };
            berth_sys::exit_child(code)
        }
        berth_sys::Forked::Parent(_) => {
            drop((out, err));
            Ok(())
        }
    }
}
