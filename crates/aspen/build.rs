//! Lays out the release binary's code in the order `link/order.txt` gives
//! (issue 15, tenth pass; BENCHMARKS.md): the functions that start-up and
//! the request paths run, gathered at the front of `.text`, instead of
//! scattered through 19 MB of it. The kernel maps a binary's code in 64 kB
//! windows around each fault, so scattered start-up code made most of the
//! text resident. `bench/link-order.sh` regenerates the file from a release
//! build; symbols it names that no longer exist are skipped, so a stale file
//! costs the layout, never the build. Symbol names carry hashes of each
//! crate's build metadata, which source edits leave alone but a toolchain or
//! Cargo.lock change does not, and neither does building the server together
//! with the examples (their dev-dependencies unify other features): the file
//! matches `cargo build --release -p aspen`.
use std::env;

fn main() {
    println!("cargo:rerun-if-changed=link/order.txt");
    println!("cargo:rerun-if-env-changed=ASPEN_LINK_ORDER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    // Only where rustc links with its own LLD by default (x86_64 Linux GNU,
    // since Rust 1.90) and nobody chose another linker: GNU ld does not
    // know the option. Dev and test builds keep the default layout.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let lld_default = var("TARGET") == "x86_64-unknown-linux-gnu"
        && env::var_os("RUSTC_LINKER").is_none()
        && !flags.contains("linker")
        && !flags.contains("fuse-ld");
    if var("PROFILE") != "release" || !lld_default || var("ASPEN_LINK_ORDER") == "0" {
        return;
    }
    let order = format!("{}/link/order.txt", var("CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-link-arg-bin=aspen=-Wl,--symbol-ordering-file={order}");
    println!("cargo:rustc-link-arg-bin=aspen=-Wl,--no-warn-symbol-ordering");
}
