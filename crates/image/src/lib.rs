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
//!   `<data_root>/berth.db` (WAL), snapshots in `<data_root>/snapshots`); `content()`;
//!   `store_manifest(bytes, media_type) -> (Digest, media type)` (validates and stores a
//!   fetched manifest or index); `read_manifest(digest)`; `resolve_platform_manifest(digest)`
//!   (index → this platform's manifest); `register(&Reference, &manifest_or_index_digest) ->
//!   Image` once manifest, config and layers are in the content store (unpacks missing layers,
//!   in parallel; records the tag and the repo digest); `register_with(.., record_repo_digest)`;
//!   `resolve(str)` (reference, `name@digest`, full or short ID); `get(&id)`; `list()`; `tag`;
//!   `untag`; `tag_history`; `remove(str, force) -> Vec<RemoveAction>` (docker rmi rules);
//!   `gc()` / `gc_with_grace`; `manifest_bytes(&Image) -> (bytes, media type)` (what a push
//!   sends); for the engine: `prepare_container(key, &Image) -> Vec<Mount>` (leased),
//!   `add_container_ref`, `remove_container_snapshot`, `commit_container(key, base, config,
//!   created_by, comment, reference) -> Image`, `create_image(config, layers, reference)`,
//!   `layer_refcount`; `unpack_layer_blob(blob, diff_id, chain_id, parent)` to unpack a layer
//!   as soon as its download is done (register then reuses it); `add_blob_ref` /
//!   `remove_blob_refs` to hold blobs (builds, pulls) against gc; `release_blob_lease(owner,
//!   candidates)` drops a hold and deletes the candidates nothing needs; `discard_blobs`;
//!   `register_tagged(manifest, tags)` (image and tags in one transaction).
//!   Modes: the data root is 0710, `content/`, `snapshots/` and each layer directory 0700
//!   (fixed on open), so no other user can run what layers carry.
//!   Concurrency: `ImageStore` is `Send + Sync`, cheap to clone and to share in an `Arc`;
//!   the database is a small pool of WAL connections; registrations lease what they use
//!   and take no store-wide lock; gc and rmi delete only unreferenced rows and blobs, each
//!   checked and deleted in one transaction, and remove directories outside any lock.
//! - [`store::Image`] — `id` (config digest), `manifest_digest`, `manifest_media_type`,
//!   `manifest`, `config` ([`manifest::ImageConfig`], unknown fields kept), `layers`,
//!   `diff_ids`, `chain_ids`, `repo_tags`, `repo_digests`, `size`, `created`,
//!   `top_snapshot()`.
//! - [`manifest`] — media type constants, `MANIFEST_ACCEPT`, `parse_manifest`,
//!   `select_platform`, `Platform::host()/parse()`, `ImageConfig`, `chain_ids`.
//! - [`snapshot`] — `Snapshotter` trait (prepare/view/mounts/commit/remove/stat/usage/list),
//!   `OverlaySnapshotter`, `Mount` (data), `mount()` / `mount_with()` / `unmount()`.
//! - [`extract`] — `extract_layer(reader, dir, name, expected_diff_id)` (contained unpacking).
//! - [`diff`] — `write_diff(upper, w)`, `diff_to_blob(content, upper) -> LayerBlob`,
//!   `tar_to_blob`.
//! - [`archive`] — `save`, `load`, `load_oci_dir`, `export_oci_layout`, `import`.
//! - [`error::Error`] with `kind() -> ErrorKind` (NotFound, AlreadyExists, InvalidArgument,
//!   Conflict, Unavailable, Internal) for the API's status mapping.
#![forbid(unsafe_code)]

pub mod archive;
pub mod content;
pub mod db;
pub mod diff;
pub mod digest;
pub mod error;
pub mod extract;
pub mod manifest;
pub mod query;
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
