//! What the registry client needs of the local image store, as a small trait: the content
//! store to read and write blobs, `register` once a pulled image's blobs are all present,
//! the manifest of a local image to push, and which repositories on a registry are known to
//! hold an image's blobs (for cross-repository mounts). `ImageStore` implements it; tests
//! may pass their own.

use berth_image::content::ContentStore;
use berth_image::digest::Digest;
use berth_image::reference::Reference;
use berth_image::store::ImageStore;

pub type StoreResult<T> = std::result::Result<T, berth_image::error::Error>;

pub trait LocalImages: Send + Sync + 'static {
    /// The blobs.
    fn content(&self) -> &ContentStore;

    /// Records `reference` as the image whose manifest (with config and layers, all in the
    /// content store) is `manifest`; returns the image ID. `manifest` may be an index: the
    /// store then picks its platform's entry, which must be the platform the pull chose
    /// (`ImageStore::with_platform` when it is not the host's).
    fn register(&self, reference: &Reference, manifest: &Digest) -> StoreResult<Digest>;

    /// Unpacks one layer (its blob already in the content store) so that `register` finds
    /// it done; called as each download finishes so unpacking overlaps the others. Stores
    /// that unpack nothing need not implement it.
    fn unpack_layer(
        &self,
        _blob: &Digest,
        _diff_id: &Digest,
        _chain_id: &Digest,
        _parent: Option<&Digest>,
    ) -> StoreResult<()> {
        Ok(())
    }

    /// The manifest digest of the local image `reference` names.
    fn manifest_of(&self, reference: &Reference) -> StoreResult<Digest>;

    /// Repositories on the registry of `reference` (other than its own) that are known to
    /// hold the blobs of the image being pushed: a push mounts from them instead of
    /// uploading.
    fn mount_sources(&self, _reference: &Reference) -> Vec<String> {
        Vec::new()
    }

    /// Remembers that the image is now in the registry as `reference` (by `manifest`), so
    /// later pushes to other repositories of that registry can mount from it.
    fn record_pushed(&self, _reference: &Reference, _manifest: &Digest) {}

    /// Holds `digests` for `owner` (a pull in progress) so that a concurrent rmi or prune
    /// does not delete a blob the pull found present and skipped. Taken before the pull
    /// looks at what is present.
    fn hold_blobs(&self, _owner: &str, _digests: &[Digest]) -> StoreResult<()> {
        Ok(())
    }

    /// Drops what `hold_blobs` took for `owner`.
    fn release_blobs(&self, _owner: &str) {}

    /// Drops `owner`'s holds and deletes those of `candidates` (blobs a failed pull
    /// downloaded) that nothing else needs.
    fn release_and_discard_blobs(&self, owner: &str, _candidates: &[Digest]) {
        self.release_blobs(owner)
    }

    /// Removes the layer snapshots `chain_ids` (in chain order; a failed pull unpacked them)
    /// that no image, container or child layer uses.
    fn discard_layers(&self, _chain_ids: &[Digest]) {}
}

impl LocalImages for ImageStore {
    fn content(&self) -> &ContentStore {
        ImageStore::content(self)
    }

    fn register(&self, reference: &Reference, manifest: &Digest) -> StoreResult<Digest> {
        ImageStore::register(self, reference, manifest).map(|image| image.id)
    }

    fn unpack_layer(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        chain_id: &Digest,
        parent: Option<&Digest>,
    ) -> StoreResult<()> {
        self.unpack_layer_blob(blob, diff_id, chain_id, parent)
    }

    fn manifest_of(&self, reference: &Reference) -> StoreResult<Digest> {
        self.resolve(&reference.to_string())
            .map(|image| image.manifest_digest)
    }

    fn mount_sources(&self, reference: &Reference) -> Vec<String> {
        // Repo digests are recorded when an image is pulled from or pushed to a repository,
        // so they say where its blobs are known to be (tags alone do not).
        let Ok(image) = self.resolve(&reference.to_string()) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for r in &image.repo_digests {
            if r.registry == reference.registry
                && r.repository != reference.repository
                && !out.contains(&r.repository)
            {
                out.push(r.repository.clone());
            }
        }
        out
    }

    fn hold_blobs(&self, owner: &str, digests: &[Digest]) -> StoreResult<()> {
        for d in digests {
            self.add_blob_ref(d, owner)?;
        }
        Ok(())
    }

    fn release_blobs(&self, owner: &str) {
        if let Err(e) = self.remove_blob_refs(owner, None) {
            tracing::warn!(owner, error = %e, "could not drop a pull's blob leases");
        }
    }

    fn discard_layers(&self, chain_ids: &[Digest]) {
        if let Err(e) = ImageStore::discard_layers(self, chain_ids) {
            tracing::warn!(error = %e, "could not remove a failed pull's layers");
        }
    }

    fn release_and_discard_blobs(&self, owner: &str, candidates: &[Digest]) {
        if let Err(e) = self.release_blob_lease(owner, candidates) {
            tracing::warn!(owner, error = %e, "could not discard a failed pull's blobs");
        }
    }

    fn record_pushed(&self, reference: &Reference, manifest: &Digest) {
        // Registering again is cheap (layers are already unpacked) and records the repo
        // digest; failing to record it only costs a later mount, so it is logged.
        if let Err(e) = ImageStore::register(self, reference, manifest) {
            tracing::warn!(reference = %reference, error = %e, "could not record the pushed repo digest");
        }
    }
}
