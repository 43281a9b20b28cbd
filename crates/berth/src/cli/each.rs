//! The loop of docker's commands on several objects (rm, stop, kill, wait, start, update, ...):
//! one request per name in turn, its result on stdout, an error on stderr without stopping at
//! it, and exit code 1 once all have run if any failed, as docker's.

use std::fmt::Display;
use std::future::Future;

use super::{CliError, Result};

/// Runs `op` on each name, printing the name as given when it succeeds.
pub(super) async fn each<F, Fut>(names: &[String], mut op: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    each_line(names, |n| {
        let done = op(n.clone());
        async move { done.await.map(|()| Some(n)) }
    })
    .await
}

/// Runs `op` on each name, printing the line it returns (nothing for `None`).
pub(super) async fn each_line<F, Fut, T>(names: &[String], mut op: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
    T: Display,
{
    let mut failed = false;
    for n in names {
        match op(n.clone()).await {
            Ok(Some(line)) => outln!("{line}"),
            Ok(None) => {}
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(CliError::Reported { code: 1 });
    }
    Ok(0)
}
