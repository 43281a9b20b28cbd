//! v2 pids: the files and their syntax are the same as in v1 (`pids.max`, `pids.current`),
//! so this reuses the v1 code.

pub(super) use crate::v1::pids::{set, stats};
