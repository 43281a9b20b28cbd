//! Images for berth: a content store of blobs addressed by digest, image references, image
//! metadata (OCI and Docker schema 2), layers unpacked once into overlayfs snapshots keyed by
//! chain ID, and the tags kept in an embedded SQLite database.
//!
//! INTERFACE CONTRACT (the registry client and, later, the engine are written against these
//! names; keep them):
//! - `digest::Digest` — `sha256:<64 hex>`; `FromStr` validates, `Display` prints it;
//!   `Digest::of(bytes)`; `Digest::hex()`; `Digest::algorithm()`.
//! - `reference::Reference` — `FromStr` normalises like Docker (`busybox` →
//!   `docker.io/library/busybox:latest`); fields `registry`, `repository`, `tag: Option<String>`,
//!   `digest: Option<Digest>`; `Display` gives the full form, `familiar()` the short one that
//!   `docker images` shows; `registry_host()` maps `docker.io` → `registry-1.docker.io`.
//! - `content::ContentStore` — `open(root)`, `has(&Digest) -> bool`, `size(&Digest)`,
//!   `open_blob(&Digest) -> File`, `read(&Digest) -> Vec<u8>` (verified),
//!   `writer(expected: &Digest) -> BlobWriter` (`impl Write`, `commit()` verifies the digest,
//!   fsyncs and renames; concurrent writers of one digest do the work once),
//!   `write_bytes(&[u8]) -> Digest`.
//! - `store::ImageStore` — `open(data_root)`: content store + database + snapshots;
//!   `content()`; `register(reference, manifest_digest)` after manifest, config and layer
//!   blobs are in the content store (unpacks layers that are not yet snapshots, records the
//!   tag); `resolve(reference_or_id) -> Image` (manifest digest, config digest, layer digests,
//!   config); `list()`; `tag`; `untag/remove`; `gc()`.
