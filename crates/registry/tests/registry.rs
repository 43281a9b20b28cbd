//! Pull and push against a real registry: Debian's docker-registry (distribution 2.8),
//! started by the test on 127.0.0.1 with its storage in a tempdir. Skips with a reason when
//! the registry is not installed (tests/registry/setup.sh installs it), fails under CI=true.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::content::ContentStore;
use berth_image::digest::Digest;
use berth_image::reference::Reference;
use berth_registry::local::StoreResult;
use berth_registry::{
    progress, CredentialStore, Credentials, Error, LocalImages, PullOptions, PushOptions, Registry,
    Settings,
};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether the registry binary is there; under CI its absence is a failure, not a skip.
fn have_registry(test: &str) -> bool {
    if Path::new(REGISTRY_BIN).exists() {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{test}: docker-registry not installed (run tests/registry/setup.sh)");
    }
    eprintln!("SKIP: {test}: docker-registry not installed (run tests/registry/setup.sh)");
    false
}

/// A registry process on a free port of 127.0.0.1, killed and its storage removed on drop.
struct TestRegistry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    fn start(htpasswd: Option<(&str, &str)>) -> TestRegistry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut auth = String::new();
        if let Some((user, pass)) = htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils) must be installed for auth tests");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                file.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: berth-test-secret\n{auth}",
            dir.path().join("data").display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.path().join("registry.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .expect("start docker-registry");
        let reg = TestRegistry { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start on {}",
                reg.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// Where the registry keeps a blob's bytes (distribution's filesystem layout).
    fn blob_data(&self, d: &Digest) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }

    fn reference(&self, repo_tag: &str) -> Reference {
        format!("{}/{repo_tag}", self.addr).parse().unwrap()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local store for the tests: the real content store, tags in memory; the image ID is
/// the config digest, as Docker's is.
struct TestStore {
    content: ContentStore,
    _dir: tempfile::TempDir,
    tags: Mutex<Vec<(Reference, Digest)>>,
}

impl TestStore {
    fn new() -> Arc<TestStore> {
        let dir = tempfile::tempdir().unwrap();
        Arc::new(TestStore {
            content: ContentStore::open(dir.path().join("content")).unwrap(),
            _dir: dir,
            tags: Mutex::new(Vec::new()),
        })
    }
}

fn manifest_json(content: &ContentStore, d: &Digest) -> serde_json::Value {
    serde_json::from_slice(&content.read(d).unwrap()).unwrap()
}

impl LocalImages for TestStore {
    fn content(&self) -> &ContentStore {
        &self.content
    }
    fn register(&self, reference: &Reference, manifest: &Digest) -> StoreResult<Digest> {
        let m = manifest_json(&self.content, manifest);
        let config: Digest = m["config"]["digest"].as_str().unwrap().parse().unwrap();
        // Everything the manifest names must be present and intact.
        self.content.read(&config)?;
        for l in m["layers"].as_array().unwrap() {
            let d: Digest = l["digest"].as_str().unwrap().parse().unwrap();
            self.content.read(&d)?;
        }
        let mut tags = self.tags.lock().unwrap();
        tags.retain(|(r, _)| r != reference);
        tags.push((reference.clone(), manifest.clone()));
        Ok(config)
    }
    fn manifest_of(&self, reference: &Reference) -> StoreResult<Digest> {
        self.tags
            .lock()
            .unwrap()
            .iter()
            .find(|(r, _)| r == reference)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| berth_image::error::Error::ImageNotFound {
                reference: reference.to_string(),
            })
    }
}

fn layer_tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Pseudo-random bytes (incompressible, so a layer's size is what we ask for).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Builds a 3-layer OCI image in `store` and tags it `reference`; returns the manifest
/// digest and the layer digests.
fn build_image(
    store: &TestStore,
    reference: &Reference,
    big_layer: usize,
) -> (Digest, Vec<Digest>) {
    let tars = [
        layer_tar(&[("etc/os-release", b"NAME=berth-test\n".to_vec())]),
        layer_tar(&[("bin/blob", noise(big_layer, 7))]),
        layer_tar(&[("hello.txt", b"hello from berth\n".to_vec())]),
    ];
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for t in &tars {
        diff_ids.push(Digest::of(t).to_string());
        let gz = gzip(t);
        let d = store.content.write_bytes(&gz).unwrap();
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(),
            "size": gz.len(),
        }));
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = store.content.write_bytes(&config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cd.to_string(),
            "size": config.len(),
        },
        "layers": layers,
    });
    let md = store
        .content
        .write_bytes(&serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    store.register(reference, &md).unwrap();
    let layer_digests = layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap().parse().unwrap())
        .collect();
    (md, layer_digests)
}

