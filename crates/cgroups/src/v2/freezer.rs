//! v2 freezer: `cgroup.freeze` asks, the `frozen` key of `cgroup.events` tells when every
//! task has actually stopped (or resumed).

use std::path::Path;
use std::time::Duration;

use crate::common::{read_flat_keyed, wait_until, write_file};
use crate::{Error, Result};

pub(super) fn set(dir: &Path, frozen: bool) -> Result<()> {
    let want = u64::from(frozen);
    write_file(&dir.join("cgroup.freeze"), &want.to_string())?;
    let settled = wait_until(Duration::from_secs(5), || Ok(frozen_state(dir)? == want))?;
    if settled {
        return Ok(());
    }
    if frozen {
        // Leave the container running rather than half frozen.
        write_file(&dir.join("cgroup.freeze"), "0")?;
    }
    Err(Error::Timeout {
        what: format!("waiting for frozen={want} in"),
        path: dir.join("cgroup.events"),
    })
}

fn frozen_state(dir: &Path) -> Result<u64> {
    let events = read_flat_keyed(&dir.join("cgroup.events"))?;
    Ok(events.get("frozen").copied().unwrap_or(0))
}

pub(super) fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(frozen_state(dir)? == 1)
}
