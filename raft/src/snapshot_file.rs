//! The snapshot file's bytes (drawn in `snapshot`'s doc): writing pairs out, reading and
//! checking them back, and `SnapshotFile`, the file as openraft reads and writes it.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest as _, Sha256};

use crate::types::{write_err, StorageResult};

const MAGIC: &[u8; 8] = b"SHOALSNP";
const END: u32 = u32::MAX;
/// No catalogue value comes near this (manifests are capped far below it); a length above
/// it is a damaged file, refused before anything is allocated for it.
pub(crate) const MAX_PART: u32 = 256 << 20;
const BUFFER: usize = 1 << 20;

/// The formats whose snapshot files this build reads. Format 5 moved only the Raft log, so a
/// directory migrated from format 4 keeps its snapshot file as written (its header says 4)
/// and sends it as it is to nodes that join; the pairs are the same. A format that changes
/// the catalogue's pairs raises the lower bound, or converts the file in its migration.
const READABLE: std::ops::RangeInclusive<u32> = 4..=crate::format::CURRENT;

/// Writes `pairs` as a snapshot file at `path` and syncs it; returns how many it wrote.
pub(crate) fn write_file<K, V>(
    path: &Path,
    pairs: impl Iterator<Item = io::Result<(K, V)>>,
) -> io::Result<u64>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let file = std::fs::File::create(path)?;
    let mut out = Hashing {
        inner: BufWriter::with_capacity(BUFFER, file),
        hash: Sha256::new(),
    };
    out.write_all(MAGIC)?;
    out.write_all(&crate::format::CURRENT.to_be_bytes())?;
    let mut count = 0u64;
    for kv in pairs {
        let (k, v) = kv?;
        for part in [k.as_ref(), v.as_ref()] {
            let len = u32::try_from(part.len())
                .ok()
                .filter(|l| *l <= MAX_PART)
                .ok_or_else(|| io::Error::other("a catalogue key or value over 256 MiB"))?;
            out.write_all(&len.to_be_bytes())?;
            out.write_all(part)?;
        }
        count += 1;
    }
    out.write_all(&END.to_be_bytes())?;
    out.write_all(&count.to_be_bytes())?;
    let Hashing { mut inner, hash } = out;
    inner.write_all(&hash.finalize())?;
    inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(count)
}

/// Reads a whole snapshot file, checking it: its pair count.
pub(crate) fn check(path: &Path) -> io::Result<u64> {
    let mut pairs = 0;
    for kv in read_file(path)? {
        kv?;
        pairs += 1;
    }
    Ok(pairs)
}

/// The pairs of the snapshot file at `path`, in order. The last item is an error if the
/// file is damaged; a caller that must not act on a damaged file `check`s it first.
pub(crate) fn read_file(path: &Path) -> io::Result<Pairs> {
    let file = std::fs::File::open(path)?;
    let mut input = Hashing {
        inner: BufReader::with_capacity(BUFFER, file),
        hash: Sha256::new(),
    };
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(damaged)?;
    if &magic != MAGIC {
        return Err(invalid("not a Shoal snapshot file"));
    }
    let format = read_u32(&mut input)?;
    if !READABLE.contains(&format) {
        return Err(invalid(&format!(
            "a snapshot of metadata format {format}; this shoal reads formats {} to {}",
            READABLE.start(),
            READABLE.end()
        )));
    }
    Ok(Pairs {
        input,
        count: 0,
        ended: false,
    })
}

pub(crate) struct Pairs {
    input: Hashing<BufReader<std::fs::File>>,
    count: u64,
    ended: bool,
}

impl Pairs {
    fn part(&mut self, len: u32) -> io::Result<Vec<u8>> {
        if len > MAX_PART {
            return Err(invalid("a pair longer than any the catalogue holds"));
        }
        let mut part = Vec::new();
        (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut part)?;
        if part.len() != len as usize {
            return Err(damaged(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(part)
    }

    fn pair(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let len = read_u32(&mut self.input)?;
        if len == END {
            self.end()?;
            return Ok(None);
        }
        let key = self.part(len)?;
        let len = read_u32(&mut self.input)?;
        let value = self.part(len)?;
        self.count += 1;
        Ok(Some((key, value)))
    }

    fn end(&mut self) -> io::Result<()> {
        let mut count = [0u8; 8];
        self.input.read_exact(&mut count).map_err(damaged)?;
        if u64::from_be_bytes(count) != self.count {
            return Err(invalid("its pair count does not match its pairs"));
        }
        let expected = std::mem::take(&mut self.input.hash).finalize();
        let mut got = [0u8; 32];
        self.input.inner.read_exact(&mut got).map_err(damaged)?;
        if got[..] != expected[..] {
            return Err(invalid("its SHA-256 does not match its bytes"));
        }
        if self.input.inner.read(&mut [0u8; 1])? != 0 {
            return Err(invalid("bytes after its end"));
        }
        Ok(())
    }
}

impl Iterator for Pairs {
    type Item = io::Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let item = self.pair().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.ended = true;
        }
        item
    }
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut be = [0u8; 4];
    input.read_exact(&mut be).map_err(damaged)?;
    Ok(u32::from_be_bytes(be))
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("damaged snapshot file: {why}"),
    )
}

fn damaged(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        invalid("it ends early")
    } else {
        e
    }
}

/// Hashes every byte read or written through it.
struct Hashing<T> {
    inner: T,
    hash: Sha256,
}

impl<T: Write> Write for Hashing<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Hashing<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A snapshot file as openraft reads and writes it (`TypeConfig::SnapshotData`): the file
/// and where it lies, so that a received one can be checked and renamed.
#[derive(Debug)]
pub struct SnapshotFile {
    pub(crate) path: PathBuf,
    pub(crate) file: tokio::fs::File,
    /// A file being received is removed if it is dropped before `close`: openraft drops a
    /// transfer the leader abandoned (a new leader starts over), and its bytes would
    /// otherwise stay on disk until the next start.
    pub(crate) partial: bool,
}

impl SnapshotFile {
    /// Syncs the received bytes and closes the file: its path.
    pub(crate) async fn close(mut self) -> StorageResult<PathBuf> {
        self.file.sync_all().await.map_err(write_err)?;
        self.partial = false;
        Ok(self.path.clone())
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.partial {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().file).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.get_mut().file).start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.get_mut().file).poll_complete(cx)
    }
}
