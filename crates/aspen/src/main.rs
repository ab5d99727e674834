fn main() -> std::process::ExitCode {
    return_large_allocations();
    aspen::cli::main()
}

/// glibc serves an allocation from the heap, and keeps it there once freed,
/// unless it is larger than a threshold that grows with every large block
/// freed. The argon2 hashes (19 MiB each, at the sandbox's first start and
/// at every PSU password check) raised it past themselves, so their memory
/// stayed with the process: 52.8 MB RSS after a first start, 33.9 MB with
/// the threshold fixed at 1 MiB (issue 15, BENCHMARKS.md). Blocks this
/// large are rare on the request paths (an AIS page is ~50 kB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_allocations() {
    // SAFETY: sets one allocator parameter, before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations() {}
