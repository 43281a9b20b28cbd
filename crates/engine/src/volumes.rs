//! Volumes, as Docker's `local` driver keeps them: a directory `<data-root>/volumes/<name>/_data`
//! (or, with `--opt type=...`, a filesystem mounted there while the volume exists), a row in
//! the `volumes` table, and one row per container mount in `container_mounts`.
//!
//! A container's mounts are resolved once, at create (named volumes created, anonymous ones
//! named, `--volumes-from` copied, bind sources checked) and kept, so that inspect, `rm -v`
//! and the in-use check read the same list the container runs with. At start, every volume
//! mount becomes a bind of the volume's directory (seeded from the image first, once), and the
//! spec builder sees only binds and tmpfs mounts it already knows.

use berth_image::db::Cached;
use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerCreateBody, Mount, MountType};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::db::Record;
use crate::engine::{now, Engine};
use crate::error::{Error, Result};

/// Held while a volume is mounted and seeded at a container's start.
static SEED_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The label Docker (23+) puts on the volumes it makes for a container; `volume prune`
/// without `all=true` removes only those.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// One volume's row.
#[derive(Debug, Clone, Default)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    pub created: String,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
    pub anonymous: bool,
    /// Set when a container first mounted it: the image's files are copied in at most once.
    pub seeded: bool,
}

