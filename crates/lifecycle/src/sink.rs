//! Where line protocol goes: the small [`Sink`] trait, its error, and the line-protocol file
//! sink. The InfluxDB sinks live in the writer service, which implements the same trait.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// A failed write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying: a 5xx, a 429, a transport or file error, or a configuration error an
    /// operator fixes (401, 403, 404). `retry_after` is the server's hint.
    #[error("retryable write error: {message}")]
    Retryable {
        /// What went wrong (no secrets).
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot fix it: the points themselves are bad (400, 413 for a single line, 422).
    #[error("write rejected (HTTP {status}): {message}")]
    Permanent {
        /// HTTP status.
        status: u16,
        /// The server's explanation.
        message: String,
    },
}

/// A destination for line protocol (newline-terminated lines, nanosecond timestamps).
pub trait Sink: Send + Sync {
    /// Writes the lines; the write is complete (durable at the destination) when this returns Ok.
    fn write(&self, lines: &[u8]) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Appends line protocol to a file, importable with `influx write -f FILE`.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Mutex<tokio::fs::File>,
}

impl FileSink {
    /// Opens (creating, appending) `path`; creates missing parent folders.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(tokio::fs::File::from_std(file)),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for FileSink {
    /// Appends the lines and syncs the file's data to disk.
    async fn write(&self, lines: &[u8]) -> Result<(), SinkError> {
        let mut f = self.file.lock().await;
        let res = async {
            f.write_all(lines).await?;
            f.flush().await?;
            f.sync_data().await
        }
        .await;
        res.map_err(|e| SinkError::Retryable {
            message: format!("writing {}: {e}", self.path.display()),
            retry_after: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_sink_appends() {
        let dir = std::env::temp_dir().join(format!("lt-file-sink-{}", uuid::Uuid::new_v4()));
        let path = dir.join("out.lp");
        let sink = FileSink::open(&path).expect("open");
        sink.write(b"m v=1i 1\n").await.expect("write");
        sink.write(b"m v=2i 2\n").await.expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "m v=1i 1\nm v=2i 2\n");
        let _ = std::fs::remove_dir_all(dir);
    }
}
