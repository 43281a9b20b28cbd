//! The engine: turns an image and a Docker create request into a container (an OCI spec with
//! Docker's defaults, an overlay snapshot, a shim that runs it), keeps containers and exec
//! sessions in SQLite, and knows no HTTP: the API crate maps requests onto it.
#![forbid(unsafe_code)]

pub mod spec;
