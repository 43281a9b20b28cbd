//! `berth daemon`: flags and config file into a DaemonConfig; the daemon is berth-api's.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Where to listen (unix:///path, or tcp://host:port with --tlsverify); may be repeated.
    #[arg(short = 'H', long = "host")]
    hosts: Vec<String>,
    /// Persistent state (images, containers, database).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Runtime state (shim sockets, the OCI runtime's root).
    #[arg(long)]
    exec_root: Option<PathBuf>,
    #[arg(short = 'p', long)]
    pidfile: Option<PathBuf>,
    /// dockerd-style JSON configuration.
    #[arg(long, default_value = "/etc/berth/daemon.json")]
    config_file: PathBuf,
    /// Log level (error, warn, info, debug, trace).
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
    /// Serve TLS on tcp:// hosts (clients are not asked for a certificate).
    #[arg(long)]
    tls: bool,
    /// Serve TLS on tcp:// hosts and require client certificates signed by --tlscacert.
    #[arg(long)]
    tlsverify: bool,
    /// CA certificate that client certificates must be signed by.
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// The server's certificate (PEM).
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long)]
    tlskey: Option<PathBuf>,
    /// The IPv4 address `--add-host NAME:host-gateway` stands for (default: the gateway of
    /// the container's network).
    #[arg(long)]
    host_gateway_ip: Option<String>,
}

pub fn run(a: DaemonArgs, data_root_flag: Option<PathBuf>) -> i32 {
    let filter = tracing_subscriber::EnvFilter::try_new(&a.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // netlink-packet-route warns on every link dump of a kernel newer than it knows
    let filter = match "netlink_packet_route=error".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let mut cfg = berth_api::DaemonConfig::default();
    let mut given = Vec::new();
    if !a.hosts.is_empty() {
        given.push("hosts");
    }
    let data_root = a.data_root.or(data_root_flag);
    if data_root.is_some() {
        given.push("data-root");
    }
    if a.exec_root.is_some() {
        given.push("exec-root");
    }
    if a.pidfile.is_some() {
        given.push("pidfile");
    }
    for (set, key) in [
        (a.tls, "tls"),
        (a.tlsverify, "tlsverify"),
        (a.tlscacert.is_some(), "tlscacert"),
        (a.tlscert.is_some(), "tlscert"),
        (a.tlskey.is_some(), "tlskey"),
        (a.host_gateway_ip.is_some(), "host-gateway-ip"),
    ] {
        if set {
            given.push(key);
        }
    }
    if let Err(e) = cfg.apply_file(&a.config_file, &given) {
        eprintln!("berth daemon: {e}");
        return 1;
    }
    if !a.hosts.is_empty() {
        cfg.hosts = a.hosts;
    }
    if let Some(d) = data_root {
        cfg.data_root = d;
    }
    if let Some(d) = a.exec_root {
        cfg.exec_root = d;
    }
    if let Some(p) = a.pidfile {
        cfg.pidfile = Some(p);
    }
    cfg.tls.tls |= a.tls;
    cfg.tls.verify |= a.tlsverify;
    if a.tlscacert.is_some() {
        cfg.tls.ca = a.tlscacert;
    }
    if a.tlscert.is_some() {
        cfg.tls.cert = a.tlscert;
    }
    if a.tlskey.is_some() {
        cfg.tls.key = a.tlskey;
    }
    if let Some(ip) = &a.host_gateway_ip {
        match berth_api::parse_host_gateway_ip(ip) {
            Ok(ip) => cfg.host_gateway_ip = Some(ip),
            Err(e) => {
                eprintln!("berth daemon: --{e}");
                return 1;
            }
        }
    }
    berth_sys::limit_malloc_arenas(2);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth daemon: start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(berth_api::run(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            1
        }
    }
}
