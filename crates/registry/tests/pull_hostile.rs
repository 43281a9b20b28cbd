//! Hostile content and a full disk through `pull` (issue 12): images whose layers escape the
//! root (a `..` entry, a write through an absolute symlink), whose config is not JSON, whose
//! diff ID does not match its layer, or whose descriptor understates a blob's size are pushed
//! into a real registry on 127.0.0.1 with plain HTTP, then pulled into an `ImageStore`. Each
//! pull must fail with an error naming the problem, write nothing outside the store and leave
//! the store as it was. A valid image pulled into a store on a tmpfs too small to hold it must
//! fail naming the lack of space, again leaving the store as it was.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use berth_image::digest::Digest;
use berth_image::reference::Reference;
use berth_image::store::ImageStore;
use berth_registry::{progress, CredentialStore, PullOptions, Registry, Settings};

fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Whether the test can run; under CI a missing prerequisite is a failure, not a skip.
fn require(ok: bool, test: &str, why: &str) -> bool {
    if ok {
        return true;
    }
    assert!(!in_ci(), "{test}: {why}");
    eprintln!("SKIP: {test}: {why}");
    false
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[path = "../../../tests/support/registry.rs"]
mod registry_support;
#[path = "../../image/tests/common/store_state.rs"]
mod store_state;
use registry_support::{TestRegistry, REGISTRY_BIN};
use store_state::state;

impl TestRegistry {
    fn reference(&self, repo_tag: &str) -> Reference {
        format!("{}/{repo_tag}", self.addr)
            .parse()
            .expect("reference")
    }

    /// Uploads a blob with the registry API (POST then PUT with the digest) as any client
    /// could, so nothing on our side checks it first.
    async fn put_blob(&self, http: &reqwest::Client, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let resp = http
            .post(format!("http://{}/v2/{repo}/blobs/uploads/", self.addr))
            .send()
            .await
            .expect("start upload");
        assert_eq!(resp.status().as_u16(), 202, "start upload");
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload location")
            .to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            format!("http://{}{loc}", self.addr)
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let resp = http
            .put(format!("{loc}{sep}digest={d}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("finish upload");
        assert_eq!(resp.status().as_u16(), 201, "finish upload of {d}");
        d
    }

    async fn put_manifest(
        &self,
        http: &reqwest::Client,
        repo: &str,
        tag: &str,
        m: &serde_json::Value,
    ) {
        let resp = http
            .put(format!("http://{}/v2/{repo}/manifests/{tag}", self.addr))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(serde_json::to_vec(m).expect("manifest json"))
            .send()
            .await
            .expect("put manifest");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "put manifest {repo}:{tag}: {body}");
    }
}

/// A raw ustar writer: the `tar` crate refuses `..` and absolute names, which are the point.
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> RawTar {
        RawTar(Vec::new())
    }

    fn entry(mut self, name: &str, kind: u8, link: &str, data: &[u8]) -> RawTar {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let mode = if kind == b'5' { "0000755" } else { "0000644" };
        h[100..107].copy_from_slice(mode.as_bytes());
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(format!("{:011o}", 1_700_000_000u64).as_bytes());
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(self, name: &str, data: &[u8]) -> RawTar {
        self.entry(name, b'0', "", data)
    }

    fn symlink(self, name: &str, target: &str) -> RawTar {
        self.entry(name, b'2', target, &[])
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
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

fn config_json(diff_ids: &[Digest]) -> Vec<u8> {
    let p = berth_image::Platform::host();
    serde_json::to_vec(&serde_json::json!({
        "architecture": p.architecture,
        "os": p.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["/bin/sh"]},
    }))
    .expect("config json")
}

/// How an image is pushed: its layers (uncompressed tars) and what to break.
#[derive(Default)]
struct Hostile {
    config_override: Option<Vec<u8>>,
    diff_ids_override: Option<Vec<Digest>>,
    size_delta: i64,
}

/// Pushes an image of `layers` (gzipped) into `repo:tag` and returns nothing: the pull must
/// find out on its own what is wrong.
async fn push_image(
    reg: &TestRegistry,
    http: &reqwest::Client,
    repo: &str,
    tag: &str,
    layers: &[Vec<u8>],
    how: Hostile,
) {
    let diff_ids = how
        .diff_ids_override
        .unwrap_or_else(|| layers.iter().map(|l| Digest::of(l)).collect());
    let mut descs = Vec::new();
    for l in layers {
        let gz = gzip(l);
        let d = reg.put_blob(http, repo, &gz).await;
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(),
            "size": gz.len() as i64 + how.size_delta,
        }));
    }
    let config = how
        .config_override
        .unwrap_or_else(|| config_json(&diff_ids));
    let cd = reg.put_blob(http, repo, &config).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cd.to_string(),
            "size": config.len(),
        },
        "layers": descs,
    });
    reg.put_manifest(http, repo, tag, &manifest).await;
}

fn client(dir: &Path) -> Registry {
    Registry::new(
        Settings::default(),
        CredentialStore::at(dir.join("config.json")),
    )
    .expect("registry client")
}

