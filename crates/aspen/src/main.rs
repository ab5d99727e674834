/// mimalloc instead of glibc's malloc (issue 15, BENCHMARKS.md): allocation
/// was ~15% of a token's server CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3.x's `mi_option_e` (the crate has
/// no constant for it; the test below checks it is still that option).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    return_freed_memory_at_once();
    aspen::cli::main()
}

/// mimalloc gives freed memory back to the OS a second after it is freed,
/// and only as it allocates and frees again, so a burst's memory stays
/// with an idle server: 46 MB RSS after a first start (the argon2 hashes,
/// 19 MiB each) against 34 MB with no delay, which is what glibc gave.
/// An operator's own `MIMALLOC_PURGE_DELAY` is left as it is.
fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option, before any other thread runs.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn purge_delay_is_the_option_set() {
        // mimalloc's default purge delay is 1000 ms; no neighbouring
        // option has that default.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("skipped: MIMALLOC_PURGE_DELAY is set");
            return;
        }
        // SAFETY: reads one option.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) },
            1000
        );
        super::return_freed_memory_at_once();
        // SAFETY: reads one option.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) },
            0
        );
    }
}
