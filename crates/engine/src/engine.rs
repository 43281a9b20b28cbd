//! The engine proper: containers from create to removal. Blocking code, called by the API
//! through `spawn_blocking`; it knows no HTTP. One lock per container serialises the
//! operations on it (start, stop, remove, exit), never the whole engine.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_image::ImageStore;
use berth_runtime::Runtime;
use bollard_stubs::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, ExecConfig,
};
use serde_json::json;

use crate::db::{Db, ExecRecord, Record};
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::shim::{self, ExitInfo, ShimSpawn};

/// Where the engine keeps things, and the binary it starts shims from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Persistent state: images, containers' files, engine.db (/var/lib/berth).
    pub data_root: PathBuf,
    /// Runtime state: shims' sockets, the OCI runtime's root (/run/berth).
    pub exec_root: PathBuf,
    /// The berth binary (`berth shim` is started from it).
    pub berth_exe: PathBuf,
    /// `--host-gateway-ip`: what `--add-host NAME:host-gateway` stands for, instead of the
    /// gateway of the container's network.
    pub host_gateway_ip: Option<std::net::Ipv4Addr>,
}

pub struct Engine {
    pub(crate) cfg: Config,
    pub images: Arc<ImageStore>,
    pub(crate) db: Db,
    runtime: Runtime,
    pub events: Events,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Directories of removed containers and snapshots, deleted off the request path.
    trash: crate::trash::Trash,
    /// Prepared network namespaces, and namespaces unbound off the stop path.
    pub(crate) netpool: crate::network::pool::NetPool,
}

/// What `start` tells its caller between creating the container and starting it, so that
/// attach streams are connected before the first byte of output.
pub struct Created<'a> {
    pub id: &'a str,
    pub socket: PathBuf,
    pub tty: bool,
}

/// The pieces an exec start needs.
pub struct ExecPlan {
    pub socket: PathBuf,
    pub process: serde_json::Value,
    pub tty: bool,
    pub stdin: bool,
    pub detach: bool,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn random_name() -> String {
    use rand::seq::SliceRandom;
    const LEFT: &[&str] = &[
        "admiring",
        "bold",
        "brave",
        "clever",
        "dazzling",
        "eager",
        "elegant",
        "festive",
        "focused",
        "gallant",
        "happy",
        "jolly",
        "keen",
        "kind",
        "lucid",
        "modest",
        "nifty",
        "optimistic",
        "peaceful",
        "quirky",
        "relaxed",
        "serene",
        "sharp",
        "stoic",
        "vibrant",
        "wizardly",
        "youthful",
        "zealous",
    ];
    const RIGHT: &[&str] = &[
        "albattani",
        "babbage",
        "bohr",
        "curie",
        "darwin",
        "einstein",
        "euclid",
        "fermi",
        "galileo",
        "hopper",
        "hypatia",
        "kepler",
        "lamarr",
        "lovelace",
        "meitner",
        "newton",
        "noether",
        "pascal",
        "ritchie",
        "shannon",
        "thompson",
        "torvalds",
        "turing",
        "wozniak",
    ];
    let mut r = rand::thread_rng();
    format!(
        "{}_{}",
        LEFT.choose(&mut r).unwrap_or(&"bold"),
        RIGHT.choose(&mut r).unwrap_or(&"turing")
    )
}

fn random_id() -> String {
    let b: [u8; 32] = rand::random();
    hex::encode(b)
}

fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

fn body_of(r: &Record) -> ContainerCreateBody {
    serde_json::from_str(&r.body).unwrap_or_default()
}

/// What every event and a container's exit read of its create request, without building
/// the whole request (with its host config) each time: five events and the exit of every
/// `run --rm` read it.
#[derive(serde::Deserialize, Default)]
struct Glance {
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
    #[serde(rename = "HostConfig", default)]
    host_config: Option<HostGlance>,
}

#[derive(serde::Deserialize, Default)]
struct HostGlance {
    #[serde(rename = "AutoRemove", default)]
    auto_remove: Option<bool>,
}

fn glance(r: &Record) -> Glance {
    serde_json::from_str(&r.body).unwrap_or_default()
}

/// Writes `data` as the whole content of `path`, a file nobody reads while it is written (a
/// container's own files at create, its config.json at start): over the old content, then
/// cut to length, instead of truncating first. On ext4, a file truncated to nothing and
/// written is flushed to the disk when it is closed (its `auto_da_alloc` guard against lost
/// renames), a block I/O on the request path for each such file; the files of a recycled
/// container directory (trash.rs) are exactly that.
pub(crate) fn write_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.write_all(data)?;
    if f.metadata()?.len() != data.len() as u64 {
        f.set_len(data.len() as u64)?;
    }
    Ok(())
}

fn auto_remove(r: &Record) -> bool {
    glance(r).host_config.and_then(|h| h.auto_remove) == Some(true)
}

/// Docker's signal names (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(s: &str) -> Result<i32> {
    berth_runtime::container::ops::parse_signal(s)
        .map_err(|_| Error::InvalidArgument(format!("invalid signal: {s}")))
}

