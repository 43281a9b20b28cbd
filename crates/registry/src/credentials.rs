//! Registry credentials kept the way Docker keeps them: `$DOCKER_CONFIG/config.json` (else
//! `~/.docker/config.json`), `{"auths": {"<server>": {"auth": base64("user:pass")}}}`, so that
//! `docker login` and `berth login` share them. Other keys of the file are preserved; the file
//! is replaced atomically and is readable by its owner only, since it holds passwords.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The key Docker uses for Docker Hub in config.json.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A Docker-style config.json.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
}

/// The key a server is stored under: Docker Hub under its historical index URL, any other
/// registry under its `host[:port]`.
pub fn server_key(registry: &str) -> String {
    let r = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match r {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        "index.docker.io/v1" => DOCKER_HUB_KEY.to_string(),
        _ => r.to_string(),
    }
}

impl CredentialStore {
    /// The file Docker would use: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_location() -> Self {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/root"));
                home.join(".docker")
            }
        };
        CredentialStore {
            path: dir.join("config.json"),
        }
    }

    pub fn at(path: impl Into<PathBuf>) -> Self {
        CredentialStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<Map<String, Value>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(source) => {
                return Err(Error::ReadConfig {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(Error::ParseConfig {
                path: self.path.clone(),
                source: serde::de::Error::custom("the top level is not a JSON object"),
            }),
            Err(source) => Err(Error::ParseConfig {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// The helper that keeps this registry's credentials, if the file delegates to one.
    fn helper_for(&self, cfg: &Map<String, Value>, key: &str) -> Option<String> {
        cfg.get("credHelpers")
            .and_then(|h| h.get(key))
            .and_then(|v| v.as_str())
            .or_else(|| cfg.get("credsStore").and_then(|v| v.as_str()))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The credentials stored for `registry`, if any. Entries written by Docker under a URL
    /// (`https://host/`) are found too.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let cfg = self.load()?;
        let key = server_key(registry);
        let auths = cfg.get("auths").and_then(|a| a.as_object());
        let entry = auths.and_then(|auths| {
            auths.get(&key).or_else(|| {
                auths
                    .iter()
                    .find(|(k, _)| server_key(k) == key)
                    .map(|(_, v)| v)
            })
        });
        let auth = entry
            .and_then(|e| e.get("auth"))
            .and_then(|a| a.as_str())
            .filter(|a| !a.is_empty());
        let Some(auth) = auth else {
            if let Some(helper) = self.helper_for(&cfg, &key) {
                return Err(Error::CredentialHelper {
                    registry: registry.to_string(),
                    helper,
                    path: self.path.clone(),
                });
            }
            return Ok(None);
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Error::ParseConfig {
                path: self.path.clone(),
                source: serde::de::Error::custom(format!(
                    "the \"auth\" of {key:?} is not base64 of \"user:password\""
                )),
            })?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| Error::ParseConfig {
            path: self.path.clone(),
            source: serde::de::Error::custom(format!(
                "the \"auth\" of {key:?} has no ':' between user and password"
            )),
        })?;
        Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }

    /// Stores credentials for `registry`, keeping everything else in the file.
    pub fn store(&self, registry: &str, creds: &Credentials) -> Result<()> {
        let mut cfg = self.load()?;
        let key = server_key(registry);
        if let Some(helper) = self.helper_for(&cfg, &key) {
            return Err(Error::CredentialHelper {
                registry: registry.to_string(),
                helper,
                path: self.path.clone(),
            });
        }
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        let auths = cfg
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(auths) = auths {
            let mut entry = Map::new();
            entry.insert("auth".into(), Value::String(auth));
            auths.insert(key, Value::Object(entry));
        }
        self.save(&cfg)
    }

    /// Removes the credentials of `registry`; returns whether there were any.
    pub fn remove(&self, registry: &str) -> Result<bool> {
        let mut cfg = self.load()?;
        let key = server_key(registry);
        let removed = match cfg.get_mut("auths").and_then(|a| a.as_object_mut()) {
            Some(auths) => {
                let keys: Vec<String> = auths
                    .keys()
                    .filter(|k| server_key(k) == key)
                    .cloned()
                    .collect();
                for k in &keys {
                    auths.remove(k);
                }
                !keys.is_empty()
            }
            None => false,
        };
        if removed {
            self.save(&cfg)?;
        }
        Ok(removed)
    }

    /// Writes to a temporary file in the same directory, made 0600 before any secret is in
    /// it, synced, then renamed over the old file: a crash leaves the old or the new file,
    /// never half of one, and no other user can read it at any time.
    fn save(&self, cfg: &Map<String, Value>) -> Result<()> {
        let werr = |source| Error::WriteConfig {
            path: self.path.clone(),
            source,
        };
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(werr)?;
        let mut body = serde_json::to_vec_pretty(&Value::Object(cfg.clone()))
            .map_err(|e| werr(std::io::Error::other(e)))?;
        body.push(b'\n');
        // tempfile creates the file with mode 0600 already.
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(dir)
            .map_err(werr)?;
        tmp.write_all(&body).map_err(werr)?;
        tmp.as_file().sync_all().map_err(werr)?;
        tmp.persist(&self.path).map_err(|e| werr(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn store_get_remove_roundtrip_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"auths": {}, "psFormat": "table {{.ID}}"}"#).unwrap();
        let s = CredentialStore::at(&path);
        s.store("127.0.0.1:5000", &creds("alice", "p:w")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table {{.ID}}");
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], "YWxpY2U6cDp3");
        assert_eq!(
            s.get("127.0.0.1:5000").unwrap(),
            Some(creds("alice", "p:w"))
        );
        assert_eq!(s.get("127.0.0.1:5001").unwrap(), None);
        assert!(s.remove("127.0.0.1:5000").unwrap());
        assert!(!s.remove("127.0.0.1:5000").unwrap());
        assert_eq!(s.get("127.0.0.1:5000").unwrap(), None);
    }

    #[test]
    fn finds_docker_url_keys_and_hub() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {"https://reg.example:5000/": {"auth": "dTpw"}, "https://index.docker.io/v1/": {"auth": "aDpw"}}}"#,
        )
        .unwrap();
        let s = CredentialStore::at(&path);
        assert_eq!(s.get("reg.example:5000").unwrap(), Some(creds("u", "p")));
        assert_eq!(s.get("docker.io").unwrap(), Some(creds("h", "p")));
    }

    #[test]
    fn credential_helpers_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credsStore": "desktop"}"#).unwrap();
        let s = CredentialStore::at(&path);
        let e = s.get("r:1").unwrap_err();
        assert!(e.to_string().contains("docker-credential-desktop"), "{e}");
        assert!(s.store("r:1", &creds("a", "b")).is_err());
    }
}
