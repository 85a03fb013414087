//! Allocator tuning for serving many large bodies at once.
//!
//! Blob bodies are 1 MiB chunks allocated on the blocking pool's threads and freed on the
//! runtime's. glibc gives each of those threads its own arena (up to 8 per core), and memory
//! freed into one arena is not reused by another, so 64 concurrent 1 GiB pulls peaked at
//! ~148 MiB of RSS. Two arenas keep the same throughput and peaked at ~113 MiB. A fixed
//! mmap threshold would return every chunk to the kernel but cost two thirds of the
//! throughput (a fresh mapping and page faults per MiB).
//!
//! glibc also keeps what was freed. Writing a large catalogue out for a snapshot while
//! writes go on frees hundreds of MB of short-lived sled pages among long-lived ones; in a
//! fill to 430 000 tags the node held 170 MB in use but 1.4 GB resident. `trim` hands the
//! free pages back to the kernel; the node calls it every `TRIM_EVERY`.

/// Call first thing in `main`, before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc tunable; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// How often `trim` runs: it walks the free lists under each arena's lock, a few ms on a
/// heap of gigabytes, so not on every request.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Returns memory glibc holds free to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
