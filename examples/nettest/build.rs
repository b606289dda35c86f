//! Links with libos's guest linker script (bare-metal builds only).
fn main() {
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        let script =
            std::env::var("DEP_LIBOS_LINKER_SCRIPT").expect("libos exports its linker script");
        println!("cargo:rustc-link-arg-bins=-T{script}");
    }
}
