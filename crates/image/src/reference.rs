//! Image references parsed and normalised as Docker does (distribution/reference's
//! `ParseNormalizedNamed`): `busybox` is `docker.io/library/busybox:latest`, the first path
//! component is a registry only if it contains `.` or `:` or is `localhost`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::Error;

/// Docker Hub's canonical registry name.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Where Docker Hub's registry API actually lives.
pub const DEFAULT_REGISTRY_HOST: &str = "registry-1.docker.io";
/// Docker's limit on the length of a repository name (registry + path).
const NAME_TOTAL_MAX: usize = 255;

/// A normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    /// Registry host (and port), e.g. `docker.io`, `localhost:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` is filled in by `FromStr` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// Digest, for `repo@sha256:...` references.
    pub digest: Option<Digest>,
}

impl Reference {
    /// A reference from parts (validated like a parsed one).
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Self, Error> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s.parse()
    }

    /// Parse without adding `:latest` when neither tag nor digest is given (for filters and
    /// lookups by repository name).
    pub fn parse_name_only(s: &str) -> Result<Self, Error> {
        parse(s, false)
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short repository name `docker images` shows: `busybox`, `user/app`,
    /// `localhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The short form with tag and/or digest (Docker's `FamiliarString`): `busybox:latest`,
    /// `localhost:5000/x@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// The host to contact for this registry (`docker.io` → `registry-1.docker.io`).
    pub fn registry_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DEFAULT_REGISTRY_HOST
        } else {
            &self.registry
        }
    }

    /// The tag, or `latest` if there is none.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// This reference with the digest dropped (the tag kept, `latest` if none).
    pub fn with_tag_only(&self) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(self.tag_or_latest().to_string()),
            digest: None,
        }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse(s, true)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn parse(input: &str, default_tag: bool) -> Result<Reference, Error> {
    let bad = |reason: &str| Error::ParseReference {
        value: input.to_string(),
        reason: reason.to_string(),
    };
    if input.is_empty() {
        return Err(bad("empty reference"));
    }
    // digest first: it contains a ':' that must not be taken for a tag
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (
            r,
            Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?),
        ),
        None => (input, None),
    };
    // a tag is after the last ':' that follows the last '/' (a ':' before it is a port)
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        if !valid_tag(t) {
            return Err(bad(
                "invalid tag (must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127})",
            ));
        }
    }
    if name.is_empty() {
        return Err(bad("empty repository name"));
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    if registry != DEFAULT_REGISTRY && !valid_domain(&registry) {
        return Err(bad("invalid registry host"));
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad("repository name must be lowercase"));
    }
    if path.split('/').any(|c| !valid_component(c)) {
        return Err(bad("invalid repository name component (must match [a-z0-9]+ separated by '.', '_', '__' or '-')"));
    }
    // Docker refuses a name that looks like an image ID, to avoid confusing the two
    if registry == DEFAULT_REGISTRY && digest.is_none() && tag.is_none() && is_full_hex_id(&path) {
        return Err(bad(
            "cannot specify 64-byte hexadecimal strings as a repository name",
        ));
    }
    let registry = if registry == "index.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if registry.len() + 1 + repository.len() > NAME_TOTAL_MAX {
        return Err(bad("repository name must not be more than 255 characters"));
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) if default_tag => Some("latest".to_string()),
        _ => None,
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

// [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run, followed by an alphanumeric (guaranteed by the last-char check)
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // IPv6 literal: [addr]:port
        match rest.split_once(']') {
            Some((addr, after)) => {
                if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return false;
                }
                (
                    None,
                    after
                        .strip_prefix(':')
                        .map(Some)
                        .unwrap_or(if after.is_empty() { None } else { Some("x") }),
                )
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|label| {
                    let b = label.as_bytes();
                    !b.is_empty()
                        && b[0].is_ascii_alphanumeric()
                        && b[b.len() - 1].is_ascii_alphanumeric()
                        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_cases() {
        // input, full form, familiar form
        let cases = [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            (
                "localhost:5000/x",
                "localhost:5000/x:latest",
                "localhost:5000/x:latest",
            ),
            (
                "127.0.0.1:5000/a/b/c:t",
                "127.0.0.1:5000/a/b/c:t",
                "127.0.0.1:5000/a/b/c:t",
            ),
            (
                "quay.io/coreos/etcd",
                "quay.io/coreos/etcd:latest",
                "quay.io/coreos/etcd:latest",
            ),
            (
                "foo_bar.com:8080/x",
                "foo_bar.com:8080/x:latest",
                "foo_bar.com:8080/x:latest",
            )
                .into_invalid(),
            ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
            ("a-b__c.d/e", "a-b__c.d/e:latest", "a-b__c.d/e:latest").into_invalid(),
            ("my-app", "docker.io/library/my-app:latest", "my-app:latest"),
            ("a__b", "docker.io/library/a__b:latest", "a__b:latest"),
            ("a---b", "docker.io/library/a---b:latest", "a---b:latest"),
            (
                "Localhost:5000/x",
                "Localhost:5000/x:latest",
                "Localhost:5000/x:latest",
            ),
            ("host/x", "docker.io/host/x:latest", "host/x:latest"),
        ];
        for (input, full, familiar) in cases {
            if full.is_empty() {
                assert!(
                    input.parse::<Reference>().is_err(),
                    "{input} should be refused"
                );
                continue;
            }
            let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
        }
    }

    trait Invalid {
        fn into_invalid(self) -> (&'static str, &'static str, &'static str);
    }
    impl Invalid for (&'static str, &'static str, &'static str) {
        fn into_invalid(self) -> (&'static str, &'static str, &'static str) {
            (self.0, "", "")
        }
    }

    #[test]
    fn digests() {
        let r: Reference = format!("busybox@{D}").parse().unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().map(|d| d.as_str()), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.tag_or_latest(), "latest");
        let r: Reference = format!("localhost:5000/x:v2@{D}").parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.registry, "localhost:5000");
        assert!("busybox@sha256:abc".parse::<Reference>().is_err());
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-tag",
            ":tag",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "-a",
            "a-",
            "a:b:c",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "local host/x",
            "host:port/x",
            "busybox@sha256:E3B0",
        ] {
            let err = bad.parse::<Reference>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(long.parse::<Reference>().is_err());
        let long_tag = format!("a:{}", "b".repeat(129));
        assert!(long_tag.parse::<Reference>().is_err());
    }

    #[test]
    fn hosts_and_names() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.registry_host(), "registry-1.docker.io");
        assert_eq!(r.familiar_name(), "busybox");
        let r: Reference = "localhost:5000/x".parse().unwrap();
        assert_eq!(r.registry_host(), "localhost:5000");
        assert_eq!(r.familiar_name(), "localhost:5000/x");
        let r = Reference::parse_name_only("busybox").unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), "docker.io/library/busybox");
    }
}
