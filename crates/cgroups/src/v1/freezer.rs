//! v1 freezer: write FROZEN/THAWED to `freezer.state` and wait for the state to settle
//! (FREEZING can linger while tasks are in uninterruptible sleep; the write is repeated,
//! which makes the kernel retry the stragglers).

use std::path::Path;
use std::time::Duration;

use crate::common::{read_trimmed, wait_until, write_file};
use crate::{Error, Result};

const STATE: &str = "freezer.state";

fn set_state(dir: &Path, want: &str) -> Result<()> {
    let path = dir.join(STATE);
    let settled = wait_until(Duration::from_secs(5), || {
        write_file(&path, want)?;
        Ok(read_trimmed(&path)? == want)
    })?;
    if settled {
        return Ok(());
    }
    if want == "FROZEN" {
        // Leave the container running rather than half frozen.
        write_file(&path, "THAWED")?;
    }
    Err(Error::Timeout {
        what: format!("waiting for {want} in"),
        path,
    })
}

pub(super) fn freeze(dir: &Path) -> Result<()> {
    set_state(dir, "FROZEN")
}

pub(super) fn thaw(dir: &Path) -> Result<()> {
    set_state(dir, "THAWED")
}

pub(super) fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(read_trimmed(&dir.join(STATE))? == "FROZEN")
}