impl Engine {
    pub fn open(cfg: Config) -> Result<Engine> {
        for (d, mode) in [(&cfg.data_root, 0o710), (&cfg.exec_root, 0o710)] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(d)
                .map_err(Error::io("create", d))?;
        }
        let cdir = cfg.data_root.join("containers");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o710)
            .create(&cdir)
            .map_err(Error::io("create", &cdir))?;
        let images = Arc::new(ImageStore::open(&cfg.data_root)?);
        let db = Db::open(&cfg.data_root.join("engine.db"))?;
        let runtime = Runtime::new(cfg.exec_root.join("runtime"));
        // the shims' state directories (under the exec root) go to the trash as well
        let sdir = cfg.exec_root.join("c");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&sdir)
            .map_err(Error::io("create", &sdir))?;
        let trash = crate::trash::Trash::start(&[&cdir, images.snapshotter().root(), &sdir]);
        let spares = trash.snapshot_spares();
        images.snapshotter().set_spare_source(Box::new(move || {
            spares.lock().unwrap_or_else(|p| p.into_inner()).pop()
        }));
        let events = Events::open(&cfg.data_root.join("events.jsonl"));
        let netpool = crate::network::pool::NetPool::new(&cfg.exec_root, &cfg.data_root);
        Ok(Engine {
            netpool,
            cfg,
            images,
            db,
            runtime,
            events,
            locks: Mutex::new(HashMap::new()),
            trash,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn lock_of(&self, id: &str) -> Arc<Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }

    /// The shim's directory. Short, because a unix socket path is limited to 107 bytes:
    /// half the ID is unique enough (128 bits) and leaves room for a long exec root.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("c").join(&id[..id.len().min(32)])
    }

    pub fn socket(&self, id: &str) -> PathBuf {
        shim::socket(&self.state_dir(id))
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// Finds a container by ID, name or ID prefix.
    pub fn find(&self, s: &str) -> Result<Record> {
        self.db.find(s)
    }

    pub fn body(&self, r: &Record) -> ContainerCreateBody {
        body_of(r)
    }

    /// Sends a container event; its attributes are the container's labels, its name and
    /// image, and `extra` (as dockerd's).
    pub fn emit(&self, r: &Record, action: &str, extra: &[(&str, String)]) {
        let mut attrs: HashMap<String, String> = glance(r).labels.unwrap_or_default();
        attrs.insert("name".to_string(), r.name.clone());
        attrs.insert("image".to_string(), r.image.clone());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        self.events.send(Event::container(&r.id, action, attrs));
    }

    /// `POST /containers/create`.
    pub fn create(
        &self,
        name: Option<&str>,
        mut body: ContainerCreateBody,
    ) -> Result<(String, Vec<String>)> {
        let generated = name.is_none_or(|n| n.trim_start_matches('/').is_empty());
        let name = match name.map(|n| n.strip_prefix('/').unwrap_or(n)) {
            Some(n) if !n.is_empty() => {
                if !valid_name(n) {
                    return Err(Error::InvalidName(n.to_string()));
                }
                n.to_string()
            }
            _ => loop {
                let n = random_name();
                if self.db.find(&n).is_err() {
                    break n;
                }
            },
        };
        let image_name = body
            .image
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::InvalidArgument("config.Image: no image specified".into()))?;
        let image = self
            .images
            .resolve(&image_name)
            .map_err(|e| match e.kind() {
                berth_image::ErrorKind::NotFound => Error::NoSuchImage(image_name.clone()),
                _ => Error::Image(e),
            })?;
        crate::restart::validate_create(&body)?;
        crate::health::validate(body.healthcheck.as_ref())?;
        let id = random_id();
        let mut warnings = Vec::new();
        if let Some(hc) = &body.host_config {
            for o in hc.security_opt.iter().flatten() {
                if o.starts_with("apparmor") || o.starts_with("label") {
                    warnings.push(format!(
                        "security option {o:?} ignored: berth has no AppArmor or SELinux support"
                    ));
                }
            }
        }
        crate::spec::record_system_paths(body.host_config.get_or_insert_with(Default::default));
        let mounts = self.plan_mounts(&body, &image.config)?;
        // Validate now what start would refuse, so `create` fails instead of a later `start`:
        // the spec is built against a scratch root with the image's config.
        body.image = Some(image_name.clone());
        let net_plan = self.net_plan(&mut body, &crate::network::image_exposed(&image.config))?;
        crate::network::dnsopts::validate(&body)?;
        crate::network::rate::normalize(&mut body)?;
        let dir = self.container_dir(&id);
        // a spare left by a removed container (trash.rs says why), else a new directory
        let recycled =
            self.trash
                .take_spare()
                .is_some_and(|spare| match std::fs::rename(&spare, &dir) {
                    Ok(()) => true,
                    Err(_) => {
                        self.trash.queue(spare);
                        false
                    }
                });
        if !recycled {
            std::fs::DirBuilder::new()
                .mode(0o710)
                .create(&dir)
                .map_err(Error::io("create container directory", &dir))?;
        }
        let cleanup = |e: Error| {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = self.images.remove_container_snapshot(&id);
            e
        };
        let hostname = body
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| id[..12].to_string());
        let write = |n: &str, data: String| -> Result<()> {
            let p = dir.join(n);
            write_in_place(&p, data.as_bytes()).map_err(Error::io("write", &p))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
                .map_err(Error::io("chmod", &p))
        };
        write("hostname", format!("{hostname}\n")).map_err(cleanup)?;
        write(
            "hosts",
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                 fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
                 ff02::2\tip6-allrouters\n"
                .to_string(),
        )
        .map_err(cleanup)?;
        write("resolv.conf", resolv_conf()).map_err(cleanup)?;
        self.write_dns_files(&body, &dir, net_plan.first().map(|p| p.0.as_str()))
            .map_err(cleanup)?;
        if !recycled {
            std::fs::create_dir(dir.join("rootfs"))
                .map_err(|e| cleanup(Error::io("create", dir.join("rootfs"))(e)))?;
        }
        self.images
            .prepare_container(&id, &image)
            .map_err(|e| cleanup(e.into()))?;
        let rec = Record {
            id: id.clone(),
            name,
            created: now(),
            image: image_name,
            image_id: image.id.to_string(),
            body: serde_json::to_string(&body).unwrap_or_default(),
            status: "created".into(),
            pid: 0,
            exit_code: 0,
            started_at: String::new(),
            finished_at: String::new(),
            restart_count: 0,
            oom_killed: false,
            error: String::new(),
        };
        let mut rec = rec;
        // A generated name can be taken by a concurrent create between the check above and
        // this insert: then another one, as many times as it takes (bounded).
        let mut tries = 0;
        loop {
            match self.db.insert(&rec) {
                Ok(()) => break,
                Err(Error::NameInUse { .. }) if generated && tries < 50 => {
                    tries += 1;
                    rec.name = if tries < 25 {
                        random_name()
                    } else {
                        format!("{}_{}", random_name(), &id[..6])
                    };
                }
                Err(e) => return Err(cleanup(e)),
            }
        }
        if let Err(e) = self.commit_mounts(&id, mounts) {
            self.abort_mounts(&id);
            let _ = self.db.remove(&id);
            return Err(cleanup(e));
        }
        if let Err(e) = self.net_commit(&id, &net_plan) {
            let _ = self.remove(&id, true);
            return Err(e);
        }
        self.emit(&rec, "create", &[]);
        Ok((id, warnings))
    }

    /// Right after `create`, off the request path: mounts the container's root file system,
    /// which `start` would otherwise mount first thing (an overlay mount, ~0.4 ms here). A
    /// client that creates to run (`docker run`) spends that time on its attach and wait
    /// requests; `start` then finds the mount made, or, if it came first, makes it itself.
    /// Only a container still in `created` is touched (its lock held, so a removal or a
    /// start in between is seen); a failure is left for `start` to meet and report.
    pub fn prepare_start(&self, id: &str) {
        let lock = self.lock_of(id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let r = match self.db.get(id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                // removed before we got here: the lock taken for it again goes with it
                self.locks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
                return;
            }
            Err(_) => return,
        };
        if r.status != "created" {
            return;
        }
        if let Err(e) = self.mount_rootfs(id, auto_remove(&r)) {
            tracing::debug!(container = id, error = %e, "mount ahead of start");
        }
    }

    /// `volatile`: the container's writable layer is thrown away when it ends (`--rm`), so
    /// its overlay skips every sync of the upper directory (the `volatile` option, Linux
    /// 5.10+, as podman mounts its `--rm` containers): above all the sync of the whole upper
    /// file system that unmounting an overlay otherwise does on the exit path.
    fn mount_rootfs(&self, id: &str, volatile: bool) -> Result<PathBuf> {
        let target = self.container_dir(id).join("rootfs");
        if !is_mountpoint(&target) {
            let mut mounts = berth_image::Snapshotter::mounts(self.images.snapshotter(), id)?;
            for m in mounts.iter_mut().filter(|m| m.fstype == "overlay") {
                // A volatile mount leaves this marker behind, and the kernel refuses any later
                // mount of the same upper directory while it is there (a `restart`, or `cp`
                // into the stopped container): the layer is disposable, so it goes.
                if let Some(w) = m.options.iter().find_map(|o| o.strip_prefix("workdir=")) {
                    let _ = std::fs::remove_dir_all(Path::new(w).join("work/incompat/volatile"));
                }
                if volatile {
                    m.options.push("volatile".into());
                }
            }
            if let Err(e) = berth_image::snapshot::mount(&mounts, &target) {
                if !volatile {
                    return Err(e.into());
                }
                // a kernel without the option
                tracing::debug!(container = id, error = %e, "volatile overlay refused; mounting without");
                for m in &mut mounts {
                    m.options.retain(|o| o != "volatile");
                }
                berth_image::snapshot::mount(&mounts, &target)?;
            }
        }
        Ok(target)
    }

    fn unmount_rootfs(&self, id: &str) {
        let target = self.container_dir(id).join("rootfs");
        while is_mountpoint(&target) {
            if let Err(e) = berth_image::snapshot::unmount(&target) {
                tracing::warn!(container = id, error = %e, "unmount rootfs");
                break;
            }
        }
    }

    /// The namespace of another container, for `--pid container:X` and the like.
    fn ns_of(&self, who: &str, typ: &str) -> std::result::Result<PathBuf, crate::spec::SpecError> {
        let r = self
            .db
            .find(who)
            .map_err(|e| crate::spec::SpecError::JoinContainer {
                flag: "--network",
                container: who.to_string(),
                reason: e.to_string(),
            })?;
        if r.status != "running" || r.pid <= 0 {
            return Err(crate::spec::SpecError::JoinContainer {
                flag: "--network",
                container: who.to_string(),
                reason: "the container is not running".into(),
            });
        }
        Ok(PathBuf::from(format!("/proc/{}/ns/{typ}", r.pid)))
    }

    /// `POST /containers/{id}/start`. The shim starts the process as soon as it has created
    /// the container (no start request follows); `attachers` says how many clients of the
    /// container's ID attached before the start: the shim holds the process's output until
    /// they have connected to it (`on_created` gives them its socket), so that they see it
    /// from the first byte.
    pub fn start(
        &self,
        s: &str,
        attachers: &dyn Fn(&str) -> u32,
        on_created: &mut dyn FnMut(Created<'_>),
    ) -> Result<()> {
        let r = self.db.find(s)?;
        self.manual_start(&r.id)?;
        let res = self.start_inner(&r.id, attachers(&r.id), on_created);
        // A --rm container that could not start is removed, as docker does; one that is
        // running (a second start: 304) or paused is not a failed start.
        if res.is_err()
            && auto_remove(&r)
            && self.db.get(&r.id).ok().flatten().is_some_and(|now| {
                !matches!(now.status.as_str(), "running" | "paused" | "removing")
            })
        {
            if let Err(e) = self.remove(&r.id, true) {
                tracing::warn!(container = %r.id, error = %e, "remove a --rm container that failed to start");
            }
        }
        res
    }

    fn start_inner(
        &self,
        s: &str,
        attachers: u32,
        on_created: &mut dyn FnMut(Created<'_>),
    ) -> Result<()> {
        let r = self.db.find(s)?;
        let lock = self.lock_of(&r.id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.start_locked(&r.id, attachers, on_created)
    }

    /// [`Engine::start_inner`] with the container's lock held (a policy restart checks and
    /// starts under one lock, so a `stop` cannot slip in between).
    pub(crate) fn start_locked(
        &self,
        s: &str,
        attachers: u32,
        on_created: &mut dyn FnMut(Created<'_>),
    ) -> Result<()> {
        let r = self.db.find(s)?;
        match r.status.as_str() {
            "running" => return Err(Error::NotModified(r.id.clone(), "started")),
            "paused" => {
                return Err(Error::Conflict(format!(
                    "cannot start a paused container {}, try unpause instead",
                    r.id
                )))
            }
            "removing" => {
                return Err(Error::Conflict(format!(
                    "container {} is being removed",
                    r.id
                )))
            }
            _ => {}
        }
        let id = r.id.clone();
        // The shim of the last run deletes the runtime's state, its socket and pid file as it
        // exits, by name: a new run begun before that would lose them (`restart` is a stop
        // and a start at once).
        crate::restart::wait_shim_gone(&id, crate::restart::take_shim(&id), Duration::from_secs(5));
        let body = body_of(&r);
        let image = self.images.get(&r.image_id.parse()?)?;
        let auto_remove = body.host_config.as_ref().and_then(|h| h.auto_remove) == Some(true);
        let rootfs = self.mount_rootfs(&id, auto_remove)?;
        let dir = self.container_dir(&id);
        let fail = |e: Error| {
            self.net_stop(&id);
            self.unmount_rootfs(&id);
            e
        };
        let body = self.volumes_for_start(&id, body, &rootfs).map_err(fail)?;
        let spec_body = crate::network::spec_body(&body);
        let spec = crate::spec::build(&crate::spec::SpecInput {
            id: &id,
            body: &spec_body,
            image: &image.config,
            rootfs: &rootfs,
            hosts_path: &dir.join("hosts"),
            hostname_path: &dir.join("hostname"),
            resolv_path: &dir.join("resolv.conf"),
            cgroups_path: format!("/berth/{id}"),
            ns_of: &|w, t| self.ns_of(w, t),
        })
        .map_err(|e| fail(e.into()))?;
        let mut spec = spec;
        let exposed = crate::network::image_exposed(&image.config);
        if let Some(ns) = self
            .net_start(&id, &body, &exposed, &dir.join("hosts"))
            .map_err(fail)?
        {
            crate::network::set_netns(&mut spec, &ns).map_err(fail)?;
        } else if let Some(ns) = self.net_start_none(&id, &body) {
            crate::network::set_netns(&mut spec, &ns).map_err(fail)?;
        }
        if body.host_config.as_ref().and_then(|h| h.init) == Some(true) {
            use_init(&mut spec);
        }
        let cfg_path = dir.join("config.json");
        let data =
            serde_json::to_vec(&spec).map_err(|e| fail(Error::InvalidArgument(e.to_string())))?;
        write_in_place(&cfg_path, &data).map_err(|e| fail(Error::io("write", &cfg_path)(e)))?;

        let state_dir = self.state_dir(&id);
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state_dir)
            .map_err(|e| fail(Error::io("create", &state_dir)(e)))?;
        // A runtime state left by a shim that died uncleanly would make create fail.
        let _ = self.runtime.delete(&id, true);
        let hc = body.host_config.clone().unwrap_or_default();
        let (driver, opts) = match &hc.log_config {
            Some(l) => (
                l.typ.clone().unwrap_or_else(|| "json-file".into()),
                l.config.clone().unwrap_or_default(),
            ),
            None => ("json-file".to_string(), HashMap::new()),
        };
        if driver != "json-file" && driver != "none" && !driver.is_empty() {
            return Err(fail(Error::InvalidArgument(format!(
                "log driver {driver:?} is not supported (json-file, none)"
            ))));
        }
        let max_size =
            match opts.get("max-size") {
                Some(v) => Some(parse_size(v).map_err(|e| {
                    fail(Error::InvalidArgument(format!("--log-opt max-size: {e}")))
                })?),
                None => None,
            };
        let max_file = match opts.get("max-file") {
            Some(v) => Some(v.parse::<u32>().map_err(|_| {
                fail(Error::InvalidArgument(format!(
                    "--log-opt max-file: {v:?} is not a number"
                )))
            })?),
            None => None,
        };
        let tty = body.tty.unwrap_or(false);
        let stdin = body.open_stdin.unwrap_or(false);
        let log_path = self.log_path(&id);
        let spawned = shim::spawn(&ShimSpawn {
            exe: &self.cfg.berth_exe,
            exec_root: &self.cfg.exec_root,
            id: &id,
            bundle: &dir,
            runtime_root: &self.runtime.root,
            state_dir: &state_dir,
            log_path: &log_path,
            log_driver: if driver.is_empty() {
                "json-file"
            } else {
                &driver
            },
            log_max_size: max_size,
            log_max_file: max_file,
            tty,
            stdin,
            // as dockerd: a terminal's input is never closed by its client's end (nor by a
            // detach), so that a later attach can type into it
            stdin_once: body.stdin_once.unwrap_or(false) && !tty,
            hold_output: attachers,
        })
        .map_err(fail)?;
        let pid = spawned.pid;
        let sock = shim::socket(&state_dir);
        on_created(Created {
            id: &id,
            socket: sock.clone(),
            tty,
        });
        self.db.set_running(&id, pid, &now())?;
        self.emit(&r, "start", &[]);
        Ok(())
    }

    /// Called when a container's init has exited (the monitor's wait returned, or a restart
    /// found the shim gone). Idempotent: only the first call for one run acts.
    pub fn exited(&self, id: &str, info: Option<ExitInfo>) -> Result<()> {
        let lock = self.lock_of(id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.exited_locked(id, info)
    }

    /// [`Engine::exited`] from a monitor that asked the shim with pid `shim` (None: it could
    /// not reach one) for the exit. Ignored if that is not the current run's shim: a monitor
    /// of the old shim can report after a `restart` (stop, then start) has begun the next
    /// run, and must not end that one.
    pub fn exited_from(&self, id: &str, shim: Option<i32>, info: Option<ExitInfo>) -> Result<()> {
        let lock = self.lock_of(id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.state_dir(id);
        let current = crate::restart::shim_pid(&dir);
        let stale = match (&info, shim) {
            (Some(_), Some(asked)) => current > 0 && current != asked,
            // no answer: the current run's shim, alive and without an exit, is still at work
            _ => {
                current > 0
                    && shim::read_exit_file(&dir).is_none()
                    && berth_sys::pidfd_open(current).is_ok()
            }
        };
        if stale {
            tracing::debug!(
                container = id,
                ?shim,
                current,
                "an exit report of an earlier run: ignored"
            );
            return Ok(());
        }
        self.exited_locked(id, info)
    }

    fn exited_locked(&self, id: &str, info: Option<ExitInfo>) -> Result<()> {
        let Some(r) = self.db.get(id)? else {
            return Ok(());
        };
        let info = info
            .or_else(|| shim::read_exit_file(&self.state_dir(id)))
            .unwrap_or(ExitInfo {
                exit_code: 255,
                finished_at: now(),
                oom_killed: false,
            });
        let finished = if info.finished_at.is_empty() {
            now()
        } else {
            info.finished_at.clone()
        };
        let shim_pid = crate::restart::shim_pid(&self.state_dir(id));
        // The shim deletes the runtime's state once it has answered us; if it died, we do.
        let shim_alive = || shim_pid > 0 && berth_sys::pidfd_open(shim_pid).is_ok();
        if auto_remove(&r) {
            // `--rm` (which no restart policy comes with): the end of the run is the removal,
            // the record's one transaction records both (none if this run's end was reported
            // already), and the waiting client is answered before the clean-up.
            if !self.db.remove_if(id, true)? {
                return Ok(());
            }
            if info.oom_killed {
                self.emit(&r, "oom", &[]);
            }
            self.emit_die(&r, info.exit_code, &finished);
            self.volumes_unmounted(id);
            let ending = shim_alive();
            if !ending {
                let _ = self.runtime.delete(id, true);
            }
            self.removed(&r, ending.then_some(shim_pid));
            return Ok(());
        }
        if !self
            .db
            .set_exited(id, info.exit_code, &finished, info.oom_killed, "")?
        {
            return Ok(());
        }
        let shim_alive = shim_alive();
        if shim_alive {
            // the next start waits for it: it removes the runtime state and socket as it goes
            crate::restart::hold_shim(id, shim_pid);
        } else {
            let _ = self.runtime.delete(id, true);
        }
        self.unmount_rootfs(id);
        self.net_stop(id);
        // Renamed now and deleted by the trash's worker: unlinking its files here made every
        // exit wait for the file system (~8 ms on a disk-backed /run mounted with `discard`).
        if let Err(e) = self.trash.remove_dir(&self.state_dir(id)) {
            tracing::warn!(container = id, error = %e, "remove the shim's state directory");
        }
        self.decide_restart(&r, info.exit_code, &finished, shim_pid)?;
        if info.oom_killed {
            self.emit(&r, "oom", &[]);
        }
        self.emit_die(&r, info.exit_code, &finished);
        self.volumes_unmounted(id);
        Ok(())
    }

    fn emit_die(&self, r: &Record, exit_code: i64, finished: &str) {
        self.emit(
            r,
            "die",
            &[
                ("exitCode", exit_code.to_string()),
                (
                    "execDuration",
                    crate::events::exec_duration(&r.started_at, finished),
                ),
            ],
        );
    }

    /// Blocks until the shim reports the exit (or is gone), up to `timeout`. True if exited.
    fn wait_shim(&self, id: &str, timeout: Duration) -> bool {
        let sock = self.socket(id);
        match shim::request(&sock, &json!({"op": "wait"}), Some(timeout)) {
            Ok(v) => {
                let info: Option<ExitInfo> = serde_json::from_value(v).ok();
                // The shim removes its socket shortly after answering; record the exit now.
                let _ = self.exited_locked(id, info);
                true
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                false
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                // No shim: the container is gone.
                let _ = self.exited_locked(id, None);
                true
            }
            Err(e) => {
                tracing::warn!(container = id, error = %e, "ask the shim for the exit");
                false
            }
        }
    }

    /// `POST /containers/{id}/kill`.
    pub fn kill(&self, s: &str, signal: i32) -> Result<()> {
        let r = self.db.find(s)?;
        if self.manual_stop(&r.id)? {
            return Ok(());
        }
        if r.status != "running" && r.status != "paused" {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        self.runtime
            .kill(&r.id, signal, false)
            .or_else(|e| match e {
                berth_runtime::Error::WrongState { .. } | berth_runtime::Error::NotFound(_) => {
                    Ok(())
                }
                e => Err(e),
            })?;
        self.emit(&r, "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after `timeout`.
    pub fn stop(&self, s: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let r = self.db.find(s)?;
        let lock = self.lock_of(&r.id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.db.find(&r.id)?;
        if self.manual_stop(&r.id)? {
            return Ok(());
        }
        if r.status != "running" && r.status != "paused" {
            return Err(Error::NotModified(r.id, "stopped"));
        }
        let body = body_of(&r);
        let sig = match signal.or(body.stop_signal.as_deref()) {
            Some(s) if !s.is_empty() => parse_signal(s)?,
            _ => libc::SIGTERM,
        };
        let timeout = timeout.or(body.stop_timeout).unwrap_or(10);
        if r.status == "paused" {
            let _ = self.runtime.resume(&r.id);
        }
        let _ = self.runtime.kill(&r.id, sig, false);
        self.emit(&r, "kill", &[("signal", sig.to_string())]);
        if timeout < 0 {
            self.wait_shim(&r.id, Duration::from_secs(u32::MAX as u64));
        } else if !self.wait_shim(&r.id, Duration::from_secs(timeout as u64)) {
            let _ = self.runtime.kill(&r.id, libc::SIGKILL, true);
            self.emit(&r, "kill", &[("signal", libc::SIGKILL.to_string())]);
            self.wait_shim(&r.id, Duration::from_secs(30));
        }
        self.emit(&r, "stop", &[]);
        Ok(())
    }

    pub fn pause(&self, s: &str) -> Result<()> {
        let r = self.db.find(s)?;
        if r.status != "running" {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        self.runtime.pause(&r.id)?;
        self.db.set_status(&r.id, "paused")?;
        self.emit(&r, "pause", &[]);
        Ok(())
    }

    pub fn unpause(&self, s: &str) -> Result<()> {
        let r = self.db.find(s)?;
        if r.status != "paused" {
            return Err(Error::Conflict(format!("Container {} is not paused", r.id)));
        }
        self.runtime.resume(&r.id)?;
        self.db.set_status(&r.id, "running")?;
        self.emit(&r, "unpause", &[]);
        Ok(())
    }

    /// `DELETE /containers/{id}`.
    pub fn remove(&self, s: &str, force: bool) -> Result<()> {
        let r = self.db.find(s)?;
        let lock = self.lock_of(&r.id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = self.db.get(&r.id)? else {
            return Ok(());
        };
        self.remove_locked(&r, force)
    }

    fn remove_locked(&self, r: &Record, force: bool) -> Result<()> {
        if r.status == "restarting" && !force {
            return Err(Error::Conflict(format!(
                "cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove",
                r.name
            )));
        }
        if r.status == "running" || r.status == "paused" {
            if !force {
                return Err(Error::Conflict(format!(
                    "cannot remove container \"/{}\": container is {}: stop the container before removing or force remove",
                    r.name, r.status
                )));
            }
            // A forced removal is the user's stop: the policy must not restart it.
            self.manual_stop(&r.id)?;
            let _ = self.runtime.kill(&r.id, libc::SIGKILL, true);
            if r.status == "paused" {
                let _ = self.runtime.resume(&r.id);
            }
            if !self.wait_shim(&r.id, Duration::from_secs(30)) {
                return Err(Error::Conflict(format!(
                    "container {} did not exit after SIGKILL within 30 s",
                    r.id
                )));
            }
            // exited_locked may have removed it already (AutoRemove).
            if self.db.get(&r.id)?.is_none() {
                return Ok(());
            }
        }
        // The record goes first, in one transaction: from then on the ID and the name are
        // free and a `wait --condition removed` (how `run --rm` ends) is answered. What the
        // container leaves on disk and in the kernel is cleared after; a crash in between is
        // swept up at the next start (`sweep_removed`).
        self.db.remove(&r.id)?;
        self.removed(r, None);
        Ok(())
    }

    /// Everything a container whose record is gone leaves behind: its shim's hold, the
    /// runtime's state, its root file system's mount and snapshot, its network, its
    /// directories (to the trash) and its volumes' use. Never fails: what cannot be cleared
    /// is logged, and [`Engine::sweep_removed`] tries again at the next start.
    /// `ending_shim`: the pid of the shim of a run that just ended, still alive and about to
    /// delete the runtime's state itself (AutoRemove right after the exit).
    fn removed(&self, r: &Record, ending_shim: Option<i32>) {
        self.release_seen(r);
        self.emit(r, "destroy", &[]);
        self.clear_unseen(r, ending_shim);
    }

    /// What a client could still find of a removed container: its volumes (a `--rm`
    /// container's anonymous ones go with it). Released before the destroy event, as dockerd
    /// releases them, so that whoever waited for `removed` finds them gone.
    fn release_seen(&self, r: &Record) {
        drop(crate::restart::take_shim(&r.id));
        self.release_mounts(r);
    }

    /// The rest, which the API does not show: the root file system's mount, the runtime's
    /// state, the network, the snapshot and the directories (to the trash: renamed now,
    /// deleted by its worker, so that `rm` and `run --rm` do not wait for the kernel, see
    /// trash.rs). The unmount comes after the destroy event because it waits for an RCU
    /// grace period (0.05-1 ms here, the longest on a busy machine) that the `run --rm`
    /// waiting for the event need not: no client sees the mount, and the snapshot is
    /// released below, after it.
    fn clear_unseen(&self, r: &Record, ending_shim: Option<i32>) {
        self.unmount_rootfs(&r.id);
        match ending_shim {
            // the ID is retired with this removal, so the delete may come a little later
            Some(pid) => self.runtime_delete_after(&r.id, pid),
            None => {
                let _ = self.runtime.delete(&r.id, true);
            }
        }
        self.net_remove(&r.id, ending_shim.is_none());
        match self.images.release_container_snapshot(&r.id) {
            Ok(dir) => {
                if let Err(e) = self.trash.recycle_snapshot_dir(&dir) {
                    tracing::warn!(container = %r.id, error = %e, "remove snapshot directory");
                }
            }
            Err(e) => tracing::warn!(container = %r.id, error = %e, "remove snapshot"),
        }
        if let Err(e) = self.trash.remove_dir(&self.state_dir(&r.id)) {
            tracing::warn!(container = %r.id, error = %e, "remove the shim's state directory");
        }
        // the container's directory goes last: while it is there, `sweep_removed` finds
        // whatever the steps before left
        let dir = self.container_dir(&r.id);
        let log = self.log_path(&r.id);
        let log = log.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Err(e) = self.trash.recycle_container_dir(&dir, log) {
            tracing::warn!(container = %r.id, error = %e, "remove the container's directory");
        }
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&r.id);
    }

    /// At start: the containers whose record is gone but whose directory is still there (the
    /// daemon ended during their clean-up) are cleared as [`Engine::removed`] would have,
    /// without a second destroy event.
    pub fn sweep_removed(&self) -> Result<()> {
        let cdir = self.cfg.data_root.join("containers");
        let Ok(rd) = std::fs::read_dir(&cdir) else {
            return Ok(());
        };
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let is_id = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_id || self.db.get(&name)?.is_some() {
                continue;
            }
            tracing::info!(container = %name, "clearing what a removed container left behind");
            let r = Record {
                id: name,
                body: "{}".into(),
                ..Default::default()
            };
            self.release_seen(&r);
            self.clear_unseen(&r, None);
        }
        Ok(())
    }

    /// The runtime's state of a removed container, deleted once its shim has exited: the shim
    /// deletes it itself after answering the daemon, so this only matters if that shim dies
    /// first; waiting for it on the exit path, or racing it, cost `run --rm` its cgroup
    /// removals twice.
    fn runtime_delete_after(&self, id: &str, shim_pid: i32) {
        let Ok(fd) = berth_sys::pidfd_open(shim_pid) else {
            let _ = self.runtime.delete(id, true);
            return;
        };
        let runtime = self.runtime.clone();
        let owned = id.to_string();
        let spawned = std::thread::Builder::new()
            .name("berth-rtdelete".into())
            .spawn(move || {
                use std::os::fd::AsFd;
                let mut fds = [nix::poll::PollFd::new(
                    fd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                // a shim lingers at most its close grace after the exit
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(30_000u16));
                let _ = runtime.delete(&owned, true);
            });
        if spawned.is_err() {
            tracing::warn!(container = id, "no thread for the deferred runtime delete");
        }
    }

    pub fn rename(&self, s: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if !valid_name(new_name) {
            return Err(Error::InvalidName(new_name.to_string()));
        }
        let r = self.db.find(s)?;
        self.db.rename(&r.id, new_name)?;
        self.emit(&r, "rename", &[("oldName", format!("/{}", r.name))]);
        Ok(())
    }

    /// The processes of a running container: (titles, rows) as `docker top` shows them.
    pub fn top(&self, s: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let r = self.db.find(s)?;
        if r.status != "running" && r.status != "paused" {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let pids = self.runtime.pids(&r.id)?;
        let titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut rows = Vec::new();
        for pid in pids {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
                })
                .unwrap_or_default();
            let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
            let f: Vec<&str> = after.split_whitespace().collect();
            let ppid = f.get(1).copied().unwrap_or("0").to_string();
            let ticks: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
                + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
            let secs = ticks / 100;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|x| !x.is_empty())
                        .map(|x| String::from_utf8_lossy(x).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            rows.push(vec![
                if uid == "0" { "root".into() } else { uid },
                pid.to_string(),
                ppid,
                "0".into(),
                "".into(),
                "?".into(),
                format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
                cmd,
            ]);
        }
        Ok((titles, rows))
    }

    /// Every container, newest first.
    pub fn records(&self) -> Result<Vec<Record>> {
        self.db.list()
    }

    /// `GET /containers/json` entry of one container.
    pub fn summary(&self, r: &Record) -> ContainerSummary {
        let body = body_of(r);
        let command = command_line(&body, r, &self.images);
        let (net_ports, net_settings) = self.net_summary(&r.id);
        let created = chrono::DateTime::parse_from_rfc3339(&r.created)
            .map(|d| d.timestamp())
            .unwrap_or(0);
        let v = json!({
            "Id": r.id,
            "Names": [format!("/{}", r.name)],
            "Image": r.image,
            "ImageID": r.image_id,
            "Command": command,
            "Created": created,
            "Ports": net_ports,
            "Labels": body.labels.clone().unwrap_or_default(),
            "State": r.status,
            "Status": self.status_with_health(r),
            "HostConfig": {"NetworkMode": body.host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_else(|| "none".into())},
            "NetworkSettings": net_settings,
            "Mounts": self.mount_points(&r.id),
        });
        serde_json::from_value(v).unwrap_or_default()
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect(&self, s: &str) -> Result<ContainerInspectResponse> {
        self.inspect_sized(s, false)
    }

    /// `GET /containers/{id}/json`, with `size=1`: the writable layer's size and the whole
    /// root filesystem's (image plus that layer).
    pub fn inspect_sized(&self, s: &str, size: bool) -> Result<ContainerInspectResponse> {
        let r = self.db.find(s)?;
        let body = body_of(&r);
        let dir = self.container_dir(&r.id);
        let (path, args) = process_args(&body, &r, &self.images);
        let mut config = serde_json::to_value(&body).unwrap_or_else(|_| json!({}));
        if let Some(o) = config.as_object_mut() {
            o.remove("HostConfig");
            o.remove("NetworkingConfig");
            o.entry("Hostname").or_insert(json!(r.id[..12]));
        }
        let mut host_config = host_config_defaults();
        if let (Some(dst), Some(src)) = (
            host_config.as_object_mut(),
            body.host_config
                .as_ref()
                .and_then(|h| serde_json::to_value(h).ok()),
        ) {
            for (k, v) in src.as_object().into_iter().flatten() {
                dst.insert(k.clone(), v.clone());
            }
        }
        let sizes = if size {
            let rw = berth_image::Snapshotter::usage(self.images.snapshotter(), &r.id)
                .map(|u| u.size as i64)
                .unwrap_or(0);
            let img = r
                .image_id
                .parse()
                .ok()
                .and_then(|d| self.images.get(&d).ok())
                .map(|i| i.size as i64)
                .unwrap_or(0);
            Some((rw, rw + img))
        } else {
            None
        };
        if let Some(o) = host_config.as_object_mut() {
            // dockerd records the default driver at create; the Python SDK's run() reads
            // HostConfig.LogConfig.Type to decide whether it can read the logs.
            let typ = o
                .get("LogConfig")
                .and_then(|l| l.get("Type"))
                .and_then(|t| t.as_str());
            if typ.is_none_or(str::is_empty) {
                let cfg = o
                    .get("LogConfig")
                    .and_then(|l| l.get("Config"))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                o.insert(
                    "LogConfig".into(),
                    json!({"Type": "json-file", "Config": cfg}),
                );
            }
        }
        // Docker counts a container waiting for its policy's restart as running.
        let running = matches!(r.status.as_str(), "running" | "paused" | "restarting");
        let v = json!({
            "Id": r.id,
            "Created": r.created,
            "Path": path,
            "Args": args,
            "State": {
                "Status": r.status,
                "Running": running,
                "Paused": r.status == "paused",
                "Restarting": r.status == "restarting",
                "Health": self.health_json(&r),
                "OOMKilled": r.oom_killed,
                "Dead": r.status == "dead",
                "Pid": if running { r.pid } else { 0 },
                "ExitCode": r.exit_code,
                "Error": r.error,
                "StartedAt": if r.started_at.is_empty() { "0001-01-01T00:00:00Z" } else { &r.started_at },
                "FinishedAt": if r.finished_at.is_empty() { "0001-01-01T00:00:00Z" } else { &r.finished_at },
            },
            "Image": r.image_id,
            "ResolvConfPath": dir.join("resolv.conf"),
            "HostnamePath": dir.join("hostname"),
            "HostsPath": dir.join("hosts"),
            "LogPath": self.log_path(&r.id),
            "Name": format!("/{}", r.name),
            "RestartCount": r.restart_count,
            "Driver": "overlay",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "HostConfig": host_config,
            "GraphDriver": {"Name": "overlay", "Data": {"MergedDir": dir.join("rootfs")}},
            "Mounts": self.mount_points(&r.id),
            "Config": config,
            "NetworkSettings": self.net_settings(&r.id),
        });
        let mut v = v;
        self.rate_inspect(&r.id, &mut v);
        if let Some((rw, rootfs)) = sizes {
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(rootfs);
        }
        serde_json::from_value(v).map_err(|e| Error::InvalidArgument(format!("inspect: {e}")))
    }

    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, s: &str, body: ExecConfig) -> Result<String> {
        let r = self.db.find(s)?;
        if r.status != "running" {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        if body.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(Error::InvalidArgument("No exec command specified".into()));
        }
        let id = random_id();
        self.db.insert_exec(&ExecRecord {
            id: id.clone(),
            container: r.id.clone(),
            body: serde_json::to_string(&body).unwrap_or_default(),
            running: false,
            exit_code: None,
            pid: 0,
        })?;
        let action = crate::events::exec_action("exec_create", &body);
        self.emit(&r, &action, &[("execID", id.clone())]);
        Ok(id)
    }

    /// What starting exec `exec_id` needs: the shim's socket and the process to run.
    pub fn exec_plan(&self, exec_id: &str, detach: bool) -> Result<ExecPlan> {
        let e = self.db.get_exec(exec_id)?;
        if e.running || e.exit_code.is_some() {
            return Err(Error::Conflict(format!(
                "exec {exec_id} has already been started"
            )));
        }
        let r = self.db.find(&e.container)?;
        if r.status != "running" {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let body: ExecConfig = serde_json::from_str(&e.body).unwrap_or_default();
        let cfg = self.container_dir(&r.id).join("config.json");
        let data = std::fs::read(&cfg).map_err(Error::io("read", &cfg))?;
        let spec: oci_spec::runtime::Spec = serde_json::from_slice(&data)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", cfg.display())))?;
        let process =
            crate::spec::exec_process(&body, &spec, &self.container_dir(&r.id).join("rootfs"))?;
        self.db.update_exec(exec_id, true, None, 0)?;
        let action = crate::events::exec_action("exec_start", &body);
        self.emit(&r, &action, &[("execID", exec_id.to_string())]);
        Ok(ExecPlan {
            socket: self.socket(&r.id),
            process: serde_json::to_value(process).unwrap_or_default(),
            tty: body.tty.unwrap_or(false),
            stdin: body.attach_stdin.unwrap_or(false),
            detach,
        })
    }

    pub fn exec_finished(&self, exec_id: &str, exit_code: i64) -> Result<()> {
        self.db.update_exec(exec_id, false, Some(exit_code), 0)?;
        if let Ok(e) = self.db.get_exec(exec_id) {
            if let Ok(r) = self.db.find(&e.container) {
                self.emit(
                    &r,
                    "exec_die",
                    &[
                        ("execID", exec_id.to_string()),
                        ("exitCode", exit_code.to_string()),
                    ],
                );
            }
        }
        Ok(())
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, exec_id: &str) -> Result<serde_json::Value> {
        let e = self.db.get_exec(exec_id)?;
        let body: ExecConfig = serde_json::from_str(&e.body).unwrap_or_default();
        let cmd = body.cmd.clone().unwrap_or_default();
        let v = json!({
            "ID": e.id,
            "Running": e.running,
            "ExitCode": e.exit_code,
            "ProcessConfig": {
                "tty": body.tty.unwrap_or(false),
                "entrypoint": cmd.first().cloned().unwrap_or_default(),
                "arguments": cmd.iter().skip(1).cloned().collect::<Vec<_>>(),
                "privileged": body.privileged.unwrap_or(false),
                "user": body.user.clone().unwrap_or_default(),
            },
            "OpenStdin": body.attach_stdin.unwrap_or(false),
            "OpenStderr": body.attach_stderr.unwrap_or(false),
            "OpenStdout": body.attach_stdout.unwrap_or(false),
            "CanRemove": false,
            "ContainerID": e.container,
            "DetachKeys": "",
            "Pid": e.pid,
        });
        let typed: bollard_stubs::models::ExecInspectResponse = serde_json::from_value(v)
            .map_err(|e| Error::InvalidArgument(format!("exec inspect: {e}")))?;
        Ok(serde_json::to_value(typed).unwrap_or_default())
    }

    /// After a daemon (re)start: every container recorded as running whose shim is alive is
    /// returned (the daemon watches them again); the others are recorded as exited, with the
    /// exit code their shim left behind.
    pub fn reconcile(&self) -> Result<Vec<String>> {
        if let Err(e) = self.sweep_removed() {
            tracing::warn!(error = %e, "clear what removed containers left behind");
        }
        let mut live = Vec::new();
        for r in self.db.list()? {
            match r.status.as_str() {
                "running" | "paused" => {
                    let sock = self.socket(&r.id);
                    let alive =
                        shim::request(&sock, &json!({"op": "state"}), Some(Duration::from_secs(5)))
                            .ok()
                            .and_then(|v| {
                                v.get("status").and_then(|s| s.as_str()).map(str::to_string)
                            });
                    match alive.as_deref() {
                        Some("running") | Some("created") => live.push(r.id.clone()),
                        _ => {
                            tracing::info!(container = %r.id, "exited while the daemon was away");
                            self.exited(&r.id, None)?;
                        }
                    }
                }
                "removing" => {
                    let _ = self.remove(&r.id, true);
                }
                _ => {}
            }
        }
        if let Err(e) = self.net_reconcile(&live) {
            tracing::warn!(error = %e, "reconcile networks");
        }
        Ok(live)
    }
}

/// `--init`: berth's own init (the runtime's reaper) as PID 1, when the container has a pid
/// namespace of its own (with the host's or another container's there already is an init).
fn use_init(spec: &mut oci_spec::runtime::Spec) {
    if crate::spec::has_own_pid_namespace(spec) {
        let mut a = spec.annotations().clone().unwrap_or_default();
        a.insert(
            berth_runtime::reaper::INIT_ANNOTATION.to_string(),
            "true".to_string(),
        );
        spec.set_annotations(Some(a));
    }
}

/// The HostConfig dockerd reports for a container created with no options: every field
/// present with its zero value, so `inspect` templates find them as they do on Docker.
fn host_config_defaults() -> serde_json::Value {
    json!({
        "Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "ConsoleSize": [0, 0],
        "CapAdd": null, "CapDrop": null, "CgroupnsMode": "private", "Dns": [], "DnsOptions": [],
        "DnsSearch": [], "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private", "Cgroup": "",
        "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
        "ReadonlyRootfs": false, "SecurityOpt": null, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 67108864, "Runtime": "berth", "Isolation": "", "CpuShares": 0, "Memory": 0,
        "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": null, "DeviceRequests": null, "MemoryReservation": 0,
        "MemorySwap": 0, "MemorySwappiness": null, "OomKillDisable": null, "PidsLimit": null,
        "Ulimits": [], "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": null, "ReadonlyPaths": null,
    })
}

fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.trim_end_matches('b').chars().last() {
        Some('k') => (&t[..t.find('k').unwrap_or(t.len())], 1024u64),
        Some('m') => (&t[..t.find('m').unwrap_or(t.len())], 1024 * 1024),
        Some('g') => (&t[..t.find('g').unwrap_or(t.len())], 1024 * 1024 * 1024),
        _ => (t.trim_end_matches('b'), 1),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .map(|n| (n * mult as f64) as u64)
        .ok_or_else(|| format!("{s:?} is not a size"))
}

fn resolv_conf() -> String {
    // No network of its own yet (networks are a later issue): the host's resolvers, minus
    // loopback ones, which would mean the container's own loopback.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    for l in host.lines() {
        let t = l.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            if ns.starts_with("127.") || ns == "::1" {
                continue;
            }
        }
        if t.starts_with("nameserver") || t.starts_with("search") || t.starts_with("options") {
            out.push_str(t);
            out.push('\n');
        }
    }
    out
}

fn process_args(
    body: &ContainerCreateBody,
    r: &Record,
    images: &ImageStore,
) -> (String, Vec<String>) {
    let img = r
        .image_id
        .parse()
        .ok()
        .and_then(|d| images.get(&d).ok())
        .and_then(|i| i.config.config);
    let ep = body
        .entrypoint
        .clone()
        .or_else(|| img.as_ref().and_then(|c| c.entrypoint.clone()))
        .unwrap_or_default();
    let cmd = if body.entrypoint.is_some() {
        body.cmd.clone().unwrap_or_default()
    } else {
        body.cmd
            .clone()
            .or_else(|| img.as_ref().and_then(|c| c.cmd.clone()))
            .unwrap_or_default()
    };
    let mut all: Vec<String> = ep.into_iter().chain(cmd).collect();
    if all.is_empty() {
        return (String::new(), Vec::new());
    }
    let path = all.remove(0);
    (path, all)
}

fn command_line(body: &ContainerCreateBody, r: &Record, images: &ImageStore) -> String {
    let (p, a) = process_args(body, r, images);
    std::iter::once(p).chain(a).collect::<Vec<_>>().join(" ")
}

/// Docker's human status: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created".
pub fn human_status(r: &Record) -> String {
    let since = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| {
                (chrono::Utc::now() - d.with_timezone(&chrono::Utc))
                    .num_seconds()
                    .max(0)
            })
            .unwrap_or(0)
    };
    match r.status.as_str() {
        "running" => format!("Up {}", human_duration(since(&r.started_at))),
        "paused" => format!("Up {} (Paused)", human_duration(since(&r.started_at))),
        "exited" => format!(
            "Exited ({}) {} ago",
            r.exit_code,
            human_duration(since(&r.finished_at))
        ),
        "restarting" => format!(
            "Restarting ({}) {} ago",
            r.exit_code,
            human_duration(since(&r.finished_at))
        ),
        "created" => "Created".into(),
        "removing" => "Removal In Progress".into(),
        other => other.to_string(),
    }
}

/// Go's units.HumanDuration, which docker uses.
pub fn human_duration(secs: i64) -> String {
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if (s as f64 / 3600.0).round() as i64 == 1 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", (s as f64 / 3600.0).round() as i64),
        s if s < 7 * 24 * 3600 * 2 => format!("{} days", s / 86400),
        s if s < 30 * 24 * 3600 * 2 => format!("{} weeks", s / (7 * 86400)),
        s if s < 365 * 24 * 3600 * 2 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

/// What the day-to-day operations (stats, update, archive, commit, changes: their own
/// modules) need of the engine's internals.
impl Engine {
    pub(crate) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn rootfs_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("rootfs")
    }

    /// Mounts a stopped container's rootfs if it is not mounted; true if this call mounted it.
    pub(crate) fn ensure_rootfs(&self, id: &str) -> Result<bool> {
        let was = is_mountpoint(&self.rootfs_dir(id));
        self.mount_rootfs(id, false)?;
        Ok(!was)
    }

    pub(crate) fn release_rootfs(&self, id: &str) {
        self.unmount_rootfs(id)
    }

    pub(crate) fn container_lock(&self, id: &str) -> Arc<Mutex<()>> {
        self.lock_of(id)
    }

    pub(crate) fn emit_event(&self, r: &Record, action: &str, extra: &[(&str, String)]) {
        self.emit(r, action, extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web_1"));
        assert!(valid_name("a.b-c"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(70), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
    }
}
