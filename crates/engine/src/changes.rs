//! `docker diff` and `docker commit`: what a container changed, read from its overlay upper
//! directory (a whiteout is a deletion; a path the image's layers have is a modification,
//! any other an addition), and that change made into a new image.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_image::manifest::ContainerConfig;
use berth_image::Reference;
use berth_sys::resolve::{BENEATH, NO_SYMLINKS};
use bollard_stubs::models::{ChangeType, FilesystemChange};

use crate::error::{Error, Result};
use crate::Engine;

/// Whether `rel` exists in a lower layer, without following any symlink of that layer (a
/// layer's symlink could point anywhere on the host).
fn in_lower(lowers: &[OwnedFd], rel: &Path) -> bool {
    lowers.iter().any(|l| {
        berth_sys::openat2(
            l.as_fd(),
            rel,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
            BENEATH | NO_SYMLINKS,
        )
        .is_ok()
    })
}

fn is_whiteout(md: &std::fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn walk(
    upper: &Path,
    rel: &Path,
    lowers: &[OwnedFd],
    parent_added: bool,
    out: &mut Vec<FilesystemChange>,
) -> Result<()> {
    let dir = upper.join(rel);
    let rd = std::fs::read_dir(&dir).map_err(Error::io("read directory", &dir))?;
    for ent in rd {
        let ent = ent.map_err(Error::io("read directory", &dir))?;
        let r = rel.join(ent.file_name());
        let md = std::fs::symlink_metadata(ent.path()).map_err(Error::io("stat", ent.path()))?;
        let shown = format!("/{}", r.display());
        if is_whiteout(&md) {
            out.push(FilesystemChange {
                path: shown,
                kind: ChangeType::_2,
            });
            continue;
        }
        let added = parent_added || !in_lower(lowers, &r);
        out.push(FilesystemChange {
            path: shown,
            kind: if added {
                ChangeType::_1
            } else {
                ChangeType::_0
            },
        });
        if md.is_dir() {
            walk(upper, &r, lowers, added, out)?;
        }
    }
    Ok(())
}

/// A change list sorted by path, as Docker prints it.
pub fn changes_of(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<FilesystemChange>> {
    let mut fds = Vec::new();
    for l in lowers {
        let f = std::fs::File::open(l).map_err(Error::io("open layer", l))?;
        fds.push(OwnedFd::from(f));
    }
    let mut out = Vec::new();
    walk(upper, Path::new(""), &fds, false, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// What `POST /commit` asks for.
#[derive(Debug, Default, Clone)]
pub struct CommitOptions {
    pub repo: Option<String>,
    pub tag: Option<String>,
    pub comment: Option<String>,
    pub author: Option<String>,
    pub changes: Vec<String>,
    pub pause: bool,
    /// The request body: a config replacing the container's (Docker's `config` body).
    pub config: Option<ContainerConfig>,
}

fn merge_env(base: &mut Vec<String>, over: &[String]) {
    for kv in over {
        let key = kv.split('=').next().unwrap_or(kv);
        base.retain(|e| e.split('=').next() != Some(key));
        base.push(kv.clone());
    }
}

/// Lays `over`'s set fields over `base` (env and labels merged by key).
fn overlay(base: &mut ContainerConfig, over: ContainerConfig) {
    if let Some(env) = over.env {
        merge_env(base.env.get_or_insert_with(Vec::new), &env);
    }
    if let Some(l) = over.labels {
        base.labels.get_or_insert_with(Default::default).extend(l);
    }
    if let Some(p) = over.exposed_ports {
        base.exposed_ports
            .get_or_insert_with(Default::default)
            .extend(p);
    }
    if let Some(v) = over.volumes {
        base.volumes.get_or_insert_with(Default::default).extend(v);
    }
    let new_cmd = over.cmd.is_some();
    if over.entrypoint.is_some() {
        base.entrypoint = over.entrypoint;
        if !new_cmd {
            // A new entrypoint drops the old default arguments, as in a Dockerfile.
            base.cmd = None;
        }
    }
    if new_cmd {
        base.cmd = over.cmd;
    }
    if over.user.is_some() {
        base.user = over.user;
    }
    if over.working_dir.is_some() {
        base.working_dir = over.working_dir;
    }
    if over.stop_signal.is_some() {
        base.stop_signal = over.stop_signal;
    }
}

impl Engine {
    /// `GET /containers/{id}/changes`.
    pub fn changes(&self, s: &str) -> Result<Vec<FilesystemChange>> {
        let r = self.find(s)?;
        let dirs = self.images.snapshotter().chain_dirs(&r.id)?;
        let Some((upper, lowers)) = dirs.split_first() else {
            return Ok(Vec::new());
        };
        changes_of(upper, lowers)
    }

    /// `POST /commit`: the container's changes as a new layer over its image, with its
    /// config (and the `changes` instructions) as the image's. Paused meanwhile if asked and
    /// running, so the layer is a consistent picture.
    pub fn commit(&self, s: &str, o: CommitOptions) -> Result<String> {
        let r = self.find(s)?;
        let reference = match (&o.repo, &o.tag) {
            (Some(repo), tag) if !repo.is_empty() => {
                let full = match tag.as_deref().filter(|t| !t.is_empty()) {
                    Some(t) => format!("{repo}:{t}"),
                    None => repo.clone(),
                };
                Some(full.parse::<Reference>().map_err(|e| {
                    Error::InvalidArgument(format!("invalid reference format {full:?}: {e}"))
                })?)
            }
            _ => None,
        };
        let base = self.images.get(&r.image_id.parse().map_err(|e| {
            Error::InvalidArgument(format!("image ID {} of {}: {e}", r.image_id, r.id))
        })?)?;
        let mut config = base.config.config.clone().unwrap_or_default();
        let body = self.body(&r);
        let from_container = ContainerConfig {
            user: body.user.clone().filter(|u| !u.is_empty()),
            env: body.env.clone(),
            entrypoint: body.entrypoint.clone(),
            cmd: body.cmd.clone(),
            working_dir: body.working_dir.clone().filter(|w| !w.is_empty()),
            labels: body.labels.clone().map(|l| l.into_iter().collect()),
            stop_signal: body.stop_signal.clone(),
            ..Default::default()
        };
        overlay(&mut config, from_container);
        if let Some(c) = o.config {
            overlay(&mut config, c);
        }
        if !o.changes.is_empty() {
            overlay(
                &mut config,
                berth_image::archive::parse_changes(&o.changes)?,
            );
        }
        let paused_here = o.pause && r.status == "running";
        if paused_here {
            self.runtime().pause(&r.id)?;
        }
        let created_by = format!("berth commit {}", r.name);
        let res = self.images.commit_container_by(
            &r.id,
            Some(&base),
            Some(config),
            &created_by,
            o.comment.as_deref().filter(|c| !c.is_empty()),
            o.author.as_deref().filter(|a| !a.is_empty()),
            reference.as_ref(),
        );
        if paused_here {
            if let Err(e) = self.runtime().resume(&r.id) {
                tracing::warn!(container = %r.id, error = %e, "resume after commit");
            }
        }
        let img = res?;
        let id = img.id.to_string();
        self.emit_event(&r, "commit", &[("comment", o.comment.unwrap_or_default())]);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_an_upper_dir() {
        let t = tempfile::tempdir().expect("tempdir");
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        for d in ["lower/etc", "lower/gone", "upper/etc", "upper/new"] {
            std::fs::create_dir_all(t.path().join(d)).expect("mkdir");
        }
        std::fs::write(lower.join("etc/passwd"), "a").expect("write");
        std::fs::write(upper.join("etc/passwd"), "b").expect("write");
        std::fs::write(upper.join("new/file"), "c").expect("write");
        nix::sys::stat::mknod(
            &upper.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("whiteout");
        let c = changes_of(&upper, &[lower]).expect("changes");
        let got: Vec<(String, ChangeType)> = c.into_iter().map(|c| (c.path, c.kind)).collect();
        assert_eq!(
            got,
            vec![
                ("/etc".to_string(), ChangeType::_0),
                ("/etc/passwd".to_string(), ChangeType::_0),
                ("/gone".to_string(), ChangeType::_2),
                ("/new".to_string(), ChangeType::_1),
                ("/new/file".to_string(), ChangeType::_1),
            ]
        );
    }

    #[test]
    fn env_is_merged_by_key() {
        let mut a = vec!["A=1".to_string(), "B=2".to_string()];
        merge_env(&mut a, &["B=3".to_string(), "C=4".to_string()]);
        assert_eq!(a, vec!["A=1", "B=3", "C=4"]);
    }
}
