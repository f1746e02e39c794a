//! Links libqb and has the C compiler check the hand-written libqb declarations
//! (src/ffi/types.rs) against the installed `<qb/*.h>`: a layout mismatch fails the build.

use std::path::PathBuf;

#[path = "src/ffi/types.rs"]
mod types;

#[allow(dead_code)]
#[path = "src/ffi/layout.rs"]
mod layout;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/ffi/types.rs");
    println!("cargo:rerun-if-changed=src/ffi/layout.rs");
    // Where <qb/*.h> lives when not in the compiler's default include path.
    println!("cargo:rerun-if-env-changed=PMXCFS_QB_INCLUDE_DIR");
    check_layout();
    // libqb (Debian: libqb-dev / libqb100) provides the IPC server; it is on every Proxmox host.
    println!("cargo:rustc-link-lib=qb");
}

/// Compile the `_Static_assert`s of [`layout::c_source`]. The Rust values are the build
/// script's own, i.e. the host's: when cross-compiling to another target they say nothing
/// about the target, so the check is skipped there (with a warning).
fn check_layout() {
    let (host, target) = (std::env::var("HOST").unwrap_or_default(), std::env::var("TARGET").unwrap_or_default());
    if host != target {
        println!("cargo:warning=cross build ({host} -> {target}): libqb layout not checked");
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let file = out.join("qb_layout_check.c");
    std::fs::write(&file, layout::c_source(&layout::facts())).expect("write qb_layout_check.c");
    let mut build = cc::Build::new();
    build.file(&file).cargo_metadata(false).warnings(false);
    if let Ok(dir) = std::env::var("PMXCFS_QB_INCLUDE_DIR") {
        build.include(dir);
    }
    // Objects only: the asserts have no code to link.
    if let Err(e) = build.try_compile_intermediates() {
        panic!("the libqb declarations in src/ffi/types.rs do not match the installed headers:\n{e}");
    }
}
