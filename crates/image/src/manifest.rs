//! Image metadata documents: OCI image index, manifest and config, and Docker schema 2
//! manifest and manifest list, read leniently (unknown fields kept, so a re-serialised
//! document loses nothing) but validated where it matters (digests, media types, sizes).
//! Also platform selection from an index.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// The largest manifest or index accepted (containerd uses the same 4 MiB bound).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// The largest image config accepted.
pub const MAX_CONFIG_SIZE: u64 = 8 << 20;

/// What `Accept` header a registry client should send for manifests.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// True for media types of a single-image manifest.
pub fn is_manifest_type(mt: &str) -> bool {
    mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
}

/// True for media types of a multi-platform index.
pub fn is_index_type(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
}

/// True for layer media types we can unpack.
pub fn is_layer_type(mt: &str) -> bool {
    matches!(
        mt,
        OCI_LAYER_TAR
            | OCI_LAYER_GZIP
            | OCI_LAYER_ZSTD
            | OCI_LAYER_NONDIST_TAR
            | OCI_LAYER_NONDIST_GZIP
            | DOCKER_LAYER_GZIP
            | DOCKER_LAYER_FOREIGN_GZIP
            | "application/vnd.docker.image.rootfs.diff.tar"
    )
}

/// A content descriptor (OCI image-spec descriptor.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            extra: Map::new(),
        }
    }
}

/// A platform (os/architecture/variant).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine, as Go names it (`linux/amd64`, `linux/arm64/v8`).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform::new("linux", arch, variant)
    }

    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.to_string(),
            os: os.to_string(),
            os_version: None,
            os_features: None,
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform::new(os, &normalize_arch(arch), None))
            }
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform::new(os, &normalize_arch(arch), Some(variant)))
            }
            _ => Err(Error::InvalidArgument(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            ))),
        }
    }

    // The variant a missing one means, as containerd's platforms package normalises it.
    fn effective_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            ("arm", None) => Some("v7"),
            ("amd64", None) => Some("v1"),
            (_, v) => v,
        }
    }

    /// How well `candidate` serves this (wanted) platform: None if it cannot run here,
    /// higher is better.
    pub fn match_score(&self, candidate: &Platform) -> Option<u32> {
        if candidate.os != self.os
            || normalize_arch(&candidate.architecture) != normalize_arch(&self.architecture)
        {
            return None;
        }
        let want = self.effective_variant();
        let have = candidate.effective_variant();
        if want == have {
            return Some(if candidate.variant.is_some() == self.variant.is_some() {
                3
            } else {
                2
            });
        }
        // an older variant runs on a newer CPU (arm v6 on v7, amd64 v2 on v3)
        match (want.and_then(variant_level), have.and_then(variant_level)) {
            (Some(w), Some(h)) if h < w => Some(1),
            _ => None,
        }
    }
}

fn variant_level(v: &str) -> Option<u32> {
    v.strip_prefix('v').and_then(|n| n.parse().ok())
}

