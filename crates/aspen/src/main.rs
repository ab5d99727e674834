/// mimalloc instead of glibc's malloc (issue 15, BENCHMARKS.md): allocation
/// was ~15% of a token's server CPU under load, and glibc kept freed argon2
/// blocks (19 MiB each) in its heap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    aspen::cli::main()
}
