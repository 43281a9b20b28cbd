//! berth's OCI runtime: turns a bundle (config.json + rootfs) into a process that is isolated
//! (namespaces), limited (cgroups, through berth-cgroups) and confined (capabilities, seccomp,
//! no_new_privs), with the lifecycle of the OCI runtime spec: create, start, state, kill,
//! delete, plus exec, pause, resume, update, ps, events. The runc-compatible command line lives
//! in the berth binary; this crate is the library behind it and behind the engine.
//!
//! # Who may call what
//!
//! The library is meant to be called from a long-lived process and leaves that process as it
//! was: its namespaces, signal mask and dispositions, working directory. The container's
//! processes start with every signal unblocked and at its default disposition, and with the
//! stdio the caller passes ([`CreateOptions::stdio`], [`ExecOptions::stdio`]) or its own 0-2.
//!
//! - Forking operations, [`Runtime::create`] (and so `run`) and [`Runtime::exec`], must be
//!   called from a **single-threaded** process (`berth shim`, `berth runtime`): the code
//!   between fork and exec runs in a copy of the caller, which must hold no lock of another
//!   thread. They refuse a multithreaded caller with an error that says so, before they make
//!   anything. The pid and time namespaces, which apply to a process's children, are entered
//!   in an intermediate child, never in the caller.
//! - Everything else (`kill`, `delete`, `pause`, `resume`, `pids`, `stats`, `update`, `load`,
//!   `list`, `start`) forks nothing and may be called from any thread of a multithreaded
//!   process such as the daemon. The daemon never calls a forking operation: it asks a shim.

pub mod channel;
pub mod container;
pub mod error;
pub mod hooks;
pub mod init;
pub mod namespaces;
pub mod personality;
pub mod process;
pub mod reaper;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod sysctl;
pub mod tty;
pub mod wait;

pub use container::create::CreateOptions;
pub use container::exec::ExecOptions;
pub use container::{Container, OciState, Status};
pub use error::{Error, Result};

use std::path::PathBuf;

/// The runtime, rooted at its state directory (`--root`, /run/berth by default).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime { root: root.into() }
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        Container::load(&self.root, id)
    }

    pub fn list(&self) -> Result<Vec<Container>> {
        Container::list(&self.root)
    }
}

/// Reads once what every `create` in this process and in the processes it forks would read
/// again (the cgroup mounts, from /proc/self/mountinfo): for the shims' zygote, whose forks
/// inherit it.
pub fn warm_up() {
    berth_cgroups::warm_up();
}

/// CVE-2019-5736: before the runtime creates or joins a container, make sure no process of
/// a container can overwrite the host's binary through /proc/<pid>/exe. Nothing to do when the
/// binary sits on a read-only mount (or we already re-executed). Otherwise re-execute through
/// a read-only bind mount of the binary in a private (slave) mount namespace — one exec, no
/// copy — or, when `shared_propagation()` says so (the container's mounts must propagate
/// back to the host, which a slave namespace would stop), from a sealed in-memory copy. The
/// question is asked only when a re-exec is due, so the re-executed process does not read the
/// bundle's config a second time.
pub fn protect_binary(shared_propagation: impl FnOnce() -> bool) {
    if !berth_sys::executable_is_writable() || berth_sys::running_from_sealed_copy() {
        return;
    }
    let e = if shared_propagation() {
        berth_sys::reexec_from_sealed_copy()
    } else {
        let e = berth_sys::reexec_from_readonly_bind();
        tracing::debug!(error = %e, "read-only bind re-exec failed; copying the binary instead");
        berth_sys::reexec_from_sealed_copy()
    };
    tracing::warn!(error = %e, "could not re-execute from a protected binary; continuing");
}

/// Whether the container must see the host's own mount namespace: its config asks for mounts
/// that propagate back to the host ("shared", "rshared"), or has no mount namespace at all.
/// Judged from the raw file, so that no second parse is needed; a false "yes" only costs the
/// slower protection.
pub fn wants_shared_propagation(bundle: &std::path::Path) -> bool {
    match std::fs::read(bundle.join("config.json")) {
        // "shared" and "rshared"; and no namespace of type "mount"
        Ok(d) => d.windows(7).any(|w| w == b"shared\"") || !d.windows(7).any(|w| w == b"\"mount\""),
        Err(_) => false,
    }
}
