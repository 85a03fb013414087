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
/// there is read around it on the file's first read, and into the cache after
/// (`ColdReader::for_blob`).
pub fn file_chunks(file: File, start: u64, end: u64) -> ByteChunks {
    let file = Arc::new(ColdReader::for_blob(file));
    Box::pin(futures::stream::try_unfold(start, move |pos| {
        let file = file.clone();
        async move {
            if pos >= end {
                return Ok(None);
            }
            let n = (end - pos).min(FILE_CHUNK as u64) as usize;
            let chunk = match file.mapped(pos, n) {
                Some(chunk) => chunk,
                None => tokio::task::spawn_blocking(move || file.read(pos, n))
                    .await
                    .map_err(io::Error::other)??,
            };
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
/// A blob's file read a second time is worth the cache: the first read of a blob is a cold
/// pull's (the origin's, or a node's first hit after a fill), read around the cache; a
/// blob read again (a warm GET over TLS, which cannot use `sendfile`; a second region's
/// fill) is popular, and reading it through the cache once makes every later read a copy
/// from memory (a warm 1 GiB GET over HTTPS: 1.27–1.38 s read around the cache each time,
/// 0.56–0.80 s from it).
///
/// Nothing is asked of the kernel until the first read: a reader made for a body that goes
/// out with `sendfile` (a cache hit) costs no system call, and the `O_DIRECT` descriptor is
/// opened only when a chunk is found uncached.
pub struct ColdReader {
    plain: File,
    /// The same file opened with `O_DIRECT` (`None` where the filesystem refuses it, or
    /// where the file has been read before and is to be cached), settled at the first
    /// uncached chunk.
    direct: std::sync::OnceLock<Option<File>>,
    /// Read through the cache when the file was read before (`for_blob`).
    cache_rereads: bool,
    /// The file's length, asked at the first mapping: bytes past it are never mapped (a
    /// mapping shows zeros to the end of the last page).
    len: std::sync::OnceLock<u64>,
}

impl ColdReader {
    /// A reader that reads uncached chunks around the cache every time: a fill's file,
    /// which its stragglers read faster so (`proxy::cache::fill`).
    pub fn new(plain: File) -> ColdReader {
        ColdReader {
            plain,
            direct: std::sync::OnceLock::new(),
            cache_rereads: false,
            len: std::sync::OnceLock::new(),
        }
    }

    /// A reader of a whole blob's file: around the cache on the file's first read, through
    /// it on any later one.
    pub fn for_blob(plain: File) -> ColdReader {
        ColdReader {
            cache_rereads: true,
            ..ColdReader::new(plain)
        }
    }

    /// The `n` bytes at `pos` as a view of the page cache, when every page of them is
    /// there and this reader reads a blob (`for_blob`); else `None`, and `read` reads them.
    ///
    /// Served so, a chunk costs no copy out of the cache and no trip to the blocking pool:
    /// a body that must go through user space (TLS) is copied once, by whoever encrypts it.
    /// The mapping lives as long as the chunk. It is safe because a blob's file never
    /// changes and is never truncated (it is renamed in whole and only ever unlinked,
    /// which leaves a mapped file readable); a file cut short under a mapping would make
    /// reading it a `SIGBUS`.
    pub fn mapped(&self, pos: u64, n: usize) -> Option<Bytes> {
        if !self.cache_rereads || n == 0 {
            return None;
        }
        let len = *self
            .len
            .get_or_init(|| self.plain.metadata().map_or(0, |m| m.len()));
        if pos + n as u64 > len {
            return None;
        }
        if !self.all_cached(pos, n)? {
            return None;
        }
        Mapping::of(&self.plain, pos, n)
    }

    /// Whether every page of `[pos, pos + n)` is in the page cache; `None` where the kernel
    /// cannot say.
    fn all_cached(&self, pos: u64, n: usize) -> Option<bool> {
        let first = pos / PAGE;
        let pages = (pos + n as u64).div_ceil(PAGE) - first;
        Some(cached_pages(&self.plain, first * PAGE, pages * PAGE)? == pages)
    }

    /// The `n` bytes at `pos`.
    pub fn read(&self, pos: u64, n: usize) -> io::Result<Bytes> {
        if self.all_cached(pos, n) == Some(false) {
            let direct = self.direct.get_or_init(|| {
                if self.cache_rereads && read_before(&self.plain) {
                    return None;
                }
                reopen(&self.plain, libc::O_DIRECT)
            });
            if let Some(direct) = direct {
                return read_direct(direct, pos, n);
            }
        }
        let mut buf = BytesMut::with_capacity(n);
        read_into(&self.plain, &mut buf, pos, n)?;
        Ok(buf.freeze())
    }
}

/// A read-only mapping of part of a file, unmapped when the last chunk that views it goes.
struct Mapping {
    at: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; reading it from any
// thread is sound, and only `drop` unmaps it.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared references only read.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `[pos, pos + n)` of `file`, its pages entered into the page table at once (they are
    /// in the cache: one call instead of a fault per few pages), or `None` if the kernel
    /// refuses the mapping.
    fn of(file: &File, pos: u64, n: usize) -> Option<Bytes> {
        use std::os::fd::AsRawFd;
        let off = pos - pos % PAGE;
        let head = (pos - off) as usize;
        let len = head + n;
        // SAFETY: a fresh private-to-us read-only mapping of an open file; nothing aliases it.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off as libc::off_t,
            )
        };
        if at == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: `at..at + len` is the mapping just made. Populating is only advice: a
        // kernel without it faults the pages in as they are read instead.
        unsafe { libc::madvise(at, len, libc::MADV_POPULATE_READ) };
        let mapping = Mapping {
            at: std::ptr::NonNull::new(at.cast())?,
            len,
        };
        Some(Bytes::from_owner(mapping).slice(head..))
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.at.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `of` made, once; no view outlives `self`.
        unsafe { libc::munmap(self.at.as_ptr().cast(), self.len) };
    }
}

/// Files remembered as read: about 50 bytes each.
const READ_FILES: usize = 65_536;

/// Whether `file` was read before by this process (by device and inode; the most recent
/// `READ_FILES` files), remembering it now. A new blob that reuses a deleted one's inode
/// is taken as read: it is then cached on its first read, which costs speed, never bytes.
fn read_before(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    static READ: std::sync::Mutex<Option<lru::LruCache<(u64, u64), ()>>> =
        std::sync::Mutex::new(None);
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let mut read = READ.lock().unwrap_or_else(|e| e.into_inner());
    let cap = std::num::NonZeroUsize::new(READ_FILES).expect("non-zero");
    let files = read.get_or_insert_with(|| lru::LruCache::new(cap));
    files.put((meta.dev(), meta.ino()), ()).is_some()
}

/// Reads exactly `n` bytes at `pos` into `buf`'s spare capacity (at least `n`), without
/// zeroing it first: a 1 MiB `memset` per chunk was 6 % of a node's time serving over TLS.
fn read_into(file: &File, buf: &mut BytesMut, pos: u64, n: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    buf.reserve(n);
    let start = buf.len();
    let mut got = 0;
    while got < n {
        let spare = buf.spare_capacity_mut();
        // SAFETY: `pread` writes at most `n - got` bytes into the spare capacity, which
        // holds at least `n - got` more; it only writes, so uninitialised memory is fine.
        let r = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                n - got,
                (pos + got as u64) as libc::off_t,
            )
        };
        match r {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            r if r > 0 => {
                // SAFETY: the kernel initialised the `r` bytes it reported.
                unsafe { buf.set_len(start + got + r as usize) };
                got += r as usize;
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
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

    /// A cached chunk of a blob is a view of the page cache with the file's bytes, at any
    /// offset; a fill's reader never maps (its file is still being written).
    #[test]
    fn cached_chunks_of_a_blob_are_mapped_views_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..(3 * ALIGN + 123)).map(|i| (i * 13) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let blob = ColdReader::for_blob(File::open(&path).unwrap());
        if cached_pages(&blob.plain, 0, data.len() as u64).is_none() {
            eprintln!("this kernel has no cachestat: nothing is mapped");
            return;
        }
        for (pos, n) in [
            (0, data.len()),
            (5, 100),
            (ALIGN - 1, ALIGN + 2),
            (3 * ALIGN, 123),
        ] {
            let got = blob
                .mapped(pos as u64, n)
                .expect("a just-written file is cached");
            assert_eq!(&got[..], &data[pos..pos + n], "{pos}+{n}");
        }
        assert!(blob.mapped(0, 0).is_none(), "nothing to map");
        let len = data.len() as u64;
        assert!(
            blob.mapped(len - 3, 4).is_none(),
            "past the end is read, and fails"
        );
        let fill = ColdReader::new(File::open(&path).unwrap());
        assert!(fill.mapped(0, 100).is_none(), "a fill's reader reads");
    }

    /// A blob's file counts as read from its first read on, by its identity: another
    /// handle on the same file is a reread, another file is not.
    #[test]
    fn a_file_read_before_is_known_by_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        assert!(!read_before(&File::open(&a).unwrap()), "first read");
        assert!(read_before(&File::open(&a).unwrap()), "a second handle");
        assert!(!read_before(&File::open(&b).unwrap()), "another file");
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
