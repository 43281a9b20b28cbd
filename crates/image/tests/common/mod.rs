//! Helpers shared by the image crate's integration tests: requirement checks that skip (or
//! fail under CI=true), raw tar building (including names the tar crate's safe API refuses),
//! and the busybox rootfs from tests/make-busybox-rootfs.sh.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// True if the test may run; prints `SKIP: <reason>` otherwise. Under CI=true a missing
/// requirement fails the test instead.
pub fn require(ok: bool, test: &str, reason: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{test}: requirement missing under CI: {reason}");
    }
    eprintln!("SKIP: {test}: {reason}");
    false
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Builds tar archives entry by entry, with raw names (so hostile ones can be written).
pub struct RawTar {
    pub b: tar::Builder<Vec<u8>>,
}

impl Default for RawTar {
    fn default() -> Self {
        Self::new()
    }
}

impl RawTar {
    pub fn new() -> Self {
        RawTar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }

    fn set_raw_name(h: &mut tar::Header, name: &[u8]) {
        let g = h.as_gnu_mut().expect("gnu header");
        g.name = [0; 100];
        g.name[..name.len()].copy_from_slice(name);
    }

    fn set_raw_link(h: &mut tar::Header, link: &[u8]) {
        let g = h.as_gnu_mut().expect("gnu header");
        g.linkname = [0; 100];
        g.linkname[..link.len()].copy_from_slice(link);
    }

    /// An entry whose name (<100 bytes) is written verbatim, `..` and all.
    pub fn raw(
        mut self,
        kind: tar::EntryType,
        name: &str,
        link: Option<&str>,
        data: &[u8],
    ) -> Self {
        let mode = if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        };
        let mut h = Self::header(kind, mode, data.len() as u64);
        Self::set_raw_name(&mut h, name.as_bytes());
        if let Some(l) = link {
            Self::set_raw_link(&mut h, l.as_bytes());
        }
        h.set_cksum();
        self.b.append(&h, data).expect("append");
        self
    }

    pub fn dir(self, name: &str) -> Self {
        self.raw(tar::EntryType::Directory, name, None, b"")
    }
    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.raw(tar::EntryType::Regular, name, None, data)
    }
    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(tar::EntryType::Symlink, name, Some(target), b"")
    }
    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.raw(tar::EntryType::Link, name, Some(target), b"")
    }
    pub fn device(mut self, name: &str, major: u32, minor: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Char, 0o666, 0);
        Self::set_raw_name(&mut h, name.as_bytes());
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        h.set_cksum();
        self.b.append(&h, &[][..]).expect("append");
        self
    }
    /// A GNU long-name entry of any length, followed by a file.
    pub fn long_name_file(mut self, name: &[u8], data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::GNULongName, 0o644, name.len() as u64 + 1);
        Self::set_raw_name(&mut h, b"././@LongLink");
        h.set_cksum();
        let mut n = name.to_vec();
        n.push(0);
        self.b.append(&h, &n[..]).expect("append");
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        Self::set_raw_name(&mut h, b"placeholder");
        h.set_cksum();
        self.b.append(&h, data).expect("append");
        self
    }
    /// A PAX extension header of `size` bytes (a hostile, oversized one).
    pub fn big_pax(mut self, size: usize) -> Self {
        let mut h = Self::header(tar::EntryType::XHeader, 0o644, size as u64);
        Self::set_raw_name(&mut h, b"PaxHeaders/x");
        h.set_cksum();
        let body = vec![b'a'; size];
        self.b.append(&h, &body[..]).expect("append");
        self.file("after-pax", b"x")
    }
    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish")
    }
}

/// The repository root (for tests/make-busybox-rootfs.sh).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Makes the busybox rootfs tarball in `dir` (returns its path), or None if the script
/// cannot (no busybox-static and no apt).
pub fn busybox_tarball(dir: &Path) -> Option<PathBuf> {
    let script = repo_root().join("tests/make-busybox-rootfs.sh");
    let rootfs = dir.join("rootfs");
    let tarball = dir.join("rootfs.tar");
    let st = Command::new("sh")
        .arg(&script)
        .arg(&rootfs)
        .arg(&tarball)
        .status()
        .ok()?;
    if st.success() {
        Some(tarball)
    } else {
        None
    }
}

/// A one-file-per-entry layer tar, for building images in tests.
pub fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut t = RawTar::new();
    for (name, data) in entries {
        t = match data {
            Some(d) => t.file(name, d),
            None => t.dir(name),
        };
    }
    t.finish()
}

/// Makes an image from raw layer tars (stored gzip-compressed) and tags it.
pub fn make_image(
    store: &berth_image::ImageStore,
    layers: &[Vec<u8>],
    tag: &str,
) -> berth_image::Image {
    let mut blobs = Vec::new();
    for l in layers {
        blobs.push(
            berth_image::diff::tar_to_blob(store.content(), &l[..], "test layer")
                .expect("store layer"),
        );
    }
    let p = store.platform();
    let config = berth_image::ImageConfig {
        created: Some("2024-01-01T00:00:00Z".into()),
        author: None,
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: None,
        config: Some(berth_image::manifest::ContainerConfig {
            cmd: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        }),
        rootfs: berth_image::manifest::RootFs {
            typ: "layers".into(),
            diff_ids: blobs.iter().map(|b| b.diff_id.clone()).collect(),
        },
        history: None,
        extra: Default::default(),
    };
    let r: berth_image::Reference = tag.parse().expect("tag");
    store
        .create_image(&config, &blobs, Some(&r))
        .expect("create image")
}