async fn pull_err(r: &Registry, store: &Arc<ImageStore>, reference: &Reference) -> String {
    let res = r
        .pull(
            store.clone(),
            reference,
            &PullOptions::default(),
            &progress::Silent,
        )
        .await;
    match res {
        Ok(rep) => panic!("pull of {reference} succeeded: {rep:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_images_are_refused_by_pull() {
    let test = "hostile_images_are_refused_by_pull";
    if !require(
        Path::new(REGISTRY_BIN).exists(),
        test,
        "docker-registry not installed (run tests/registry/setup.sh)",
    ) || !require(is_root(), test, "needs root to unpack layers")
    {
        return;
    }
    let reg = TestRegistry::start(None);
    let http = reqwest::Client::new();
    let outside = tempfile::tempdir().expect("outside dir");
    let outside_rel = outside
        .path()
        .strip_prefix("/")
        .expect("absolute tempdir")
        .to_string_lossy()
        .into_owned();
    let escape_name = format!("{}{outside_rel}/escaped", "../".repeat(24));
    let sym_target = outside.path().display().to_string();

    let ok_layer = RawTar::new().file("ok.txt", b"fine\n").finish();
    let traversal = RawTar::new()
        .file("a.txt", b"a\n")
        .file(&escape_name, b"root::0:0::/:/bin/sh\n")
        .finish();
    let symlink_write = RawTar::new()
        .symlink("link", &sym_target)
        .file("link/pwned", b"pwned\n")
        .finish();

    push_image(
        &reg,
        &http,
        "seed/image",
        "1",
        std::slice::from_ref(&ok_layer),
        Hostile::default(),
    )
    .await;
    push_image(
        &reg,
        &http,
        "hostile/traversal",
        "1",
        &[traversal],
        Hostile::default(),
    )
    .await;
    push_image(
        &reg,
        &http,
        "hostile/symlink",
        "1",
        &[symlink_write],
        Hostile::default(),
    )
    .await;
    push_image(
        &reg,
        &http,
        "hostile/config",
        "1",
        std::slice::from_ref(&ok_layer),
        Hostile {
            config_override: Some(b"this is not json {".to_vec()),
            ..Hostile::default()
        },
    )
    .await;
    push_image(
        &reg,
        &http,
        "hostile/diffid",
        "1",
        std::slice::from_ref(&ok_layer),
        Hostile {
            diff_ids_override: Some(vec![Digest::of(b"some other layer")]),
            ..Hostile::default()
        },
    )
    .await;
    push_image(
        &reg,
        &http,
        "hostile/size",
        "1",
        &[RawTar::new().file("big", &noise(64 * 1024, 3)).finish()],
        Hostile {
            size_delta: -1000,
            ..Hostile::default()
        },
    )
    .await;

    let creds = tempfile::tempdir().expect("creds dir");
    let r = client(creds.path());
    // (repository, words of which at least one must be in the error)
    let cases: &[(&str, &[&str])] = &[
        (
            "hostile/traversal",
            &["..", "escape", "outside", "traversal"],
        ),
        ("hostile/symlink", &["symlink", "link", "outside", "escape"]),
        ("hostile/config", &["config", "json", "JSON"]),
        ("hostile/diffid", &["diff", "Diff"]),
        ("hostile/size", &["size", "length", "bytes"]),
    ];
    for (repo, words) in cases {
        let dir = tempfile::tempdir().expect("store dir");
        let store = Arc::new(ImageStore::open(&dir.path().join("data")).expect("open store"));
        // A store with an image already, sharing a layer with two of the hostile ones, so
        // "unchanged" means something and a failed pull must keep what another image uses.
        r.pull(
            store.clone(),
            &reg.reference("seed/image:1"),
            &PullOptions::default(),
            &progress::Silent,
        )
        .await
        .expect("pull the seed image");
        let before = state(&store);
        assert!(!before.images.is_empty() && !before.snapshots.is_empty());
        let reference = reg.reference(&format!("{repo}:1"));
        let msg = pull_err(&r, &store, &reference).await;
        eprintln!("{repo}: {msg}");
        assert!(
            words.iter().any(|w| msg.contains(w)),
            "{repo}: the error does not name the problem: {msg}"
        );
        assert_eq!(state(&store), before, "{repo}: the store changed: {msg}");
        let leaked: Vec<PathBuf> = fs::read_dir(outside.path())
            .expect("outside dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        assert!(
            leaked.is_empty(),
            "{repo}: wrote outside the store: {leaked:?}"
        );
    }
}

/// A tmpfs mounted for one test, unmounted (lazily, so a leftover user cannot stop it) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "berth-pull-full",
            ])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_onto_a_full_disk_fails_cleanly() {
    let test = "pull_onto_a_full_disk_fails_cleanly";
    if !require(
        Path::new(REGISTRY_BIN).exists(),
        test,
        "docker-registry not installed (run tests/registry/setup.sh)",
    ) || !require(is_root(), test, "needs root to mount a tmpfs")
    {
        return;
    }
    let reg = TestRegistry::start(None);
    let http = reqwest::Client::new();
    // 4 MB of incompressible layer into a 2 MB filesystem.
    let layers = vec![
        RawTar::new().file("small", b"small\n").finish(),
        RawTar::new().file("big", &noise(4 << 20, 11)).finish(),
    ];
    push_image(&reg, &http, "big/image", "1", &layers, Hostile::default()).await;

    let Some(fs_) = Tmpfs::mount("2m") else {
        require(false, test, "cannot mount a tmpfs");
        return;
    };
    let store = Arc::new(ImageStore::open(&fs_.dir.path().join("data")).expect("open store"));
    let before = state(&store);
    let creds = tempfile::tempdir().expect("creds dir");
    let r = client(creds.path());
    let msg = pull_err(&r, &store, &reg.reference("big/image:1")).await;
    eprintln!("full disk: {msg}");
    assert!(
        msg.contains("No space left") || msg.contains("space"),
        "the error does not say the disk is full: {msg}"
    );
    assert_eq!(state(&store), before, "the store changed: {msg}");
    drop(store);
}