fn normalize_arch(a: &str) -> String {
    match a {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        "i386" => "386".to_string(),
        other => other.to_lowercase(),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema 2; the two have the same shape).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A parsed manifest document of either kind.
#[derive(Clone, Debug)]
pub enum ManifestDoc {
    Index(Index),
    Manifest(Box<Manifest>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Value>,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    fs_layers: Option<Value>,
}

/// Parses a manifest or index. `declared` is the media type the transport gave (HTTP
/// `Content-Type`, a descriptor); the document's own `mediaType` wins when present, and the
/// shape decides when neither says. Returns the effective media type and the document.
pub fn parse_manifest(
    bytes: &[u8],
    declared: Option<&str>,
    what: &str,
) -> Result<(String, ManifestDoc)> {
    let bad = |reason: String| Error::ParseJson {
        what: "manifest",
        object: what.to_string(),
        reason,
    };
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(bad(format!(
            "{} bytes is more than the {MAX_MANIFEST_SIZE} allowed",
            bytes.len()
        )));
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let declared =
        declared.filter(|d| !d.is_empty() && *d != "application/json" && *d != "text/plain");
    let mt = match (probe.media_type.as_deref(), declared) {
        (Some(m), _) => m.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) if probe.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if probe.config.is_some() => OCI_MANIFEST.to_string(),
        (None, None) if probe.fs_layers.is_some() => DOCKER_SCHEMA1.to_string(),
        (None, None) => {
            return Err(bad(
                "neither a manifest (config, layers) nor an index (manifests)".into(),
            ))
        }
    };
    if mt == DOCKER_SCHEMA1 || mt == DOCKER_SCHEMA1_SIGNED || probe.fs_layers.is_some() {
        return Err(Error::UnsupportedMediaType {
            media_type: mt,
            object: format!(
                "{what} (Docker image manifest schema 1 is deprecated and not supported)"
            ),
        });
    }
    if probe.schema_version != Some(2) {
        return Err(bad(format!(
            "schemaVersion must be 2, got {:?}",
            probe.schema_version
        )));
    }
    if is_index_type(&mt) {
        let idx: Index = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        Ok((mt, ManifestDoc::Index(idx)))
    } else if is_manifest_type(&mt) {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        Ok((mt, ManifestDoc::Manifest(Box::new(m))))
    } else {
        Err(Error::UnsupportedMediaType {
            media_type: mt,
            object: what.to_string(),
        })
    }
}

/// Picks the manifest for `want` from an index: the best match by os, architecture and
/// variant; a clear error listing what is there when nothing matches.
pub fn select_platform<'a>(
    index: &'a Index,
    index_digest: &Digest,
    want: &Platform,
) -> Result<&'a Descriptor> {
    let mut best: Option<(u32, &Descriptor)> = None;
    for d in &index.manifests {
        if !is_manifest_type(&d.media_type) && !is_index_type(&d.media_type) {
            continue;
        }
        let Some(p) = &d.platform else { continue };
        if let Some(score) = want.match_score(p) {
            if best.map(|(s, _)| score > s).unwrap_or(true) {
                best = Some((score, d));
            }
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| {
        let available: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| p.to_string())
            .collect();
        Error::PlatformNotFound {
            platform: want.to_string(),
            digest: index_digest.clone(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        }
    })
}

/// `rootfs` of an image config.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    pub diff_ids: Vec<Digest>,
}

