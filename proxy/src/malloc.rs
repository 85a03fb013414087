//! Allocator tuning for serving many large bodies at once.
//!
//! Blob bodies are 1 MiB chunks allocated on the blocking pool's threads and freed on the
//! runtime's. glibc gives each of those threads its own arena (up to 8 per core), and memory
//! freed into one arena is not reused by another, so 64 concurrent 1 GiB pulls peaked at
//! ~148 MiB of RSS. Two arenas keep the same throughput and peaked at ~113 MiB. A fixed
//! mmap threshold would return every chunk to the kernel but cost two thirds of the
//! throughput (a fresh mapping and page faults per MiB).

/// Call first thing in `main`, before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc tunable; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
