//! Network work taken off the start and stop paths, on one background thread:
//! - a pool of prepared namespaces (`berth_net::pool`: lo up, a veth whose inside end is
//!   already eth0, plugged into the default bridge and up), refilled as containers take them,
//!   so a start on a bridge renames and addresses (on another bridge also plugs): two
//!   netlink round trips instead of ~26 requests and two threads; and namespaces with
//!   only lo for `--network none`, which the runtime then joins instead of making one
//!   (unshare(CLONE_NEWNET), 0.4-5 ms here) on the start path;
//! - the unbinding of namespaces of stopped containers. Unbinding lets the kernel destroy
//!   the namespace, and the container's veths with it, in its own cleanup work; deleting a
//!   veth by hand costs 20-60 ms here (RTNL and an RCU wait), and even the unmount waits
//!   for an RCU grace period (0.1-7 ms).
//!
//! Entries live under `<exec-root>/netns-pool/<n>` (the lowest free n) with host ends named
//! `bq<instance><n>`,
//! so a daemon that was killed finds and removes them at its next start ([`NetPool::start`]);
//! a stopping daemon removes them when the engine is dropped. An entry is taken by one
//! container only (popped under the lock). `BERTH_NETNS_POOL` sets the pool's size (default
//! 2; 0 disables the pool, not the background unbinding).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use berth_net::pool::{Prepared, Sock};

const DEFAULT_SIZE: usize = 2;

#[derive(PartialEq)]
enum Unbind {
    Queued,
    InProgress,
}

#[derive(Default)]
struct St {
    ready: Vec<Prepared>,
    /// lo only, for `--network none`
    ready_lo: Vec<Prepared>,
    queue: VecDeque<PathBuf>,
    pending: HashMap<PathBuf, Unbind>,
    /// Entry numbers whose files exist (ready, or taken and not yet unbound): a new entry
    /// takes the lowest free one, so a full pool always has the same files and veth names.
    slots: std::collections::BTreeSet<u32>,
    running: bool,
    stop: bool,
}

