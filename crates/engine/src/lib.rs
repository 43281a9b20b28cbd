//! The engine: turns an image and a Docker create request into a container (an OCI spec with
//! Docker's defaults, an overlay snapshot, a shim that runs it), keeps containers and exec
//! sessions in SQLite, and knows no HTTP: the API crate maps requests onto it.
#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod archive;
pub mod changes;
pub mod db;
pub mod engine;
pub mod error;
pub mod events;
pub mod health;
pub mod network;
pub mod restart;
pub mod shim;
pub mod spec;
pub mod stats;
pub mod trash;
pub mod update;
pub mod volumes;

pub use engine::{Config, Created, Engine, ExecPlan};
pub use error::{Error, Kind, Result};
