//! The daemon: serves the Docker Engine API over unix sockets from the engine. Routes parse
//! HTTP into the engine's calls (blocking ones through `spawn_blocking`) and know no storage;
//! version prefixes are stripped before routing; a panic in a handler becomes a 500 for that
//! request, never the end of the daemon.
#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod containers;
pub mod daemon;
pub mod dayops;
pub mod error;
pub mod events;
pub mod exec;
pub mod images;
pub mod networks;
pub mod selfheal;
mod shape;
pub mod stream;
pub mod system;
pub mod tls;
pub mod volumes;

pub use daemon::{parse_host_gateway_ip, run, DaemonConfig};

/// The newest API version served, and the oldest.
pub const API_VERSION: &str = "1.53";
pub const MIN_API_VERSION: &str = "1.24";
