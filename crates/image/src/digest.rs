//! Content digests (`sha256:<64 lowercase hex>`), the identity of every blob, config and layer.
//! Only sha256 is accepted: it is what Docker and every registry use, and a digest we cannot
//! verify is worse than one we refuse.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// A validated `sha256:<hex>` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    // always "sha256:" + 64 lowercase hex characters
    full: String,
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(data).into())
    }

    /// A digest from a raw 32-byte sha256 hash.
    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        Digest {
            full: format!("sha256:{}", hex::encode(hash)),
        }
    }

    /// A digest from 64 hex characters (without the algorithm prefix).
    pub fn from_hex(h: &str) -> Result<Digest, Error> {
        format!("sha256:{h}").parse()
    }

    /// The hex part (64 characters).
    pub fn hex(&self) -> &str {
        &self.full[7..]
    }

    /// The algorithm, always `sha256`.
    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    /// The full `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The first 12 hex characters, as `docker images` shows an image ID.
    pub fn short(&self) -> &str {
        &self.full[7..19]
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::ParseDigest {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (alg, h) = s
            .split_once(':')
            .ok_or_else(|| bad("expected <algorithm>:<hex>"))?;
        if alg != "sha256" {
            return Err(bad("unsupported digest algorithm (only sha256)"));
        }
        if h.len() != 64 {
            return Err(bad("sha256 hex must be 64 characters"));
        }
        if !h
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("sha256 hex must be lowercase hexadecimal"));
        }
        Ok(Digest {
            full: s.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.full)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Computes a digest over everything written to it (and counts the bytes).
#[derive(Default, Clone)]
pub struct Digester {
    hasher: Sha256,
    len: u64,
}

impl Digester {
    pub fn new() -> Self {
        Self::default()
    }
    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }
    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest::from_sha256(self.hasher.finalize().into())
    }
}

impl Write for Digester {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader adapter that digests everything read through it.
pub struct DigestReader<R> {
    inner: R,
    digester: Digester,
}

impl<R: io::Read> DigestReader<R> {
    pub fn new(inner: R) -> Self {
        DigestReader {
            inner,
            digester: Digester::new(),
        }
    }
    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.digester.len()
    }
    pub fn is_empty(&self) -> bool {
        self.digester.is_empty()
    }
    /// The digest of everything read, and the inner reader.
    pub fn finish(self) -> (Digest, R) {
        (self.digester.finish(), self.inner)
    }
}

impl<R: io::Read> io::Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn of_empty() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn parse_refuses_bad() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let err = bad.parse::<Digest>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn digester_and_serde() {
        let mut d = Digester::new();
        d.write_all(b"hello ").unwrap();
        d.write_all(b"world").unwrap();
        assert_eq!(d.len(), 11);
        let dig = d.finish();
        assert_eq!(dig, Digest::of(b"hello world"));
        let j = serde_json::to_string(&dig).unwrap();
        assert_eq!(j, format!("\"{dig}\""));
        let back: Digest = serde_json::from_str(&j).unwrap();
        assert_eq!(back, dig);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
