//! Early writeback: asking the kernel to start writing a file range to disk without waiting
//! for it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), for uploads written through the page
//! cache (where `O_DIRECT` is refused, see `direct`). A blob is fsynced before it is renamed
//! into place; without this, a 1 GiB push sits in the page cache until that fsync and then
//! waits seconds for the disk, after every byte has arrived. Started while
//! the bytes stream in, the disk works alongside the network and the fsync finds little
//! left. Durability still comes from the fsync alone: this only changes when the disk works.

use std::os::fd::AsRawFd;

/// Starts writeback of `len` bytes at `offset` of `file`; errors are ignored (the fsync that
/// follows reports any real one).
pub fn start(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: a plain syscall on a file descriptor we own; it reads no memory of ours.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file.as_raw_fd(), offset, len);
}
