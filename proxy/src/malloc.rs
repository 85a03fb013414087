//! The allocator: mimalloc, tuned to hand memory back, and glibc's for what C code allocates.
//!
//! Why mimalloc: glibc's malloc was a sixth of a manifest GET's CPU (`_int_malloc`,
//! `_int_free`, `malloc_consolidate`, `unlink_chunk`; a request allocates and frees many
//! small objects across the runtime's threads). With mimalloc, measured with
//! `shoal-bench compare` alternating both builds: manifest GETs 39–43 k req/s against
//! 23–33 k, p99 3.1–3.5 ms against 4.2–6.4 ms, and a 1 GiB push 736–813 MB/s against
//! 552–554.
//!
//! Why tuned: by default mimalloc commits whole arenas eagerly and purges freed memory after
//! a second; 64 concurrent warm 1 GiB pulls then peaked at 98–119 MiB (the node) and
//! 146–178 MiB (an edge node) against 35 and 59–67 MiB with glibc. Arenas committed on
//! demand and memory purged as soon as it is freed: 35 and 55 MiB, at the same throughput.
//! But purged at once, the 64 KiB buffer a push's body arrives in each time is fresh memory
//! the kernel must fault in and zero: a 1 GiB push took 1.57–1.62 CPU s. Purged 10 ms after
//! it is freed, the next chunk reuses it: 1.26–1.33 CPU s and 874–974 against 752–817 MB/s
//! (alternating, 4 pushes each), for 51–66 against 33 MiB during the push, and 42–43 (edge
//! 68–75) against 38–40 (52–59) MiB for the 64 pulls (`bench/RESULTS.md`).
//!
//! glibc still serves C code (aws-lc, zlib): it gets two arenas (not 8 per core; memory
//! freed into one arena is not reused by another), and `trim` hands its free pages back.

/// `mi_option_arena_eager_commit` and `mi_option_purge_delay` in mimalloc v3's `mimalloc.h`
/// (`enum mi_option_e`); the Rust bindings name only some of the options.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Call before anything allocates (the `shoal` binary runs it as an ELF constructor) and
/// before any thread starts.
pub fn configure() {
    tune_mimalloc();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc tunable; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// How long freed memory stays before it is handed back: long enough for a stream's next
/// chunk to reuse the last one's pages.
const PURGE_AFTER_MS: std::ffi::c_long = 10;

/// Arenas committed on demand, freed memory purged `PURGE_AFTER_MS` after it is freed.
fn tune_mimalloc() {
    // SAFETY: mi_option_set only stores an option's value; mimalloc reads it when it next
    // commits or purges memory.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_AFTER_MS);
    }
}

/// How often `trim` runs: it walks glibc's free lists under each arena's lock, a few ms on a
/// heap of gigabytes, so not on every request. Every 10 s let a fast catalogue fill (sled
/// freeing pages as it writes them back) peak 50-100 MiB higher between trims.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Returns memory the allocators hold free to the kernel.
pub fn trim() {
    // SAFETY: mi_collect frees nothing in use; it returns the calling thread's free pages
    // and those of threads that ended.
    unsafe {
        libmimalloc_sys::mi_collect(false);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> (i64, i64) {
        // SAFETY: reading options has no preconditions.
        unsafe {
            (
                libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT) as i64,
                libmimalloc_sys::mi_option_get(PURGE_DELAY) as i64,
            )
        }
    }

    /// The option numbers name the options we mean: before `configure` they hold the
    /// defaults mimalloc v3's `options.c` gives them (eager commit 2, purge delay 1 s), after
    /// it the values it sets. A renumbered enum fails here, not silently in production.
    /// (Not `configure`: its `mallopt` wants no other thread, and tests run in threads.)
    #[test]
    fn the_option_numbers_are_mimallocs() {
        assert_eq!(options(), (2, 1000), "mimalloc's defaults");
        tune_mimalloc();
        assert_eq!(
            options(),
            (0, 10),
            "eager commit off, purge after PURGE_AFTER_MS"
        );
    }
}