fn client(creds_file: &Path) -> Registry {
    Registry::new(Settings::default(), CredentialStore::at(creds_file)).unwrap()
}

fn silent() -> Arc<dyn berth_registry::Progress> {
    Arc::new(progress::Silent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_into_empty_store() {
    if !have_registry("push_then_pull_into_empty_store") {
        return;
    }
    let reg = TestRegistry::start(None);
    let creds = tempfile::tempdir().unwrap();
    let r = client(&creds.path().join("config.json"));
    let reference = reg.reference("berth/test:1");
    let src = TestStore::new();
    let (md, layers) = build_image(&src, &reference, 200_000);

    let pushed = r
        .push(src.clone(), &reference, &PushOptions::default(), silent())
        .await
        .unwrap();
    assert_eq!(pushed.manifest_digest.as_ref(), Some(&md));
    assert_eq!(
        pushed.uploaded.len(),
        4,
        "3 layers and the config: {pushed:?}"
    );
    assert!(pushed.skipped.is_empty());
    assert!(pushed.chunked.is_empty());

    // Into an empty store: same manifest digest and image ID.
    let dst = TestStore::new();
    let pulled = r
        .pull(
            dst.clone(),
            &reference,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, md);
    assert_eq!(pulled.resolved_digest, md);
    let src_id = src.register(&reference, &md).unwrap();
    assert_eq!(pulled.image_id, src_id);
    assert_eq!(pulled.fetched.len(), 4);
    for l in &layers {
        assert_eq!(dst.content.read(l).unwrap(), src.content.read(l).unwrap());
    }

    // A credential helper in config.json does not stop an anonymous pull.
    std::fs::write(
        creds.path().join("config.json"),
        r#"{"credsStore": "desktop"}"#,
    )
    .unwrap();

    // Pulled again: nothing downloaded.
    let again = r
        .pull(
            dst.clone(),
            &reference,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap();
    assert!(again.fetched.is_empty());
    assert_eq!(again.skipped.len(), 4);

    // By digest, into another empty store.
    let by_digest: Reference = format!("{}/berth/test@{md}", reg.addr).parse().unwrap();
    let dst2 = TestStore::new();
    let pulled = r
        .pull(
            dst2.clone(),
            &by_digest,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, md);

    // Pushed again: every blob is already there (HEAD), none uploaded.
    let again = r
        .push(src.clone(), &reference, &PushOptions::default(), silent())
        .await
        .unwrap();
    assert!(again.uploaded.is_empty(), "{again:?}");
    assert_eq!(again.skipped.len(), 4);

    // To another repository of the same registry: blobs are mounted, not uploaded.
    let other = reg.reference("berth/other:2");
    src.register(&other, &md).unwrap();
    let opts = PushOptions {
        mount_from: vec!["berth/test".into()],
        ..PushOptions::default()
    };
    let mounted = r.push(src.clone(), &other, &opts, silent()).await.unwrap();
    assert_eq!(mounted.mounted.len(), 4, "{mounted:?}");
    assert!(mounted.uploaded.is_empty());

    // A tag that does not exist: NotFound, naming registry, repository and status.
    let missing = reg.reference("berth/test:nope");
    let e = r
        .pull(
            TestStore::new(),
            &missing,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), berth_registry::ErrorKind::NotFound, "{msg}");
    assert!(
        msg.contains(&reg.addr) && msg.contains("berth/test") && msg.contains("404"),
        "{msg}"
    );
    assert!(msg.contains("MANIFEST_UNKNOWN"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload() {
    if !have_registry("chunked_upload") {
        return;
    }
    let reg = TestRegistry::start(None);
    let creds = tempfile::tempdir().unwrap();
    let r = client(&creds.path().join("config.json"));
    let reference = reg.reference("berth/chunked:1");
    let src = TestStore::new();
    let (md, layers) = build_image(&src, &reference, 700_000);
    let opts = PushOptions {
        force_chunked: true,
        chunk_size: 128 * 1024,
        ..PushOptions::default()
    };
    let pushed = r
        .push(src.clone(), &reference, &opts, silent())
        .await
        .unwrap();
    assert_eq!(pushed.chunked.len(), 4);
    let dst = TestStore::new();
    let pulled = r
        .pull(
            dst.clone(),
            &reference,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, md);
    assert_eq!(
        dst.content.read(&layers[1]).unwrap(),
        src.content.read(&layers[1]).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth() {
    if !have_registry("basic_auth") {
        return;
    }
    if Command::new("htpasswd").arg("-h").output().is_err() {
        if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
            panic!("basic_auth: htpasswd (apache2-utils) not installed");
        }
        eprintln!("SKIP: basic_auth: htpasswd (apache2-utils) not installed (run tests/registry/setup.sh)");
        return;
    }
    let reg = TestRegistry::start(Some(("alice", "s3cret")));
    let creds = tempfile::tempdir().unwrap();
    let creds_file = creds.path().join("config.json");
    let r = client(&creds_file);
    let reference = reg.reference("berth/private:1");
    let src = TestStore::new();
    let (md, _) = build_image(&src, &reference, 10_000);

    // No credentials: refused, with the status.
    let e = r
        .push(src.clone(), &reference, &PushOptions::default(), silent())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), berth_registry::ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains("401"), "{e}");

    // A wrong password: login fails naming 401, nothing stored.
    let e = r
        .login(
            Some(&reg.addr),
            Credentials {
                username: "alice".into(),
                password: "wrong".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Login { .. }), "{e:?}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(
        !creds_file.exists()
            || std::fs::read_to_string(&creds_file)
                .unwrap()
                .find("auth\"")
                .is_none()
    );

    // The right one: stored like Docker's config.json, then used by push and pull.
    let stored = r
        .login(
            Some(&format!("http://{}/", reg.addr)),
            Credentials {
                username: "alice".into(),
                password: "s3cret".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(stored, reg.addr);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&creds_file).unwrap()).unwrap();
    assert_eq!(cfg["auths"][&reg.addr]["auth"], "YWxpY2U6czNjcmV0");
    r.push(src.clone(), &reference, &PushOptions::default(), silent())
        .await
        .unwrap();
    let dst = TestStore::new();
    let pulled = r
        .pull(dst, &reference, &PullOptions::default(), &progress::Silent)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, md);

    // Credentials that went stale in the file: a clear 401, not a hang or a panic.
    CredentialStore::at(&creds_file)
        .store(
            &reg.addr,
            &Credentials {
                username: "alice".into(),
                password: "changed".into(),
            },
        )
        .unwrap();
    let e = r
        .pull(
            TestStore::new(),
            &reference,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    assert!(r.logout(Some(&reg.addr)).unwrap());

    // Docker Desktop's credential helper: not supported, and the 401 says why.
    std::fs::write(&creds_file, r#"{"auths": {}, "credsStore": "desktop"}"#).unwrap();
    let e = r
        .pull(
            TestStore::new(),
            &reference,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("401") && msg.contains("docker-credential-desktop"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_blob_is_refused() {
    if !have_registry("tampered_blob_is_refused") {
        return;
    }
    let reg = TestRegistry::start(None);
    let creds = tempfile::tempdir().unwrap();
    let r = client(&creds.path().join("config.json"));
    let reference = reg.reference("berth/tampered:1");
    let src = TestStore::new();
    let (_, layers) = build_image(&src, &reference, 50_000);
    r.push(src.clone(), &reference, &PushOptions::default(), silent())
        .await
        .unwrap();

    // Same size, different bytes: only the digest can tell.
    let path = reg.blob_data(&layers[1]);
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, &data).unwrap();

    let dst = TestStore::new();
    let e = r
        .pull(
            dst.clone(),
            &reference,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("digest mismatch") && msg.contains(layers[1].as_str()),
        "{msg}"
    );
    // Nothing of the bad blob was kept.
    assert!(!dst.content.has(&layers[1]));
}

/// The image crate's real store on both sides: the pulled image is registered (layers
/// unpacked, tag recorded) in a fresh data root, with the same manifest digest and image ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_store_roundtrip() {
    if !have_registry("image_store_roundtrip") {
        return;
    }
    use berth_image::store::ImageStore;
    let reg = TestRegistry::start(None);
    let creds = tempfile::tempdir().unwrap();
    let r = client(&creds.path().join("config.json"));
    let reference = reg.reference("berth/store:1");

    // Build with the test store's helper, then hand the blobs to a real ImageStore.
    let scratch = TestStore::new();
    let (md, _) = build_image(&scratch, &reference, 100_000);
    let src_root = tempfile::tempdir().unwrap();
    let src = Arc::new(ImageStore::open(src_root.path()).unwrap());
    for d in scratch.content.list().unwrap() {
        src.content()
            .write_bytes(&scratch.content.read(&d).unwrap())
            .unwrap();
    }
    let src_image = src.register(&reference, &md).unwrap();
    r.push(src.clone(), &reference, &PushOptions::default(), silent())
        .await
        .unwrap();

    let dst_root = tempfile::tempdir().unwrap();
    let dst = Arc::new(ImageStore::open(dst_root.path()).unwrap());
    let pulled = r
        .pull(
            dst.clone(),
            &reference,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, md);
    assert_eq!(pulled.image_id, src_image.id);
    let image = dst.resolve(&reference.to_string()).unwrap();
    assert_eq!(image.id, src_image.id);
    assert_eq!(image.manifest_digest, md);
    assert_eq!(image.layers, src_image.layers);
    // Every layer was unpacked (during the download, then found by register).
    let top = image.top_snapshot().expect("top snapshot");
    assert!(dst.snapshotter().exists(&top).unwrap());

    // The pushed repository is now a known source: a push to another repository of the
    // same registry mounts instead of uploading.
    let other = reg.reference("berth/store-copy:1");
    src.tag(&src_image, &other).unwrap();
    let pushed = r
        .push(src.clone(), &other, &PushOptions::default(), silent())
        .await
        .unwrap();
    assert_eq!(pushed.mounted.len(), 4, "{pushed:?}");
}

/// An index with an amd64 and an arm64 image: the host's (or `--platform`'s) manifest is
/// pulled, the image is recorded under the index digest as Docker does, and a platform the
/// index lacks is a NotFound naming what there is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_pull_selects_platform() {
    if !have_registry("index_pull_selects_platform") {
        return;
    }
    use berth_image::manifest::Platform;
    use berth_image::store::ImageStore;
    let reg = TestRegistry::start(None);
    let creds = tempfile::tempdir().unwrap();
    let r = client(&creds.path().join("config.json"));
    let amd = reg.reference("berth/multi:amd64");
    let arm = reg.reference("berth/multi:arm64");
    let src = TestStore::new();
    let (amd_md, _) = build_image(&src, &amd, 1000);
    let (arm_md, _) = build_image(&src, &arm, 2000);
    for rf in [&amd, &arm] {
        r.push(src.clone(), rf, &PushOptions::default(), silent())
            .await
            .unwrap();
    }
    let size = |d: &Digest| src.content.size(d).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_md.to_string(),
             "size": size(&arm_md), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd_md.to_string(),
             "size": size(&amd_md), "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    });
    let index = serde_json::to_vec(&index).unwrap();
    let index_d = Digest::of(&index);
    let put = reqwest::Client::new()
        .put(format!(
            "http://{}/v2/berth/multi/manifests/multi",
            reg.addr
        ))
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .body(index)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201, "{:?}", put.text().await);

    let multi = reg.reference("berth/multi:multi");
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(root.path()).unwrap());
    let pulled = r
        .pull(
            store.clone(),
            &multi,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, amd_md);
    assert_eq!(pulled.resolved_digest, index_d);
    assert_eq!(pulled.index_digest.as_ref(), Some(&index_d));
    let image = store.resolve(&multi.to_string()).unwrap();
    assert_eq!(image.manifest_digest, amd_md);
    assert!(
        image
            .repo_digests
            .iter()
            .any(|d| d.digest.as_ref() == Some(&index_d)),
        "{:?}",
        image.repo_digests
    );

    // --platform linux/arm64: the other image, with a store that picks the same entry.
    let arm_platform = Platform::parse("linux/arm64").unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(
        ImageStore::open(root.path())
            .unwrap()
            .with_platform(arm_platform.clone()),
    );
    let opts = PullOptions {
        platform: Some(arm_platform),
        ..PullOptions::default()
    };
    let pulled = r
        .pull(store.clone(), &multi, &opts, &progress::Silent)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, arm_md);

    let opts = PullOptions {
        platform: Some(Platform::parse("linux/riscv64").unwrap()),
        ..PullOptions::default()
    };
    let e = r
        .pull(TestStore::new(), &multi, &opts, &progress::Silent)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), berth_registry::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("linux/arm64/v8, linux/amd64"), "{e}");
}
