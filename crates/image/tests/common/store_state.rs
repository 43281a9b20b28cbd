//! What a failed load or pull must leave exactly as it was: a snapshot of an image store's
//! blob files, ingest files, snapshots, images and tags. Shared by berth-image's
//! load_hostile.rs and berth-registry's pull_hostile.rs (included there by path).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use berth_image::{ImageStore, Snapshotter};

#[derive(Debug, PartialEq, Eq)]
pub struct StoreState {
    pub blobs: BTreeSet<String>,
    pub ingest: BTreeSet<String>,
    pub snapshots: BTreeSet<String>,
    pub snapshot_dirs: BTreeSet<String>,
    pub images: BTreeSet<String>,
    pub tags: BTreeSet<String>,
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // lock files are reused, never content
                .filter(|n| !n.ends_with(".lock") && n != "locks")
                .collect()
        })
        .unwrap_or_default()
}

pub fn state(store: &ImageStore) -> StoreState {
    let root = store.root();
    let images = store.list().expect("list");
    StoreState {
        blobs: names(&root.join("content/blobs/sha256")),
        ingest: names(&root.join("content/ingest")),
        snapshots: store
            .snapshotter()
            .list()
            .expect("snapshots")
            .into_iter()
            .map(|i| i.key)
            .collect(),
        snapshot_dirs: names(&root.join("snapshots")),
        tags: images
            .iter()
            .flat_map(|i| i.repo_tags.iter().map(|t| t.to_string()))
            .collect(),
        images: images.iter().map(|i| i.id.to_string()).collect(),
    }
}
