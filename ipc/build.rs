fn main() {
    // libqb (Debian: libqb-dev / libqb100) provides the IPC server; it is on every Proxmox host.
    println!("cargo:rustc-link-lib=qb");
    println!("cargo:rerun-if-changed=build.rs");
}
