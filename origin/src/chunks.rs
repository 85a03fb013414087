//! Blob bodies as streams of owned chunks (`ByteChunks`), and the file source behind them.
//!
//! A chunk stream rather than `AsyncRead`: every source already reads into buffers of its own
//! (a positional file read, an HTTP body, an S3 object), and handing those buffers on avoids a
//! second buffer per reader and a copy of every byte. With 64 concurrent 1 GiB pulls that
//! second buffer was half of a node's memory. Callers that want `AsyncRead` wrap the stream
//! (`BlobReader::into_async_read`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::Stream;

/// A blob's bytes, in order, in chunks of any size; an error ends the body early.
pub type ByteChunks = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Size of each positional read of a file: the 1–2 MiB writes measured fastest here.
pub const FILE_CHUNK: usize = 1 << 20;

/// Streams `[start, end)` of `file` in `FILE_CHUNK` reads on the blocking pool. Each chunk is
/// read straight into the buffer that is handed on; a file shorter than `end` is an error,
/// never a short body. Bytes in the page cache are copied from it; a chunk that is not
/// there is read around it (`ColdReader`).
pub fn file_chunks(file: File, start: u64, end: u64) -> ByteChunks {
    let file = Arc::new(ColdReader::new(file));
    Box::pin(futures::stream::try_unfold(start, move |pos| {
        let file = file.clone();
        async move {
            if pos >= end {
                return Ok(None);
            }
            let n = (end - pos).min(FILE_CHUNK as u64) as usize;
            let chunk = tokio::task::spawn_blocking(move || file.read(pos, n))
                .await
                .map_err(io::Error::other)??;
            Ok(Some((chunk, pos + n as u64)))
        }
    }))
}

/// Alignment of offsets, lengths and memory for `O_DIRECT` reads.
const ALIGN: usize = 4096;

/// Reads a file from the page cache where it holds the bytes, and with `O_DIRECT` where it
/// does not.
///
/// Why: a blob is written around the page cache (`direct`), so its first read finds nothing
/// cached. A buffered read then makes the kernel fill fresh page-cache pages first, which on
/// this kind of machine costs 2–4× the disk read itself (256 MiB: 0.53–0.56 s buffered,
/// 0.13–0.25 s direct, `dd` here), and the origin's first read of a blob is the one a cold
/// pull waits for. Whether a chunk is cached is asked with `cachestat` (Linux 6.5), which
/// reads nothing; an `RWF_NOWAIT` probe would not do, as it starts a read into the cache. The
/// kernel keeps the two descriptors coherent (a direct read writes dirty cached pages back
/// first). Without `cachestat` or `O_DIRECT` every read is buffered.
///
/// Nothing is asked of the kernel until the first read: a reader made for a body that goes
/// out with `sendfile` (a cache hit) costs no system call, and the `O_DIRECT` descriptor is
/// opened only when a chunk is found uncached.
pub struct ColdReader {
    plain: File,
    /// The same file opened with `O_DIRECT` (`None` where the filesystem refuses it), opened
    /// at the first uncached chunk.
    direct: std::sync::OnceLock<Option<File>>,
}

impl ColdReader {
    pub fn new(plain: File) -> ColdReader {
        ColdReader {
            plain,
            direct: std::sync::OnceLock::new(),
        }
    }

    /// The `n` bytes at `pos`.
    pub fn read(&self, pos: u64, n: usize) -> io::Result<Bytes> {
        let first = pos / PAGE;
        let pages = (pos + n as u64).div_ceil(PAGE) - first;
        if cached_pages(&self.plain, first * PAGE, pages * PAGE).is_some_and(|c| c < pages) {
            let direct = self
                .direct
                .get_or_init(|| reopen(&self.plain, libc::O_DIRECT));
            if let Some(direct) = direct {
                return read_direct(direct, pos, n);
            }
        }
        let mut buf = BytesMut::zeroed(n);
        self.plain.read_exact_at(&mut buf, pos)?;
        Ok(buf.freeze())
    }
}

/// The page size `cachestat` counts in.
const PAGE: u64 = 4096;

/// How many pages of `[off, off + len)` of `file` are in the page cache, or `None` where the
/// kernel cannot say (before Linux 6.5).
fn cached_pages(file: &File, off: u64, len: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    /// `cachestat`'s number, the same in the generic table and on x86-64.
    const SYS_CACHESTAT: libc::c_long = 451;
    /// The kernel said it has no `cachestat`: asked once per process.
    static MISSING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if MISSING.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let range = Range { off, len };
    let mut stat = Stat::default();
    // SAFETY: both pointers are to live values of the layouts the kernel defines.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    if r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        MISSING.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    (r == 0).then_some(stat.nr_cache)
}

/// The file behind `file` opened again, read-only with `flags`, or `None` where refused.
fn reopen(file: &File, flags: i32) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

/// The `n` bytes at `pos`, read with `O_DIRECT` into one aligned buffer and handed on as the
/// slice of it they fill (no copy).
fn read_direct(direct: &File, pos: u64, n: usize) -> io::Result<Bytes> {
    let first = pos - pos % ALIGN as u64;
    let head = (pos - first) as usize;
    let len = (head + n).div_ceil(ALIGN) * ALIGN;
    let mut buf = BytesMut::zeroed(len + ALIGN);
    let window = buf.as_ptr().align_offset(ALIGN);
    let mut got = 0;
    // Past the file's end a direct read comes back short; only the bytes asked for count.
    while got < head + n {
        let at = window + got;
        match direct.read_at(&mut buf[at..window + len], first + got as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(r) => got += r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.freeze().slice(window + head..window + head + n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn file_chunks_cover_the_range_and_fail_on_a_short_file() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..(FILE_CHUNK * 2 + 7)).map(|i| i as u8).collect();
        std::io::Write::write_all(&mut f, &data).unwrap();
        let open = || File::open(f.path()).unwrap();
        let got: Vec<Bytes> = file_chunks(open(), 5, data.len() as u64)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got.concat(), &data[5..]);
        let past = file_chunks(open(), 0, data.len() as u64 + 1);
        assert!(past.try_collect::<Vec<_>>().await.is_err());
    }

    /// Cached or not, aligned or not, the bytes are the file's: a direct read at an odd
    /// offset, one across the file's end, and the page cache's copy all agree.
    #[test]
    fn cold_and_cached_reads_give_the_same_bytes() {
        // Beside the sources, not in /tmp: tmpfs refuses O_DIRECT.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..(3 * ALIGN + 123)).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let direct = reopen(&file, libc::O_DIRECT).expect("the source directory takes O_DIRECT");
        for (pos, n) in [
            (0, data.len()),
            (5, 100),
            (ALIGN - 1, ALIGN + 2),
            (3 * ALIGN + 1, 122),
        ] {
            let want = &data[pos..pos + n];
            assert_eq!(
                &read_direct(&direct, pos as u64, n).unwrap()[..],
                want,
                "{pos}+{n}"
            );
            let reader = ColdReader::new(File::open(&path).unwrap());
            assert_eq!(&reader.read(pos as u64, n).unwrap()[..], want, "{pos}+{n}");
        }
        assert!(
            read_direct(&direct, data.len() as u64 - 3, 4).is_err(),
            "past the end"
        );
        // Just written, the file is cached; `cachestat` counts it (where the kernel has it).
        if let Some(cached) = cached_pages(&file, 0, data.len() as u64) {
            assert_eq!(cached, (data.len() as u64).div_ceil(PAGE));
        }
    }
}