struct Shared {
    st: Mutex<St>,
    cv: Condvar,
    dir: PathBuf,
    prefix: String,
    size: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct NetPool {
    sh: Arc<Shared>,
    host: Mutex<Option<Sock>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl NetPool {
    pub(crate) fn new(exec_root: &Path, data_root: &Path) -> NetPool {
        let size = std::env::var("BERTH_NETNS_POOL")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(DEFAULT_SIZE)
            .min(64);
        use sha2::Digest;
        let h = hex::encode(sha2::Sha256::digest(
            data_root.as_os_str().as_encoded_bytes(),
        ));
        NetPool {
            sh: Arc::new(Shared {
                st: Mutex::new(St::default()),
                cv: Condvar::new(),
                dir: exec_root.join("netns-pool"),
                prefix: format!("bq{}", &h[..6]),
                size,
            }),
            host: Mutex::new(None),
            worker: Mutex::new(None),
        }
    }

    /// At the daemon's start (after reconcile): removes what a previous daemon left in the
    /// pool and starts the worker. Entries left by a killed daemon are unbound (the kernel
    /// takes their veths along); host ends left by a crash during preparation are deleted.
    /// `bridge` (the default network's) is the one entries are plugged into ahead.
    pub(crate) fn start(&self, bridge: String) {
        let mut w = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if w.is_some() {
            return;
        }
        if let Ok(rd) = std::fs::read_dir(&self.sh.dir) {
            for f in rd.flatten() {
                if let Err(e) = berth_net::netns::remove(&f.path()) {
                    tracing::warn!(path = %f.path().display(), error = %e, "remove a pooled netns left by a previous daemon");
                }
            }
        }
        match berth_net::link::links_with_prefix(&self.sh.prefix) {
            Ok(links) => {
                for l in links {
                    let _ = berth_net::link::delete_link(&l);
                }
            }
            Err(e) => tracing::warn!(error = %e, "list pooled veths left by a previous daemon"),
        }
        if let Err(e) = std::fs::create_dir_all(&self.sh.dir) {
            tracing::warn!(dir = %self.sh.dir.display(), error = %e, "create the netns pool directory; no pool");
        }
        let sh = self.sh.clone();
        match std::thread::Builder::new()
            .name("berth-netpool".into())
            .spawn(move || {
                // its refills run while the start that took an entry goes on: that start
                // has the CPU first
                berth_sys::sched_idle_self();
                work(&sh, &bridge)
            }) {
            Ok(h) => {
                self.sh.lock().running = true;
                *w = Some(h);
            }
            Err(e) => tracing::warn!(error = %e, "start the netns pool worker; no pool"),
        }
    }

    /// A prepared namespace, if one is ready. The worker makes another at [`NetPool::refill`],
    /// not now: making one takes the RTNL lock, which the claim on the start path needs too.
    pub(crate) fn take(&self) -> Option<Prepared> {
        self.sh.lock().ready.pop()
    }

    /// After a start has what it took: the worker refills the pool.
    pub(crate) fn refill(&self) {
        self.sh.cv.notify_all();
    }

    /// A prepared namespace with only lo, if one is ready.
    pub(crate) fn take_lo(&self) -> Option<Prepared> {
        self.sh.lock().ready_lo.pop()
    }

    /// Runs `f` with the daemon's long-lived netlink socket in the host's namespace.
    pub(crate) fn with_host<T>(
        &self,
        f: impl FnOnce(&mut Sock) -> berth_net::Result<T>,
    ) -> berth_net::Result<T> {
        let mut g = self.host.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(Sock::open()?);
        }
        match g.as_mut() {
            Some(s) => {
                let r = f(s);
                if r.is_err() {
                    // a socket left with unread answers would misread the next request's
                    *g = None;
                }
                r
            }
            None => Err(berth_net::Error::Nft("no netlink socket".into())),
        }
    }

    /// Unbinds `path` on the worker. Without a worker (an engine that never reconciled, as
    /// in library tests) it is done now.
    pub(crate) fn unbind_later(&self, path: PathBuf) {
        self.queue_unbind(path, true);
    }

    /// [`NetPool::unbind_later`] for a start's taken entry: the worker is woken by the
    /// start's [`NetPool::refill`], after its claim.
    pub(crate) fn unbind_taken(&self, path: PathBuf) {
        self.queue_unbind(path, false);
    }

    fn queue_unbind(&self, path: PathBuf, wake: bool) {
        let mut st = self.sh.lock();
        if !st.running || st.stop {
            drop(st);
            if let Err(e) = berth_net::netns::remove(&path) {
                tracing::warn!(path = %path.display(), error = %e, "remove netns");
            }
            return;
        }
        if st.pending.contains_key(&path) {
            return;
        }
        st.pending.insert(path.clone(), Unbind::Queued);
        st.queue.push_back(path);
        if wake {
            self.sh.cv.notify_all();
        }
    }

    /// Before `path` is bound again (a container's restart): an unbinding still queued for it
    /// is done now, one under way is waited for, so the worker never unbinds the new one.
    pub(crate) fn settle(&self, path: &Path) {
        let mut st = self.sh.lock();
        loop {
            match st.pending.get(path) {
                None => return,
                Some(Unbind::Queued) => {
                    st.pending.remove(path);
                    drop(st);
                    if let Err(e) = berth_net::netns::remove(path) {
                        tracing::warn!(path = %path.display(), error = %e, "remove netns");
                    }
                    return;
                }
                Some(Unbind::InProgress) => {
                    st = self.sh.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }
}

impl Drop for NetPool {
    fn drop(&mut self) {
        self.sh.lock().stop = true;
        self.sh.cv.notify_all();
        if let Some(h) = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
        let mut st = self.sh.lock();
        let st = &mut *st;
        let ready: Vec<Prepared> = st.ready.drain(..).chain(st.ready_lo.drain(..)).collect();
        for p in ready {
            let _ = berth_net::pool::discard(p);
        }
        let queued: Vec<PathBuf> = st.queue.drain(..).collect();
        for p in queued {
            if st.pending.remove(&p) == Some(Unbind::Queued) {
                let _ = berth_net::netns::remove(&p);
            }
        }
    }
}

fn work(sh: &Shared, bridge: &str) {
    let mut st = sh.lock();
    loop {
        if st.stop {
            return;
        }
        if let Some(p) = st.queue.pop_front() {
            if st.pending.get(&p) != Some(&Unbind::Queued) {
                continue;
            }
            st.pending.insert(p.clone(), Unbind::InProgress);
            drop(st);
            if let Err(e) = berth_net::netns::remove(&p) {
                tracing::warn!(path = %p.display(), error = %e, "remove netns");
            }
            st = sh.lock();
            st.pending.remove(&p);
            if p.parent() == Some(sh.dir.as_path()) {
                if let Some(n) = p.file_name().and_then(|f| f.to_str()?.parse::<u32>().ok()) {
                    st.slots.remove(&n);
                }
            }
            sh.cv.notify_all();
            continue;
        }
        let veth = st.ready.len() < sh.size;
        if veth || st.ready_lo.len() < sh.size {
            let n = (0..).find(|n| !st.slots.contains(n)).unwrap_or(0);
            st.slots.insert(n);
            drop(st);
            let path = sh.dir.join(n.to_string());
            let made = if veth {
                berth_net::pool::prepare_on(&path, &format!("{}{n:x}", sh.prefix), Some(bridge))
            } else {
                berth_net::pool::prepare_lo(&path)
            };
            st = sh.lock();
            match made {
                Ok(p) if st.stop => {
                    let _ = berth_net::pool::discard(p);
                }
                Err(_) if st.stop => {}
                Ok(p) if veth => st.ready.push(p),
                Ok(p) => st.ready_lo.push(p),
                Err(e) => {
                    st.slots.remove(&n);
                    tracing::warn!(error = %e, "prepare a pooled netns; the pool stops filling until the next take");
                    // no retry loop: the next take or unbind wakes the worker
                    st = sh.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            }
            continue;
        }
        st = sh.cv.wait(st).unwrap_or_else(|p| p.into_inner());
    }
}
