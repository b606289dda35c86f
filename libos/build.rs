//! Exposes the guest linker script to the applications (`DEP_LIBOS_LINKER_SCRIPT`).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:linker_script={dir}/linker.ld");
}
