//! Images for berth: a content store of blobs addressed by digest, image references, image
//! metadata (OCI and Docker schema 2), layers unpacked once into overlayfs snapshots keyed by
//! chain ID, and the tags kept in an embedded SQLite database.
//!
//! INTERFACE CONTRACT (the registry client and, later, the engine are written against these
//! names; keep them):
//! - [`digest::Digest`] — `sha256:<64 lowercase hex>`; `FromStr` validates (the error names
//!   the bad string), `Display`, serde as a string; `Digest::of(bytes)`, `hex()`,
//!   `algorithm()`, `short()`; [`digest::Digester`] (`impl Write`, `finish() -> Digest`),
//!   [`digest::DigestReader`].
//! - [`reference::Reference`] — `FromStr` normalises like Docker (`busybox` →
//!   `docker.io/library/busybox:latest`); pub fields `registry`, `repository`,
//!   `tag: Option<String>`, `digest: Option<Digest>`; `Display` full form; `familiar()` short
//!   form with tag (`busybox:latest`), `familiar_name()` without (`busybox`, what the
//!   REPOSITORY column shows); `registry_host()` (`docker.io` → `registry-1.docker.io`);
//!   `tag_or_latest()`.
//! - [`content::ContentStore`] — blobs at `<root>/blobs/sha256/<hex>`: `open(root)`, `has`,
//!   `size`, `open_blob -> File`, `read -> Vec<u8>` (verified), `writer(expected, size) ->
//!   BlobWriter` (`impl Write`; `already_present()`; `commit()` verifies size and digest,
//!   fsyncs, renames; concurrent writers of one digest do the work once), `write_bytes`,
//!   `delete`, `list`.
//! - [`store::ImageStore`] — `open(data_root)` (content in `<data_root>/content`, SQLite in
//!   `<data_root>/berth.db`, snapshots in `<data_root>/snapshots`); `content()`;
//!   `store_manifest(bytes, media_type) -> (Digest, media type)` (validates and stores a
//!   fetched manifest or index); `read_manifest(digest)`; `resolve_platform_manifest(digest)`
//!   (index → this platform's manifest); `register(&Reference, &manifest_or_index_digest) ->
//!   Image` once manifest, config and layers are in the content store; `resolve(str)`;
//!   `list()`; `get(&id)`; `tag`; `untag`; `remove(str, force)`; `gc()`;
//!   `manifest_bytes(&Image) -> (bytes, media type)` (what a push sends);
//!   `prepare_container(key, &Image) -> Vec<Mount>`, `add_container_ref`,
//!   `remove_container_snapshot` (for the engine).
//! - [`store::Image`] — `id` (config digest), `manifest_digest`, `manifest_media_type`,
//!   `manifest`, `config` ([`manifest::ImageConfig`], unknown fields kept), `layers`,
//!   `diff_ids`, `chain_ids`, `repo_tags`, `repo_digests`, `size`, `created`.
//! - [`manifest`] — media type constants, `MANIFEST_ACCEPT`, `parse_manifest`,
//!   `select_platform`, `Platform::host()`, `ImageConfig`, `chain_ids`.
//! - [`snapshot`] — `Snapshotter` trait, `OverlaySnapshotter`, `Mount` (data), `mount()` /
//!   `unmount()`.
#![forbid(unsafe_code)]

pub mod archive;
pub mod content;
pub mod db;
pub mod diff;
pub mod digest;
pub mod error;
pub mod extract;
pub mod manifest;
pub mod reference;
pub mod snapshot;
pub mod store;

pub use content::{BlobWriter, ContentStore};
pub use digest::{Digest, Digester};
pub use error::{Error, ErrorKind, Result};
pub use manifest::{Descriptor, ImageConfig, Platform};
pub use reference::Reference;
pub use snapshot::{Mount, OverlaySnapshotter, Snapshotter};
pub use store::{Image, ImageStore};