/// One mount of a container, as resolved at create.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MountRec {
    /// `volume`, `bind` or `tmpfs`.
    pub typ: String,
    /// The volume's name (empty for binds and tmpfs; for an anonymous volume until create
    /// names it).
    pub name: String,
    /// The host path of a bind.
    pub source: String,
    pub destination: String,
    /// The options as the user wrote them (`ro,nocopy`), as Docker reports them.
    pub mode: String,
    pub rw: bool,
    pub propagation: String,
    pub nocopy: bool,
    /// Made for this container: `rm -v` removes it.
    pub anonymous: bool,
    /// For a named volume that does not exist yet: what `--mount volume-opt=` asked for.
    #[serde(default)]
    pub volume_opts: HashMap<String, String>,
    #[serde(default)]
    pub volume_labels: HashMap<String, String>,
    /// `-v` creates a missing bind source; `--mount` refuses it.
    #[serde(default)]
    pub create_source: bool,
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`. It is also what keeps
/// a name from leaving `<data-root>/volumes` (no `/`, never `.` or `..`).
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "create {name}: volume name is too short, names should be at least two alphanumeric characters"
        )));
    }
    if !(first_ok && rest_ok) {
        return Err(Error::InvalidArgument(format!(
            "create {name}: {name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

/// The local driver's options: `type`, `device`, `o` (and `size`, which needs quota support
/// berth does not have).
fn check_options(name: &str, opts: &HashMap<String, String>) -> Result<()> {
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o") {
            return Err(Error::InvalidArgument(format!(
                "create {name}: invalid option: {k:?} (the local driver takes type, device, o)"
            )));
        }
    }
    let typ = opts.get("type").map(String::as_str).unwrap_or("");
    let o = opts.get("o").map(String::as_str).unwrap_or("");
    let device = opts.get("device").map(String::as_str).unwrap_or("");
    if typ.is_empty() && (!device.is_empty() || !o.is_empty()) {
        return Err(Error::InvalidArgument(format!(
            "create {name}: missing required option: \"type\""
        )));
    }
    if !typ.is_empty() && typ != "tmpfs" && device.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "create {name}: missing required option: \"device\""
        )));
    }
    if is_bind(o) && !Path::new(device).exists() {
        return Err(Error::InvalidArgument(format!(
            "create {name}: device {device:?} does not exist (o=bind needs an existing path)"
        )));
    }
    Ok(())
}

fn is_bind(o: &str) -> bool {
    o.split(',').any(|w| w == "bind" || w == "rbind")
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn clean_dest(flag: &str, d: &str) -> Result<String> {
    if !d.starts_with('/') || d.split('/').any(|c| c == "..") {
        return Err(Error::InvalidArgument(format!(
            "invalid mount config for {flag}: {d:?} is not an absolute path inside the container"
        )));
    }
    let t = d.trim_end_matches('/');
    if t.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "invalid mount config for {flag}: destination can't be '/'"
        )));
    }
    Ok(t.to_string())
}

const PROPAGATIONS: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// One `Binds` entry: `name:/dst[:opts]`, `/host:/dst[:opts]`, or `/dst` (anonymous).
fn parse_bind_entry(b: &str) -> Result<MountRec> {
    let parts: Vec<&str> = b.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "invalid volume specification: {b:?}"
            )))
        }
    };
    let destination = clean_dest("--volume", dst)?;
    let mut m = MountRec {
        destination,
        mode: mode.to_string(),
        rw: true,
        ..Default::default()
    };
    let mut prop = None;
    for o in mode.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.rw = false,
            "rw" => m.rw = true,
            "nocopy" => m.nocopy = true,
            // SELinux relabelling and macOS consistency hints have no meaning here
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            p if PROPAGATIONS.contains(&p) => prop = Some(p.to_string()),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "invalid mode: {o:?} in volume specification {b:?}"
                )))
            }
        }
    }
    if src.starts_with('/') {
        m.typ = "bind".into();
        m.source = src.to_string();
        m.propagation = prop.unwrap_or_else(|| "rprivate".into());
        m.create_source = true;
        if m.nocopy {
            return Err(Error::InvalidArgument(format!(
                "invalid mode: \"nocopy\" is for volumes, not for the bind {b:?}"
            )));
        }
    } else {
        if prop.is_some() {
            return Err(Error::InvalidArgument(format!(
                "invalid mode: propagation is for binds, not for the volume in {b:?}"
            )));
        }
        m.typ = "volume".into();
        if src.is_empty() {
            m.anonymous = true;
        } else {
            check_name(src)?;
            m.name = src.to_string();
        }
    }
    Ok(m)
}

/// One `--mount` (HostConfig.Mounts entry).
fn parse_mount(m: &Mount) -> Result<MountRec> {
    let destination = clean_dest("--mount", m.target.as_deref().unwrap_or(""))?;
    let rw = m.read_only != Some(true);
    let src = m.source.clone().unwrap_or_default();
    match m.typ {
        Some(MountType::BIND) => {
            if !src.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "invalid mount config for type \"bind\": invalid mount path: {src:?} mount path must be absolute"
                )));
            }
            let prop = m
                .bind_options
                .as_ref()
                .and_then(|b| b.propagation.as_ref())
                .map(|p| p.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rprivate".into());
            Ok(MountRec {
                typ: "bind".into(),
                source: src,
                destination,
                rw,
                propagation: prop,
                ..Default::default()
            })
        }
        Some(MountType::VOLUME) => {
            let vo = m.volume_options.clone().unwrap_or_default();
            if let Some(d) = vo.driver_config.as_ref().and_then(|d| d.name.as_deref()) {
                if !d.is_empty() && d != "local" {
                    return Err(Error::InvalidArgument(format!(
                        "volume driver {d:?} is not supported (local)"
                    )));
                }
            }
            let opts = vo
                .driver_config
                .as_ref()
                .and_then(|d| d.options.clone())
                .unwrap_or_default();
            let mut r = MountRec {
                typ: "volume".into(),
                destination,
                rw,
                nocopy: vo.no_copy == Some(true),
                volume_opts: opts,
                volume_labels: vo.labels.unwrap_or_default(),
                ..Default::default()
            };
            if src.is_empty() {
                r.anonymous = true;
            } else {
                check_name(&src)?;
                r.name = src;
            }
            check_options(
                if r.name.is_empty() {
                    "anonymous volume"
                } else {
                    &r.name
                },
                &r.volume_opts,
            )?;
            Ok(r)
        }
        Some(MountType::TMPFS) => Ok(MountRec {
            typ: "tmpfs".into(),
            destination,
            rw,
            ..Default::default()
        }),
        Some(ref t) => Err(Error::InvalidArgument(format!(
            "mount type {t} is not supported (bind, volume, tmpfs)"
        ))),
        None => Err(Error::InvalidArgument("a mount needs a type".into())),
    }
}

fn vol_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRecord> {
    let labels: String = r.get(3)?;
    let options: String = r.get(4)?;
    Ok(VolumeRecord {
        name: r.get(0)?,
        driver: r.get(1)?,
        created: r.get(2)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        options: serde_json::from_str(&options).unwrap_or_default(),
        anonymous: r.get::<_, i64>(5)? != 0,
        seeded: r.get::<_, i64>(6)? != 0,
    })
}

const VCOLS: &str = "name, driver, created, labels, options, anonymous, seeded";

/// The containers (id, name) whose mounts use volume `name`.
fn users_of(conn: &rusqlite::Connection, name: &str) -> Result<Vec<(String, String)>> {
    let mut st = conn
        .prepare(
            "SELECT DISTINCT m.container, COALESCE(c.name, '') FROM container_mounts m \
             LEFT JOIN containers c ON c.id = m.container \
             WHERE m.typ = 'volume' AND m.name = ?1 ORDER BY m.container",
        )
        .map_err(Error::db("find a volume's containers"))?;
    let rows = st
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(Error::db("find a volume's containers"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::db("find a volume's containers"));
    rows
}

fn du(p: &Path) -> u64 {
    let mut total = 0;
    let mut seen = BTreeSet::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.nlink() <= 1 || seen.insert((md.dev(), md.ino())) {
                total += md.blocks() * 512;
            }
        }
    }
    total
}

fn volume_event(
    action: &str,
    name: &str,
    attributes: HashMap<String, String>,
) -> crate::events::Event {
    crate::events::Event {
        typ: "volume",
        action: action.to_string(),
        id: name.to_string(),
        attributes,
        time_nano: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
    }
}

/// Whether something is mounted at `p`, by the mount table: a bind of a directory of the
/// same filesystem has the same device number as its parent, so `stat` cannot tell.
fn is_mountpoint(p: &Path) -> bool {
    let Ok(p) = p.canonicalize() else {
        return false;
    };
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.to_string_lossy();
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape_mountinfo(m) == want)
}

/// mountinfo writes space, tab, newline and backslash in a path as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.config().data_root.join("volumes")
    }

    /// Where volume `name` keeps its data.
    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    /// `POST /volumes/create`. An existing volume of that name is returned as it is, as
    /// Docker does.
    pub fn volume_create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        options: HashMap<String, String>,
        labels: HashMap<String, String>,
    ) -> Result<VolumeRecord> {
        let driver = driver.filter(|d| !d.is_empty()).unwrap_or("local");
        if driver != "local" {
            return Err(Error::NotFound(format!(
                "create {}: error looking up volume plugin {driver}: plugin {driver:?} not found",
                name.unwrap_or("")
            )));
        }
        let (name, anonymous) = match name.filter(|n| !n.is_empty()) {
            Some(n) => (n.to_string(), false),
            None => (random_hex(), false),
        };
        check_name(&name)?;
        check_options(&name, &options)?;
        self.create_volume(&name, options, labels, anonymous)
    }

    fn create_volume(
        &self,
        name: &str,
        options: HashMap<String, String>,
        mut labels: HashMap<String, String>,
        anonymous: bool,
    ) -> Result<VolumeRecord> {
        if let Some(v) = self.volume_find(name)? {
            return Ok(v);
        }
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let top = self.volumes_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&top)
            .map_err(Error::io("create volumes directory", &top))?;
        let dir = top.join(name);
        let data = dir.join("_data");
        let fresh = !dir.exists();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&data)
            .map_err(Error::io("create volume directory", &data))?;
        let v = VolumeRecord {
            name: name.to_string(),
            driver: "local".into(),
            created: now(),
            labels,
            options,
            anonymous,
            seeded: false,
        };
        let res = self.db.lock().exec_c(
            &format!("INSERT INTO volumes ({VCOLS}) VALUES (?1,?2,?3,?4,?5,?6,0)"),
            params![
                v.name,
                v.driver,
                v.created,
                serde_json::to_string(&v.labels).unwrap_or_else(|_| "{}".into()),
                serde_json::to_string(&v.options).unwrap_or_else(|_| "{}".into()),
                v.anonymous as i64
            ],
        );
        match res {
            Ok(_) => {}
            // a concurrent create of the same name won: that one is the volume
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return self
                    .volume_find(name)?
                    .ok_or_else(|| Error::NoSuchVolume(name.to_string()));
            }
            Err(e) => {
                if fresh {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(Error::db("insert volume")(e));
            }
        }
        let mut attrs = HashMap::new();
        attrs.insert("driver".to_string(), "local".to_string());
        self.events.send(volume_event("create", name, attrs));
        Ok(v)
    }

    fn volume_find(&self, name: &str) -> Result<Option<VolumeRecord>> {
        self.db
            .lock()
            .row_c(
                &format!("SELECT {VCOLS} FROM volumes WHERE name = ?1"),
                [name],
                vol_row,
            )
            .optional()
            .map_err(Error::db("read volume"))
    }

    /// `GET /volumes/{name}`.
    pub fn volume_get(&self, name: &str) -> Result<VolumeRecord> {
        self.volume_find(name)?
            .ok_or_else(|| Error::NoSuchVolume(name.to_string()))
    }

    /// Every volume, by name.
    pub fn volume_list(&self) -> Result<Vec<VolumeRecord>> {
        let conn = self.db.lock();
        let mut st = conn
            .prepare(&format!("SELECT {VCOLS} FROM volumes ORDER BY name"))
            .map_err(Error::db("list volumes"))?;
        let rows = st
            .query_map([], vol_row)
            .map_err(Error::db("list volumes"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::db("list volumes"));
        rows
    }

    /// The containers (id, name) that use volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<(String, String)>> {
        users_of(&self.db.lock(), name)
    }

    /// Docker's Volume JSON.
    pub fn volume_json(&self, v: &VolumeRecord) -> serde_json::Value {
        serde_json::json!({
            "Name": v.name,
            "Driver": v.driver,
            "Mountpoint": self.volume_data(&v.name),
            "CreatedAt": v.created,
            "Labels": v.labels,
            "Scope": "local",
            "Options": if v.options.is_empty() { serde_json::Value::Null } else { serde_json::json!(v.options) },
        })
    }

    /// `DELETE /volumes/{name}`. A volume a container uses (running or not) is refused with
    /// 409; `force` only makes a missing volume no error, as in Docker.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let dir = self.volumes_dir().join(name);
        let data = dir.join("_data");
        {
            // the check and the delete under one lock: a container create that resolves its
            // mounts meanwhile either sees the volume gone or is seen using it
            let conn = self.db.lock();
            let exists: Option<String> = conn
                .row_c("SELECT name FROM volumes WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(Error::db("read volume"))?;
            if exists.is_none() {
                return if force {
                    Ok(())
                } else {
                    Err(Error::NoSuchVolume(name.to_string()))
                };
            }
            let users = users_of(&conn, name)?;
            if !users.is_empty() {
                let ids: Vec<&str> = users.iter().map(|(id, _)| id.as_str()).collect();
                let names: Vec<String> = users.iter().map(|(_, n)| format!("/{n}")).collect();
                return Err(Error::Conflict(format!(
                    "remove {name}: volume is in use - [{}] (container {})",
                    ids.join(", "),
                    names.join(", ")
                )));
            }
            // a filesystem mounted by `type=` options (a bind of the user's device directory)
            // comes off first: what is below it is not the volume's to delete
            while is_mountpoint(&data) {
                nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
                    Error::Io {
                        op: "unmount volume",
                        path: data.clone(),
                        source: e.into(),
                    }
                })?;
            }
            conn.exec_c("DELETE FROM volumes WHERE name = ?1", [name])
                .map_err(Error::db("remove volume"))?;
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io("remove volume directory", &dir)(e));
            }
        }
        self.events
            .send(volume_event("destroy", name, HashMap::new()));
        Ok(())
    }

    /// `POST /volumes/prune`: unused volumes, only anonymous ones unless `all`; `keep` says
    /// which of those the caller's filters spare. Returns the names removed and the bytes.
    pub fn volume_prune(
        &self,
        all: bool,
        keep: &dyn Fn(&VolumeRecord) -> bool,
    ) -> Result<(Vec<String>, u64)> {
        let mut gone = Vec::new();
        let mut bytes = 0;
        for v in self.volume_list()? {
            if (!all && !v.anonymous && !v.labels.contains_key(ANONYMOUS_LABEL)) || keep(&v) {
                continue;
            }
            if !self.volume_users(&v.name)?.is_empty() {
                continue;
            }
            let size = du(&self.volume_data(&v.name));
            match self.volume_remove(&v.name, false) {
                Ok(()) => {
                    bytes += size;
                    gone.push(v.name);
                }
                // taken by a container meanwhile, or removed by someone else: not ours to prune
                Err(e) if matches!(e.kind(), crate::Kind::Conflict | crate::Kind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((gone, bytes))
    }

    /// Resolves a create request's mounts without changing anything: a bad name, a missing
    /// `--mount` bind source or an unknown `--volumes-from` container is refused here, before
    /// the container exists.
    pub(crate) fn plan_mounts(
        &self,
        body: &ContainerCreateBody,
        image: &berth_image::manifest::ImageConfig,
    ) -> Result<Vec<MountRec>> {
        let mut out: Vec<MountRec> = Vec::new();
        let put = |out: &mut Vec<MountRec>, m: MountRec| {
            out.retain(|x| x.destination != m.destination);
            out.push(m);
        };
        let hc = body.host_config.clone().unwrap_or_default();
        // Docker's order: --volumes-from first, then what the request names overrides them
        for vf in hc.volumes_from.iter().flatten() {
            let (who, mode) = match vf.rsplit_once(':') {
                Some((w, m)) if m == "ro" || m == "rw" => (w, Some(m == "rw")),
                Some(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "invalid --volumes-from {vf:?}: the mode must be ro or rw"
                    )))
                }
                None => (vf.as_str(), None),
            };
            let other = self.db.find(who).map_err(|e| match e {
                Error::NoSuchContainer(_) => {
                    Error::NotFound(format!("--volumes-from: no such container: {who}"))
                }
                e => e,
            })?;
            for mut m in self.container_mounts(&other.id)? {
                if m.typ == "tmpfs" {
                    continue;
                }
                if let Some(rw) = mode {
                    m.rw = rw;
                }
                m.anonymous = false;
                m.create_source = false;
                put(&mut out, m);
            }
        }
        let mut mine = Vec::new();
        for b in hc.binds.iter().flatten() {
            mine.push(parse_bind_entry(b)?);
        }
        for m in hc.mounts.iter().flatten() {
            mine.push(parse_mount(m)?);
        }
        let mut seen = BTreeSet::new();
        for m in &mine {
            if !seen.insert(m.destination.clone()) {
                return Err(Error::InvalidArgument(format!(
                    "Duplicate mount point: {}",
                    m.destination
                )));
            }
            if m.typ == "bind" && !m.create_source && !Path::new(&m.source).exists() {
                return Err(Error::InvalidArgument(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    m.source
                )));
            }
        }
        for m in mine {
            put(&mut out, m);
        }
        // `-v /dst` (Config.Volumes) and the image's VOLUME entries: anonymous volumes where
        // nothing else is mounted
        let tmpfs_dsts: Vec<String> = hc
            .tmpfs
            .iter()
            .flat_map(|t| t.keys())
            .map(|d| d.trim_end_matches('/').to_string())
            .collect();
        let wanted = body.volumes.iter().flatten().cloned().chain(
            image
                .config
                .as_ref()
                .and_then(|c| c.volumes.as_ref())
                .into_iter()
                .flat_map(|v| v.keys().cloned()),
        );
        for d in wanted {
            let d = clean_dest("--volume", &d)?;
            if out.iter().any(|m| m.destination == d) || tmpfs_dsts.contains(&d) {
                continue;
            }
            out.push(MountRec {
                typ: "volume".into(),
                destination: d,
                rw: true,
                anonymous: true,
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Makes what `plan_mounts` resolved real for container `id`: named volumes created if
    /// missing, anonymous ones created and named, missing `-v` bind sources made; the mounts
    /// recorded (from now on the volumes are in use).
    pub(crate) fn commit_mounts(&self, id: &str, plan: Vec<MountRec>) -> Result<()> {
        for mut m in plan {
            if m.typ == "volume" && m.anonymous && m.name.is_empty() {
                m.name = random_hex();
            }
            // the mount is recorded before its volume is made: from the moment the volume
            // exists it is in use, so a concurrent prune or rm cannot take it away
            let body = serde_json::to_string(&m).unwrap_or_default();
            self.db
                .lock()
                .exec_c(
                    "INSERT OR REPLACE INTO container_mounts (container, destination, typ, name, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, m.destination, m.typ, m.name, body],
                )
                .map_err(Error::db("record a container's mount"))?;
            match m.typ.as_str() {
                "volume" => {
                    self.create_volume(
                        &m.name,
                        std::mem::take(&mut m.volume_opts),
                        std::mem::take(&mut m.volume_labels),
                        m.anonymous,
                    )?;
                }
                "bind" if m.create_source && !Path::new(&m.source).exists() => {
                    std::fs::create_dir_all(&m.source)
                        .map_err(Error::io("create bind source", &m.source))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Container `id`'s mounts as resolved at create.
    pub fn container_mounts(&self, id: &str) -> Result<Vec<MountRec>> {
        let conn = self.db.lock();
        let mut st = conn
            .prepare_cached(
                "SELECT body FROM container_mounts WHERE container = ?1 ORDER BY destination",
            )
            .map_err(Error::db("read a container's mounts"))?;
        let rows = st
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(Error::db("read a container's mounts"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::db("read a container's mounts"))?;
        Ok(rows
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect())
    }

    /// The names of the volumes made for container `id` (what `rm -v` removes).
    pub fn anonymous_volumes(&self, id: &str) -> Result<Vec<String>> {
        Ok(self
            .container_mounts(id)?
            .into_iter()
            .filter(|m| m.typ == "volume" && m.anonymous)
            .map(|m| m.name)
            .collect())
    }

    /// `Mounts` of inspect and of the container list, as Docker reports them.
    pub fn mount_points(&self, id: &str) -> serde_json::Value {
        let mounts = self.container_mounts(id).unwrap_or_default();
        let v: Vec<serde_json::Value> = mounts
            .iter()
            .map(|m| match m.typ.as_str() {
                "volume" => serde_json::json!({
                    "Type": "volume", "Name": m.name,
                    "Source": self.volume_data(&m.name), "Destination": m.destination,
                    "Driver": "local", "Mode": m.mode, "RW": m.rw, "Propagation": "",
                }),
                "bind" => serde_json::json!({
                    "Type": "bind", "Source": m.source, "Destination": m.destination,
                    "Mode": m.mode, "RW": m.rw, "Propagation": m.propagation,
                }),
                _ => serde_json::json!({
                    "Type": m.typ, "Source": "", "Destination": m.destination,
                    "Mode": m.mode, "RW": m.rw, "Propagation": "",
                }),
            })
            .collect();
        serde_json::Value::Array(v)
    }

    /// Called as container `r` is removed: its mounts are forgotten (its volumes are free
    /// again); a `--rm` container's anonymous volumes go with it, as in Docker.
    pub(crate) fn release_mounts(&self, r: &Record) {
        let anon = self.anonymous_volumes(&r.id).unwrap_or_default();
        if let Err(e) = self
            .db
            .lock()
            .exec_c("DELETE FROM container_mounts WHERE container = ?1", [&r.id])
        {
            tracing::warn!(container = %r.id, error = %e, "forget a container's mounts");
            return;
        }
        let body: ContainerCreateBody = serde_json::from_str(&r.body).unwrap_or_default();
        if body.host_config.and_then(|h| h.auto_remove) == Some(true) {
            for v in anon {
                if let Err(e) = self.volume_remove(&v, true) {
                    tracing::warn!(container = %r.id, volume = %v, error = %e, "remove an anonymous volume");
                }
            }
        }
    }

    /// `DELETE /containers/{id}?v=1`: the container, then the volumes made for it (a named
    /// volume stays; an anonymous one another container took over by `--volumes-from` too).
    pub fn remove_with_volumes(&self, s: &str, force: bool, volumes: bool) -> Result<()> {
        if !volumes {
            return self.remove(s, force);
        }
        let r = self.find(s)?;
        let anon = self.anonymous_volumes(&r.id)?;
        self.remove(&r.id, force)?;
        for v in anon {
            match self.volume_remove(&v, true) {
                Ok(()) => {}
                Err(e) if e.kind() == crate::Kind::Conflict => {
                    tracing::info!(container = %r.id, volume = %v, "anonymous volume still in use: kept");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Undoes `commit_mounts` of a create that failed after it: the mounts forgotten, the
    /// volumes made for the container removed.
    pub(crate) fn abort_mounts(&self, id: &str) {
        let anon = self.anonymous_volumes(id).unwrap_or_default();
        let _ = self
            .db
            .lock()
            .exec_c("DELETE FROM container_mounts WHERE container = ?1", [id]);
        for v in anon {
            let _ = self.volume_remove(&v, true);
        }
    }

    /// The request as the spec builder gets it at start: every volume mount becomes a bind
    /// of the volume's directory (mounted, if the volume has `type=` options, and seeded from
    /// the image at its first use), binds taken over by `--volumes-from` become binds.
    pub(crate) fn volumes_for_start(
        &self,
        id: &str,
        mut body: ContainerCreateBody,
        rootfs: &Path,
    ) -> Result<ContainerCreateBody> {
        let mounts = self.container_mounts(id)?;
        if mounts.is_empty() {
            return Ok(body);
        }
        let mut hc = body.host_config.clone().unwrap_or_default();
        // the host binds the request named stay where spec.rs expects them
        let own_binds: Vec<String> = hc
            .binds
            .iter()
            .flatten()
            .filter(|b| b.starts_with('/') && b.contains(':'))
            .cloned()
            .collect();
        let own_bind_dsts: BTreeSet<String> = own_binds
            .iter()
            .filter_map(|b| b.split(':').nth(1))
            .map(|d| d.trim_end_matches('/').to_string())
            .collect();
        let mut new_mounts: Vec<Mount> = hc
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.typ != Some(MountType::VOLUME))
            .cloned()
            .collect();
        let listed: BTreeSet<String> = new_mounts
            .iter()
            .filter_map(|m| m.target.as_deref())
            .map(|d| d.trim_end_matches('/').to_string())
            .collect();
        for m in &mounts {
            let source = match m.typ.as_str() {
                "volume" => {
                    // two containers starting on one new volume: one mounts and seeds it,
                    // the other then finds it done
                    let _g = SEED_LOCK.lock().unwrap_or_else(|p| p.into_inner());
                    let v = self.volume_get(&m.name)?;
                    let data = self.volume_data(&m.name);
                    if !data.is_dir() {
                        // removed behind berth's back: an empty volume again, not a failed start
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o755)
                            .create(&data)
                            .map_err(Error::io("create volume directory", &data))?;
                    }
                    self.mount_volume(&v, &data)?;
                    if !v.seeded {
                        if !m.nocopy {
                            seed(rootfs, &m.destination, &data).map_err(|e| Error::Io {
                                op: "copy the image's files into the volume",
                                path: data.clone(),
                                source: e,
                            })?;
                        }
                        self.db
                            .lock()
                            .exec_c("UPDATE volumes SET seeded = 1 WHERE name = ?1", [&m.name])
                            .map_err(Error::db("record a volume as seeded"))?;
                    }
                    data.to_string_lossy().into_owned()
                }
                // a bind of this container's own request is already in Binds or Mounts
                "bind"
                    if !own_bind_dsts.contains(&m.destination)
                        && !listed.contains(&m.destination) =>
                {
                    m.source.clone()
                }
                _ => continue,
            };
            new_mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some(source),
                target: Some(m.destination.clone()),
                read_only: Some(!m.rw),
                ..Default::default()
            });
        }
        hc.binds = Some(own_binds);
        hc.mounts = Some(new_mounts);
        body.host_config = Some(hc);
        body.volumes = None;
        for m in mounts.iter().filter(|m| m.typ == "volume") {
            let attrs = HashMap::from([
                ("container".to_string(), id.to_string()),
                ("destination".to_string(), m.destination.clone()),
                ("driver".to_string(), "local".to_string()),
                ("propagation".to_string(), m.propagation.clone()),
                ("read/write".to_string(), m.rw.to_string()),
            ]);
            self.events.send(volume_event("mount", &m.name, attrs));
        }
        Ok(body)
    }

    /// The `unmount` events of a container's volumes when its run ends (as dockerd's).
    pub(crate) fn volumes_unmounted(&self, id: &str) {
        let Ok(mounts) = self.container_mounts(id) else {
            return;
        };
        for m in mounts.iter().filter(|m| m.typ == "volume") {
            let attrs = HashMap::from([
                ("container".to_string(), id.to_string()),
                ("driver".to_string(), "local".to_string()),
            ]);
            self.events.send(volume_event("unmount", &m.name, attrs));
        }
    }

    /// A volume with `type=` options has that filesystem mounted on its directory while it
    /// is in use (Docker's local driver mounts at first use); a plain one is its directory.
    fn mount_volume(&self, v: &VolumeRecord, data: &Path) -> Result<()> {
        use nix::mount::MsFlags;
        let typ = v.options.get("type").map(String::as_str).unwrap_or("");
        if typ.is_empty() || is_mountpoint(data) {
            return Ok(());
        }
        let o = v.options.get("o").map(String::as_str).unwrap_or("");
        let device = v
            .options
            .get("device")
            .map(String::as_str)
            .filter(|d| !d.is_empty())
            .unwrap_or(typ);
        let res = if is_bind(o) {
            let mut flags = MsFlags::MS_BIND;
            if o.split(',').any(|w| w == "rbind") {
                flags |= MsFlags::MS_REC;
            }
            nix::mount::mount(Some(device), data, None::<&str>, flags, None::<&str>)
        } else {
            let data_opts = (!o.is_empty()).then_some(o);
            nix::mount::mount(Some(device), data, Some(typ), MsFlags::empty(), data_opts)
        };
        res.map_err(|e| {
            Error::InvalidArgument(format!(
                "mount volume {} (type={typ} device={device} o={o}) on {}: {e}",
                v.name,
                data.display()
            ))
        })
    }
}

/// Copies what the image has at `dest` into the empty volume directory `data`: owners,
/// modes, times, symlinks (as links), device nodes, hard links and extended attributes. The
/// path is resolved inside `rootfs` (openat2 RESOLVE_IN_ROOT), so an image's symlink can
/// never make this read the host's files. Returns whether anything was copied.
fn seed(rootfs: &Path, dest: &str, data: &Path) -> std::io::Result<bool> {
    let root = std::fs::File::open(rootfs)?;
    let rel = Path::new(dest.trim_start_matches('/'));
    let src = match berth_sys::openat2(
        root.as_fd(),
        rel,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        berth_sys::resolve::IN_ROOT,
    ) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    if std::fs::read_dir(data)?.next().is_some() {
        return Ok(false);
    }
    // The descriptor's /proc path is the resolved directory; below it every entry is looked
    // at with lstat, and only real directories are entered.
    let src_path = PathBuf::from(format!("/proc/self/fd/{}", src.as_raw_fd()));
    let mut links = HashMap::new();
    copy_dir(&src_path, data, &mut links)?;
    let md = std::fs::metadata(&src_path)?;
    copy_meta(&src_path, data, &md)?;
    Ok(true)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let md = from.symlink_metadata()?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_dir(&from, &to, links)?;
            copy_meta(&from, &to, &md)?;
            continue;
        }
        if md.nlink() > 1 {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                std::fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((md.dev(), md.ino()), to.clone());
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = nix::sys::stat::SFlag::from_bits_truncate(md.mode() & libc::S_IFMT);
            let perm = nix::sys::stat::Mode::from_bits_truncate(md.mode() & 0o7777);
            nix::sys::stat::mknod(&to, kind, perm, md.rdev())?;
        } else {
            // a socket belongs to the process that bound it; Docker skips them too
            continue;
        }
        copy_meta(&from, &to, &md)?;
    }
    Ok(())
}

/// Owner, then mode (a chown clears set-id bits), extended attributes, then times.
fn copy_meta(from: &Path, to: &Path, md: &std::fs::Metadata) -> std::io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid()))?;
    let symlink = md.file_type().is_symlink();
    if !symlink {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    if let Ok(names) = xattr::list(from) {
        for n in names {
            if let Ok(Some(v)) = xattr::get(from, &n) {
                // a namespace the kernel refuses here (trusted.* on some filesystems) is
                // not worth failing the container for
                if let Err(e) = xattr::set(to, &n, &v) {
                    tracing::debug!(path = %to.display(), error = %e, "copy an xattr");
                }
            }
        }
    }
    let at = TimeSpec::new(md.atime(), md.atime_nsec());
    let mt = TimeSpec::new(md.mtime(), md.mtime_nsec());
    utimensat(None, to, &at, &mt, UtimensatFlags::NoFollowSymlink)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ab", "data", "my_vol.1-x", "0a", "a..b"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "..", ".a", "a/b", "../x", "_a", "a b", "-a", "a:b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bind_entries() {
        let m = parse_bind_entry("data:/srv/:ro,nocopy").expect("named");
        assert_eq!(
            (
                m.typ.as_str(),
                m.name.as_str(),
                m.destination.as_str(),
                m.rw,
                m.nocopy
            ),
            ("volume", "data", "/srv", false, true)
        );
        let m = parse_bind_entry("/h:/c:rshared,Z").expect("bind");
        assert_eq!(
            (
                m.typ.as_str(),
                m.source.as_str(),
                m.propagation.as_str(),
                m.rw
            ),
            ("bind", "/h", "rshared", true)
        );
        let m = parse_bind_entry("/only").expect("anonymous");
        assert!(m.anonymous && m.typ == "volume" && m.name.is_empty());
        assert!(parse_bind_entry("a/b:/x").is_err());
        assert!(parse_bind_entry("..:/x").is_err());
        assert!(parse_bind_entry("vol:/").is_err());
        assert!(parse_bind_entry("vol:rel").is_err());
        assert!(parse_bind_entry("vol:/x:bogus").is_err());
        assert!(parse_bind_entry("vol:/x:rshared").is_err());
    }

    #[test]
    fn mountinfo_paths() {
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo("/plain\\"), "/plain\\");
        assert!(is_mountpoint(Path::new("/proc")));
    }

    #[test]
    fn options() {
        let o = |kv: &[(&str, &str)]| -> HashMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(check_options("v", &o(&[("type", "tmpfs"), ("o", "size=1m")])).is_ok());
        assert!(check_options("v", &o(&[("bogus", "1")])).is_err());
        assert!(check_options("v", &o(&[("o", "size=1m")])).is_err());
        assert!(check_options("v", &o(&[("type", "ext4")])).is_err());
        assert!(check_options(
            "v",
            &o(&[
                ("type", "none"),
                ("o", "bind"),
                ("device", "/nonexistent/xyz")
            ])
        )
        .is_err());
    }
}
