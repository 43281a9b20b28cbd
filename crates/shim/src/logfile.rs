//! The container's log in Docker's json-file format: one JSON object per line
//! (`{"log":..,"stream":..,"time":..}`), split at newlines, a partial line flushed at 16 KiB
//! as dockerd does, rotated by size over `max_file` files (moby's loggerutils: with one file,
//! the file is rotated over, that is reopened empty).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// dockerd's bufio reader hands the log driver at most this much of one line.
const MAX_PARTIAL: usize = 16 * 1024;

pub struct JsonLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_file: u32,
    /// Bytes of a line not yet ended, per stream (0 stdout, 1 stderr).
    partial: [Vec<u8>; 2],
    /// One encoded record, reused so that logging does not allocate per line.
    record: Vec<u8>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

impl JsonLog {
    /// `max_size` 0 means no rotation.
    pub fn open(path: &Path, max_size: u64, max_file: u32) -> Result<JsonLog, Error> {
        let file = open_append(path).map_err(|source| Error::OpenLog {
            path: path.to_path_buf(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(JsonLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
            record: Vec::new(),
        })
    }

    /// Log `data` read from `stream` (0 stdout, 1 stderr): every complete line, and a partial
    /// line once it reaches 16 KiB.
    pub fn write(&mut self, stream: usize, mut data: &[u8]) -> Result<(), Error> {
        let stream = stream.min(1);
        while !data.is_empty() {
            let room = MAX_PARTIAL - self.partial[stream].len();
            let take = match data.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => i + 1,
                _ => room.min(data.len()),
            };
            self.partial[stream].extend_from_slice(&data[..take]);
            data = &data[take..];
            let ended = self.partial[stream].last() == Some(&b'\n');
            if ended || self.partial[stream].len() >= MAX_PARTIAL {
                self.emit(stream)?;
            }
        }
        Ok(())
    }

    /// Write out what is left of unfinished lines (the container has exited).
    pub fn flush(&mut self) -> Result<(), Error> {
        for s in 0..2 {
            if !self.partial[s].is_empty() {
                self.emit(s)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, stream: usize) -> Result<(), Error> {
        let text = String::from_utf8_lossy(&self.partial[stream]);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        self.record.clear();
        let rec = serde_json::json!({
            "log": text,
            "stream": if stream == 0 { "stdout" } else { "stderr" },
            "time": time,
        });
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.record, &rec);
        self.record.push(b'\n');
        self.partial[stream].clear();
        if self.max_size > 0
            && self.size > 0
            && self.size + self.record.len() as u64 > self.max_size
        {
            self.rotate()?;
        }
        self.file
            .write_all(&self.record)
            .map_err(|source| Error::WriteLog {
                path: self.path.clone(),
                source,
            })?;
        self.size += self.record.len() as u64;
        Ok(())
    }

    /// log → log.1 → … → log.(max_file-1); the oldest falls off.
    fn rotate(&mut self) -> Result<(), Error> {
        let name = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.max_file > 1 {
            for i in (1..self.max_file - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            std::fs::rename(&self.path, name(1)).map_err(|source| Error::RotateLog {
                path: self.path.clone(),
                source,
            })?;
            self.file = open_append(&self.path).map_err(|source| Error::OpenLog {
                path: self.path.clone(),
                source,
            })?;
        } else {
            self.file.set_len(0).map_err(|source| Error::RotateLog {
                path: self.path.clone(),
                source,
            })?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_split_at_newline_and_keep_their_stream() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut l = JsonLog::open(&p, 0, 1).unwrap();
        l.write(0, b"one\ntw").unwrap();
        l.write(1, b"err\n").unwrap();
        l.write(0, b"o\nthree").unwrap();
        l.flush().unwrap();
        let v = lines(&p);
        let got: Vec<(&str, &str)> = v
            .iter()
            .map(|r| (r["log"].as_str().unwrap(), r["stream"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("one\n", "stdout"),
                ("err\n", "stderr"),
                ("two\n", "stdout"),
                ("three", "stdout")
            ]
        );
        let t = v[0]["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
        assert!(t.ends_with('Z'));
    }

    #[test]
    fn a_long_line_is_cut_at_16k() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut l = JsonLog::open(&p, 0, 1).unwrap();
        let mut data = vec![b'x'; MAX_PARTIAL + 10];
        data.push(b'\n');
        l.write(0, &data).unwrap();
        let v = lines(&p);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["log"].as_str().unwrap().len(), MAX_PARTIAL);
        assert_eq!(v[1]["log"].as_str().unwrap(), "xxxxxxxxxx\n");
    }

    #[test]
    fn rotation_keeps_max_file_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut l = JsonLog::open(&p, 200, 3).unwrap();
        for i in 0..20 {
            l.write(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(p.exists());
        assert!(d.path().join("c.log.1").exists());
        assert!(d.path().join("c.log.2").exists());
        assert!(!d.path().join("c.log.3").exists());
        for f in ["c.log", "c.log.1", "c.log.2"] {
            assert!(std::fs::metadata(d.path().join(f)).unwrap().len() <= 200);
        }
        let last = lines(&p);
        assert_eq!(last.last().unwrap()["log"], "line 19\n");
    }

    #[test]
    fn one_file_is_rotated_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut l = JsonLog::open(&p, 200, 1).unwrap();
        for i in 0..20 {
            l.write(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(!d.path().join("c.log.1").exists());
        let v = lines(&p);
        assert!(std::fs::metadata(&p).unwrap().len() <= 200);
        assert_eq!(v.last().unwrap()["log"], "line 19\n");
        assert!(v.len() < 20);
    }
}