/// One `history` entry of an image config.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The runtime part (`config`) of an image config: what a container starts with.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An image config (OCI or Docker's `container.image.v1`); unknown fields (Docker's
/// `container_config`, `docker_version`, ...) are kept in `extra`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<History>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    /// Parses a config blob (size-limited, `rootfs.type` must be `layers`).
    pub fn parse(bytes: &[u8], what: &str) -> Result<ImageConfig> {
        let bad = |reason: String| Error::ParseJson {
            what: "image config",
            object: what.to_string(),
            reason,
        };
        if bytes.len() as u64 > MAX_CONFIG_SIZE {
            return Err(bad(format!(
                "{} bytes is more than the {MAX_CONFIG_SIZE} allowed",
                bytes.len()
            )));
        }
        let c: ImageConfig = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if c.rootfs.typ != "layers" {
            return Err(bad(format!(
                "rootfs.type must be \"layers\", got {:?}",
                c.rootfs.typ
            )));
        }
        Ok(c)
    }

    /// `created` as a time, if present and valid RFC 3339.
    pub fn created_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.created
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// The platform this config is for.
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// The chain IDs of a stack of diff IDs (OCI image-spec config.md: ChainID(L0) = DiffID(L0),
/// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dg(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn docker_manifest() {
        let j = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":10,"digest":"{}"}},
            "layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","size":20,"digest":"{}"}}]}}"#,
            dg('a'),
            dg('b')
        );
        let (mt, doc) = parse_manifest(j.as_bytes(), None, "test").unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
        let ManifestDoc::Manifest(m) = doc else {
            panic!("not a manifest")
        };
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].media_type, DOCKER_LAYER_GZIP);
        assert_eq!(m.config.size, 10);
    }

    #[test]
    fn oci_manifest_without_media_type_field() {
        let j = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","size":10,"digest":"{}"}},
            "layers":[{{"mediaType":"{OCI_LAYER_ZSTD}","size":20,"digest":"{}","annotations":{{"a":"b"}}}}],"subject":{{"x":1}}}}"#,
            dg('a'),
            dg('b')
        );
        let (mt, doc) = parse_manifest(j.as_bytes(), None, "test").unwrap();
        assert_eq!(mt, OCI_MANIFEST);
        let ManifestDoc::Manifest(m) = doc else {
            panic!("not a manifest")
        };
        // unknown fields survive a round trip
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["subject"]["x"], 1);
        let (mt, _) = parse_manifest(j.as_bytes(), Some(DOCKER_MANIFEST), "t").unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
    }

    #[test]
    fn refusals() {
        assert!(parse_manifest(b"{", None, "x")
            .unwrap_err()
            .to_string()
            .contains("manifest x"));
        assert!(
            parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, None, "x")
                .unwrap_err()
                .to_string()
                .contains("schema 1")
        );
        let big = vec![b' '; (MAX_MANIFEST_SIZE + 1) as usize];
        assert!(parse_manifest(&big, None, "x")
            .unwrap_err()
            .to_string()
            .contains("allowed"));
        let bad_digest = r#"{"schemaVersion":2,"config":{"mediaType":"a","size":1,"digest":"sha256:00"},"layers":[]}"#;
        assert!(parse_manifest(bad_digest.as_bytes(), None, "x")
            .unwrap_err()
            .to_string()
            .contains("sha256:00"));
        assert!(parse_manifest(
            br#"{"schemaVersion":2,"mediaType":"application/x-foo","layers":[]}"#,
            None,
            "x"
        )
        .unwrap_err()
        .to_string()
        .contains("application/x-foo"));
    }

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> Index {
        let manifests: Vec<Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, v))| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = v {
                    p["variant"] = Value::String(v.to_string());
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "size": 1,
                    "digest": Digest::of(i.to_string().as_bytes()), "platform": p})
            })
            .collect();
        let j = serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": manifests});
        match parse_manifest(j.to_string().as_bytes(), None, "idx")
            .unwrap()
            .1
        {
            ManifestDoc::Index(i) => i,
            ManifestDoc::Manifest(_) => panic!("not an index"),
        }
    }

    #[test]
    fn platform_selection() {
        let idx = index(&[
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
            ("linux", "amd64", None),
            ("windows", "amd64", None),
            ("unknown", "unknown", None),
        ]);
        let id = Digest::of(b"idx");
        let pick = |p: &str| {
            select_platform(&idx, &id, &Platform::parse(p).unwrap()).map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64").unwrap(), Digest::of(b"3"));
        assert_eq!(pick("linux/x86_64").unwrap(), Digest::of(b"3"));
        assert_eq!(pick("linux/arm64").unwrap(), Digest::of(b"2"));
        assert_eq!(pick("linux/arm/v7").unwrap(), Digest::of(b"1"));
        assert_eq!(pick("linux/arm/v6").unwrap(), Digest::of(b"0"));
        assert_eq!(pick("linux/arm").unwrap(), Digest::of(b"1"));
        assert_eq!(pick("windows/amd64").unwrap(), Digest::of(b"4"));
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/arm/v7"),
            "{err}"
        );
        // arm v8 image list without arm v8: arm64 with no variant counts as v8
        let idx2 = index(&[("linux", "arm64", None), ("linux", "amd64", Some("v3"))]);
        assert!(select_platform(&idx2, &id, &Platform::parse("linux/arm64/v8").unwrap()).is_ok());
        // an amd64/v3-only image does not run on a plain amd64 host
        assert!(select_platform(&idx2, &id, &Platform::parse("linux/amd64").unwrap()).is_err());
    }

    #[test]
    fn config_keeps_docker_fields() {
        let j = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05.123456789Z","docker_version":"24.0",
            "container_config":{{"Cmd":null}},"config":{{"Cmd":["sh"],"Env":["PATH=/bin"],"Labels":null,"Healthcheck":{{"Test":["NONE"]}}}},
            "rootfs":{{"type":"layers","diff_ids":["{}"]}},"history":[{{"created_by":"x","empty_layer":true}}]}}"#,
            dg('c')
        );
        let c = ImageConfig::parse(j.as_bytes(), "cfg").unwrap();
        assert_eq!(
            c.config.as_ref().unwrap().cmd.as_deref(),
            Some(&["sh".to_string()][..])
        );
        assert!(c.created_time().is_some());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["docker_version"], "24.0");
        assert_eq!(v["config"]["Healthcheck"]["Test"][0], "NONE");
        let bad = j.replace("\"layers\",", "\"other\",");
        assert!(ImageConfig::parse(bad.as_bytes(), "cfg")
            .unwrap_err()
            .to_string()
            .contains("rootfs.type"));
    }

    #[test]
    fn chain_id_math() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}
