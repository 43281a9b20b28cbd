//! `berth shim`: one small single-threaded process per running container.
