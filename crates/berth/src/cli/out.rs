//! Printing to stdout without panicking when the reader has gone (`berth ps | head -1`):
//! `println!` panics on EPIPE because Rust ignores SIGPIPE. Docker (Go) dies of SIGPIPE on a
//! closed stdout, silently, so the shell sees 141; berth exits with the same code.
//! Also the one question the CLI asks on the terminal: a prune's "are you sure?".

use std::io::{self, BufRead, Write};

/// What a shell reports for a process killed by SIGPIPE (128 + 13).
pub const EXIT_PIPE: i32 = 141;

/// Whether an error means that nobody reads stdout any more.
pub fn is_closed_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Writes formatted text to stdout; a closed pipe ends the process quietly as docker's does,
/// any other write error is reported once and ends it with 1.
pub fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut o = io::stdout().lock();
    let res = o
        .write_fmt(args)
        .and_then(|_| if newline { o.write_all(b"\n") } else { Ok(()) });
    drop(o);
    if let Err(e) = res {
        if is_closed_pipe(&e) {
            std::process::exit(EXIT_PIPE);
        }
        eprintln!("berth: write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Asks on stderr, after `warning`, whether to go on, as docker's prune commands do; only a
/// yes read from stdin says so (a closed stdin is a no).
pub fn confirm(warning: &str) -> bool {
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    // the prompt has no newline and must be seen before the read blocks
    let _ = io::stderr().flush();
    let mut answer = String::new();
    let _ = io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}

/// `print!` that survives a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write_stdout(format_args!($($arg)*), false)
    };
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    () => {
        $crate::cli::out::write_stdout(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write_stdout(format_args!($($arg)*), true)
    };
}
