//! A fill's file writer: a blocking thread that writes the chunks in order as they come
//! (unverified: the file enters the cache only once the digest matched), around the page cache (`SequentialWriter`), and tells readers how far the file
//! holds them (`Progress::on_file`).
//!
//! Why a thread of its own: a direct write waits for the disk, and readers near the head take
//! the chunks from memory (`Fill::keep_recent`), so the fill streams at the speed of the
//! upstream and the hash, not of the disk. The queue is bounded: a disk slower than the
//! upstream holds the fill back rather than memory growing.

use std::path::Path;

use bytes::Bytes;
use shoal_origin::SequentialWriter;
use tokio::sync::{mpsc, watch};

use super::fill::{FillError, Progress};

/// Batches queued for the disk at most (each up to about 1 MiB). With the writer's own
/// buffer this stays below `fill::RECENT_BYTES`, so a reader rarely waits for the disk.
const QUEUE: usize = 8;

pub struct FillWriter {
    queue: mpsc::Sender<Vec<Bytes>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl FillWriter {
    /// Starts writing `file` (at `path`) from its first byte.
    pub fn start(file: std::fs::File, path: &Path, tx: watch::Sender<Progress>) -> Self {
        let (queue, mut batches) = mpsc::channel::<Vec<Bytes>>(QUEUE);
        let path = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || {
            let mut out = SequentialWriter::new(file, &path, 0);
            while let Some(chunks) = batches.blocking_recv() {
                for chunk in &chunks {
                    out.write(chunk)?;
                }
                // The writer holds bytes back until its buffer is full: readers are woken
                // only when the bytes on file moved.
                let on_file = out.on_file();
                tx.send_if_modified(|p| std::mem::replace(&mut p.on_file, on_file) != on_file);
            }
            let end = out.finish()?;
            tx.send_modify(|p| p.on_file = end);
            Ok(())
        });
        FillWriter { queue, task }
    }

    /// Queues the next chunks; waits while the queue is full.
    pub async fn write(&self, chunks: Vec<Bytes>) -> Result<(), FillError> {
        self.queue
            .send(chunks)
            .await
            .map_err(|_| FillError::Io("the fill's file writer stopped".into()))
    }

    /// Waits until every chunk is on file.
    pub async fn finish(self) -> Result<(), FillError> {
        drop(self.queue);
        self.task
            .await
            .map_err(|e| FillError::Io(e.to_string()))?
            .map_err(|e| FillError::Io(format!("cache file: {e}")))
    }
}
