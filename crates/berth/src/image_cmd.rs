//! Image commands that work on the local store: images, tag, rmi, inspect, prune, history,
//! save, load, import. (Owned by the image work; see crates/image.)

use std::path::Path;

#[derive(clap::Subcommand)]
pub enum ImageCommand {}

pub fn run(cmd: ImageCommand, _data_root: &Path) -> anyhow::Result<i32> {
    match cmd {}
}
