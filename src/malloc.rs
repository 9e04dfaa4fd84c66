//! glibc malloc's process-wide settings for a server that runs for weeks.
//!
//! Owns: the `mallopt` call `main` makes once, before any thread starts,
//! and the rule that a deployment's own glibc setting wins
//! (`MALLOC_MMAP_THRESHOLD_`, `GLIBC_TUNABLES`). Must never: run after
//! other threads have started allocating (blocks already on the heap stay
//! there), or change what a request sees; on other C libraries it does
//! nothing.
//!
//! Why (RELIABILITY.md, "Soak"): with glibc's defaults the server's RSS grew
//! about 300 MiB an hour under a steady mixed load and never came back.
//! glibc raises its mmap threshold to the size of the largest block freed
//! (up to 32 MiB), so after the first large batch libtorch's activations
//! (megabytes each, a different size every batch) come from the heap,
//! where they fragment it. A fixed threshold keeps every block over it
//! mapped on its own and unmapped when freed. (Fewer arenas, the other
//! usual remedy, did not help: +22% in 7 minutes with `MALLOC_ARENA_MAX=2`
//! alone, +1% with the fixed threshold alone.)

/// Blocks from this size up are mapped on their own and unmapped when
/// freed: glibc's own starting threshold, kept fixed.
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Sets the fixed mmap threshold unless the environment sets one for glibc
/// (`MALLOC_MMAP_THRESHOLD_`, or `glibc.malloc.mmap_threshold` in
/// `GLIBC_TUNABLES`). Returns the threshold set, `None` when it was left
/// to the environment. Call first thing in `main`.
pub fn tune() -> Option<i32> {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let own = std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        || sets_tunable(&tunables, "glibc.malloc.mmap_threshold");
    (!own && set_mmap_threshold(MMAP_THRESHOLD_BYTES)).then_some(MMAP_THRESHOLD_BYTES)
}

/// Whether `GLIBC_TUNABLES` (`name=value` pairs joined by `:`) sets `tunable`.
fn sets_tunable(tunables: &str, tunable: &str) -> bool {
    tunables
        .split(':')
        .any(|pair| pair.split('=').next() == Some(tunable))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(bytes: i32) -> bool {
    // SAFETY: mallopt only changes malloc's parameters, under malloc's own
    // lock; it returns 0 for a value it refuses.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold(_bytes: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_in_glibc_tunables_is_the_deployments() {
        let tunables = "glibc.malloc.trim_threshold=1:glibc.malloc.mmap_threshold=4096";
        assert!(sets_tunable(tunables, "glibc.malloc.mmap_threshold"));
        assert!(!sets_tunable(tunables, "glibc.malloc.arena_max"));
        assert!(!sets_tunable("", "glibc.malloc.mmap_threshold"));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_threshold() {
        assert!(set_mmap_threshold(MMAP_THRESHOLD_BYTES));
    }
}
