//! `start`: release a created container's init to exec the user's program, then run the
//! poststart hooks.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::container::Status;
use crate::error::{Error, Result};
use crate::Runtime;

impl Runtime {
    pub fn start(&self, id: &str) -> Result<()> {
        let c = self.load(id)?;
        self.start_container(&c)
    }

    /// `start` for a container already loaded (as `create` returns it to `run`).
    pub fn start_container(&self, c: &crate::Container) -> Result<()> {
        let id = c.record.id.as_str();
        let status = c.status();
        if status != Status::Created {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                op: "start",
            });
        }
        let fifo = c.fifo_path();
        // Non-blocking: if init is gone there is no reader and the open fails with ENXIO
        // instead of hanging.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ENXIO) {
                    Error::WrongState {
                        id: id.into(),
                        status: "stopped".into(),
                        op: "start",
                    }
                } else {
                    Error::io("open", &fifo, e)
                }
            })?;
        f.write_all(b"0")
            .map_err(|e| Error::io("write", &fifo, e))?;
        drop(f);
        std::fs::remove_file(&fifo).map_err(|e| Error::io("remove", &fifo, e))?;
        c.run_poststart();
        Ok(())
    }
}

impl crate::Container {
    /// The poststart hooks, once the process has been let go; a failing one is logged, as
    /// the process runs already.
    pub(crate) fn run_poststart(&self) {
        if !self.record.has_poststart {
            return;
        }
        let spec = match self.spec() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(container = %self.record.id, error = %e, "poststart hooks: read the spec");
                return;
            }
        };
        if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()) {
            // the state of the process just started, also when it has already exited
            // (a short command, a busy machine): its pid, not a stopped one's 0
            let mut st = self.oci_state();
            st.status = Status::Running;
            st.pid = self.record.pid;
            if let Err(e) = crate::hooks::run(h, &st) {
                tracing::warn!(container = %self.record.id, error = %e, "poststart hook failed");
            }
        }
    }
}
