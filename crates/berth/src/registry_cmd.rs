//! Registry commands: pull, push, login, logout. (Owned by the registry work; see
//! crates/registry.)

use std::path::Path;

#[derive(clap::Subcommand)]
pub enum RegistryCommand {}

pub fn run(cmd: RegistryCommand, _data_root: &Path) -> anyhow::Result<i32> {
    match cmd {}
}
