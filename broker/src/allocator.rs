//! The memory allocator's own bound. glibc's malloc gives each thread that allocates its own
//! arena (up to 8 per core) and keeps what is freed there for reuse, so a broker whose buffers
//! stay within `RUNNEL_MEMORY_LIMIT` still grew well past it under load (`bench/pressure`
//! measured +134 to +207 MiB with 1,000 producers of 1 MiB bodies; +39 MiB with two arenas).
//! One arena per core keeps that slack small; `MALLOC_ARENA_MAX`, when set, still wins.

/// Caps glibc's malloc arenas at one per core (at least two). Must run before the runtime
/// starts its threads. Does nothing on other C libraries.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes malloc's settings; no thread allocates concurrently yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
