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
/// and sends it as it is to nodes that join; the pairs are the same. Format 6 compresses
/// what follows the header; a migrated directory's file of format 4 or 5 is read as it is.
/// A format that changes the catalogue's pairs raises the lower bound, or converts the file
/// in its migration.
const READABLE: std::ops::RangeInclusive<u32> = 4..=crate::format::CURRENT;
/// The first format whose files are zstd-compressed after the header.
const COMPRESSED_FROM: u32 = 6;
/// zstd's fastest level: a 94 MB file of a 100 000-tag catalogue became 9.1 MB in 0.10 s
/// (level 3: 9.9 MB in 0.18 s), so building a snapshot costs little more than writing it.
const LEVEL: i32 = 1;

/// How much a snapshot file holds: its pairs, and their bytes uncompressed (the
/// catalogue's own bytes plus 8 per pair, for two length prefixes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub pairs: u64,
    pub bytes: u64,
}

impl Written {
    /// Counts one pair.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        self.pairs += 1;
        self.bytes += 8 + (key.len() + value.len()) as u64;
    }
}

/// Writes `pairs` as a snapshot file of this build's format at `path` and syncs it; returns
/// what it wrote.
pub(crate) fn write_file<K, V>(
    path: &Path,
    pairs: impl Iterator<Item = io::Result<(K, V)>>,
) -> io::Result<Written>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    write_file_as(path, pairs, crate::format::CURRENT)
}

/// Writes `pairs` as a snapshot file of `format`: compressed from `COMPRESSED_FROM` on.
/// Older formats are written by the migration from format 3 (format 4's file) and by tests,
/// to stand for files older builds left.
pub(crate) fn write_file_as<K, V>(
    path: &Path,
    pairs: impl Iterator<Item = io::Result<(K, V)>>,
    format: u32,
) -> io::Result<Written>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut raw = BufWriter::with_capacity(BUFFER, std::fs::File::create(path)?);
    let mut hash = Sha256::new();
    for head in [&MAGIC[..], &format.to_be_bytes()] {
        raw.write_all(head)?;
        hash.update(head);
    }
    let body: Box<dyn Finish> = if format >= COMPRESSED_FROM {
        Box::new(zstd::Encoder::new(raw, LEVEL)?)
    } else {
        Box::new(raw)
    };
    let mut out = Hashing { inner: body, hash };
    let mut written = Written::default();
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
        written.add(k.as_ref(), v.as_ref());
    }
    out.write_all(&END.to_be_bytes())?;
    out.write_all(&written.pairs.to_be_bytes())?;
    let Hashing { mut inner, hash } = out;
    inner.write_all(&hash.finalize())?;
    inner.finish()?.sync_all()?;
    Ok(written)
}

/// The file's body as it is written: plain or through zstd, ended with the file synced.
trait Finish: Write {
    fn finish(self: Box<Self>) -> io::Result<std::fs::File>;
}

impl Finish for BufWriter<std::fs::File> {
    fn finish(self: Box<Self>) -> io::Result<std::fs::File> {
        self.into_inner().map_err(|e| e.into_error())
    }
}

impl Finish for zstd::Encoder<'static, BufWriter<std::fs::File>> {
    fn finish(self: Box<Self>) -> io::Result<std::fs::File> {
        let raw = zstd::Encoder::finish(*self)?;
        raw.into_inner().map_err(|e| e.into_error())
    }
}

/// Reads a whole snapshot file, checking it: what it holds.
pub(crate) fn check(path: &Path) -> io::Result<Written> {
    let mut held = Written::default();
    for kv in read_file(path)? {
        let (k, v) = kv?;
        held.add(&k, &v);
    }
    Ok(held)
}

/// The pairs of the snapshot file at `path`, in order. The last item is an error if the
/// file is damaged; a caller that must not act on a damaged file `check`s it first.
pub(crate) fn read_file(path: &Path) -> io::Result<Pairs> {
    let mut raw = BufReader::with_capacity(BUFFER, std::fs::File::open(path)?);
    let mut magic = [0u8; 8];
    raw.read_exact(&mut magic).map_err(damaged)?;
    if &magic != MAGIC {
        return Err(invalid("not a Shoal snapshot file"));
    }
    let format = read_u32(&mut raw)?;
    if !READABLE.contains(&format) {
        return Err(invalid(&format!(
            "a snapshot of metadata format {format}; this shoal reads formats {} to {}",
            READABLE.start(),
            READABLE.end()
        )));
    }
    let mut hash = Sha256::new();
    hash.update(magic);
    hash.update(format.to_be_bytes());
    let body: Box<dyn Read + Send> = if format >= COMPRESSED_FROM {
        Box::new(Decompressed(zstd::Decoder::with_buffer(raw)?))
    } else {
        Box::new(raw)
    };
    Ok(Pairs {
        input: Hashing { inner: body, hash },
        count: 0,
        ended: false,
    })
}

pub(crate) struct Pairs {
    input: Hashing<Box<dyn Read + Send>>,
    count: u64,
    ended: bool,
}

/// A compressed body whose undecodable bytes read as a damaged file (`InvalidData`), as a
/// plain file's wrong bytes do. zstd reports those as `Other`; the file's own read errors
/// (an I/O error of the disk) keep their kind.
struct Decompressed(zstd::Decoder<'static, BufReader<std::fs::File>>);

impl Read for Decompressed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => invalid("it ends early"),
            io::ErrorKind::Other => invalid(&format!("its compressed bytes do not decode ({e})")),
            _ => e,
        })
    }
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
