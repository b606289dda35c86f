//! `cargo xtask bindgen`: generates `xen-sys/src/bindings.rs` (the guest view) and
//! `xen-sys/src/tools.rs` (`xen_sys::tools`: `domctl.h`, `sysctl.h`) from the Xen public
//! headers.
//!
//! The tools view is a second pass on `xen-sys/wrapper-tools.h`, which defines
//! `__XEN_TOOLS__`: that define changes the other headers (the register unions of
//! `cpu_user_regs`, tools-only parts of `xen.h`, `memory.h`, `arch-x86/xen.h`), so it
//! cannot share a translation unit with the guest view. It allowlists what `domctl.h` and
//! `sysctl.h` declare (and the tools-only `xenctl_bitmap`, `xen_arch_domainconfig`,
//! `XEN_X86_EMU_*`), with the types they use generated alongside, in their tools shape.
//!
//! bindgen is used as a library on `xen-sys/wrapper.h` (which pins
//! `__XEN_INTERFACE_VERSION__` to `0x00040e00`), for `x86_64-unknown-linux-gnu`,
//! freestanding (clang's own `<stdint.h>`, no libc headers), with only items
//! declared under the Xen include directory allowlisted. Output is `#![no_std]`-ready
//! (`core::ffi` C types), carries bindgen's layout tests, has no comments, and is
//! formatted with prettyplease, so it is byte-identical from run to run and does not
//! depend on the installed `rustfmt`. `xen-sys` pulls it in with `include!`, which
//! `cargo fmt` does not follow.
//!
//! # Macro constants
//!
//! Object-like macros that cexpr cannot evaluate (`xen_mk_uint(0x7FF0)`,
//! `xen_mk_ulong(...)`, macros naming enumerators such as `XS_DEBUG`) are evaluated by
//! clang (`clang_macro_fallback`). clang evaluates them as `i64` and bindgen would pick
//! the Rust type from the value alone, so `XenMacroTypes` fixes the types:
//!
//! * macros defined through `xen_mk_ulong`/`xen_mk_ullong`, or from a macro that is,
//!   (`UVMF_*`, `HYPERVISOR_VIRT_START`, `MACH2PHYS_VIRT_START`, ...) are `u64`, as
//!   their C type is `unsigned long`;
//! * literals above `i64::MAX` (`__HYPERVISOR_VIRT_START = 0xFFFF800000000000`) are
//!   `u64`, not negative `i64`;
//! * `DOMID_*` are `u16`, the width of `domid_t`.
//!
//! Everything else keeps bindgen's default: `u32` if the value fits, else `u64`, and
//! `i32`/`i64` only when negative (`GNTST_*`, `NETIF_RSP_*`, `BLKIF_RSP_*`).
//! Enumerators are plain constants without the enum name (`XenbusStateConnected`,
//! `XS_READ`); the headers have no `XENBUS_STATE_*` macros.
//!
//! # Macro constants that are not produced
//!
//! Checked by listing every object-like `#define` of the included headers against the
//! output (Xen 4.17 headers). Missing, and to be written in Rust where needed:
//!
//! * all function-like macros: the whole of `io/ring.h` (`DEFINE_RING_TYPES`,
//!   `RING_GET_REQUEST`, `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`, `__RING_SIZE`, ...),
//!   `XEN_GUEST_HANDLE*`, `set_xen_guest_handle`, `xen_mk_uint`/`xen_mk_ulong`,
//!   `xen_pfn_to_cr3`/`xen_cr3_to_pfn`, `TI_GET_DPL`/`TI_SET_IF` and friends,
//!   `XENMEMF_address_bits`/`XENMEMF_node`, `MASK_XENCONS_IDX`, `MASK_XENSTORE_IDX`.
//!   (The ring structs that `DEFINE_RING_TYPES` expands to in netif.h/blkif.h, e.g.
//!   `netif_tx_sring`, `blkif_sring`, `netif_tx_front_ring`, are produced.)
//! * macros that are not integer or string constants: `machine_to_phys_mapping`
//!   (pointer cast), `GNTTABOP_error_msgs` (array initialiser), type or field aliases
//!   (`int64_aligned_t`, `uint64_aligned_t`, `blkif_vdev_t`, `blkif_sector_t`,
//!   `grant_entry_v1`, `xen_vga_console_info`, `xen_add_to_physmap_range`,
//!   `__DECL_REG_LO8`/`__DECL_REG_LO16`), and empty ones (`XEN_FLEX_ARRAY_DIM`, include
//!   guards);
//! * macros not defined for a guest at this interface version: tools/Xen-only ones
//!   (`XENMEM_paging_op*`, `XENMEM_sharing_op*`, `XENMEM_access_op*`, `XENMEM_claim_pages`,
//!   `XENMEM_get_sharing_*`, `XENMEM_reserved_device_memory_map`, `XENMEM_RDM_ALL`,
//!   `XENMEM_FORK_*` (`XEN_X86_EMU_*`, `XEN_X86_MSR_RELAXED`, `XEN_X86_MISC_FLAGS_MAX`
//!   are in the tools view),
//!   `MAX_VMASST_TYPE`, `EVTCHNOP_reset_cont`) and legacy aliases for interfaces older
//!   than 0x00040e00 (`NR_EVENT_CHANNELS`: use `EVTCHN_2L_NR_CHANNELS`;
//!   `__HYPERVISOR_dom0_op`, `PHYSDEVOP_IRQ_STATUS_QUERY` and the other upper-case
//!   `PHYSDEVOP_*`, `XENMEM_add_to_physmap_range`, `XEN_NMIREASON_parity_error`,
//!   `console_mfn`/`console_evtchn`, `xen_wc_sec_hi`). `XENFEAT_grant_map_identity`
//!   is commented out in `features.h`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use bindgen::callbacks::{IntKind, ParseCallbacks, Token, TokenKind};

/// Path of `xen-sys/wrapper.h` (the guest view), from the workspace root.
pub const WRAPPER: &str = "xen-sys/wrapper.h";
/// Path of the generated guest-view file, from the workspace root.
pub const OUTPUT: &str = "xen-sys/src/bindings.rs";
/// Path of `xen-sys/wrapper-tools.h` (domctl.h and sysctl.h), from the workspace root.
pub const TOOLS_WRAPPER: &str = "xen-sys/wrapper-tools.h";
/// Path of the generated tools file (`xen_sys::tools`), from the workspace root.
pub const TOOLS_OUTPUT: &str = "xen-sys/src/tools.rs";

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Which view of the headers a pass generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    /// `wrapper.h`: every guest header, everything declared under the include directory.
    Guest,
    /// `wrapper-tools.h` (`__XEN_TOOLS__`): only what `domctl.h`/`sysctl.h` declare,
    /// plus the tools-only types they embed; the rest resolves to the guest view.
    Tools,
}

impl View {
    fn wrapper(self) -> &'static str {
        match self {
            View::Guest => WRAPPER,
            View::Tools => TOOLS_WRAPPER,
        }
    }
}

/// Generates both files from the Xen public headers in `headers_dir` (the directory
/// holding `xen.h`, e.g. `/usr/include/xen`): `(workspace-relative path, contents)`
/// for [`OUTPUT`] and [`TOOLS_OUTPUT`].
///
/// The caller writes them (or compares them with the checked-in files).
pub fn generate(headers_dir: &Path) -> Result<Vec<(&'static str, String)>> {
    let headers_dir = headers_dir
        .canonicalize()
        .with_context(|| format!("Xen headers directory {}", headers_dir.display()))?;
    if !headers_dir.join("xen.h").is_file() {
        bail!(
            "{} has no xen.h (install libxen-dev)",
            headers_dir.display()
        );
    }
    let headers = headers_dir
        .to_str()
        .context("Xen headers directory path is not UTF-8")?;

    let root = workspace_root();
    let mut out = Vec::new();
    for (view, output) in [(View::Guest, OUTPUT), (View::Tools, TOOLS_OUTPUT)] {
        let wrapper = root.join(view.wrapper());
        let wrapper = wrapper.to_str().context("workspace path is not UTF-8")?;
        // clang_macro_fallback writes a precompiled header and a scratch .c file.
        let scratch = std::env::temp_dir().join(format!("xen-sys-bindgen-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let result = run_bindgen(view, wrapper, headers, &scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        out.push((output, result?));
    }
    Ok(out)
}

fn run_bindgen(view: View, wrapper: &str, headers: &str, scratch: &Path) -> Result<String> {
    let builder = bindgen::Builder::default().header(wrapper).clang_args([
        "-target",
        "x86_64-unknown-linux-gnu",
        // clang's own <stdint.h>, independent of the host libc headers.
        "-ffreestanding",
        // Quote search path only: "sched.h" is Xen's, <sched.h> would be libc's.
        "-iquote",
        headers,
    ]);
    let builder = match view {
        View::Guest => builder
            .allowlist_file(format!("{}/.*", regex_escape(headers)))
            // The pin itself, from wrapper.h.
            .allowlist_var("__XEN_INTERFACE_VERSION__"),
        View::Tools => builder
            .allowlist_file(format!("{}/(domctl|sysctl)\\.h", regex_escape(headers)))
            // Tools-only parts of xen.h and arch-x86/xen.h that domctl/sysctl embed.
            .allowlist_type("xenctl_bitmap(_t)?")
            .allowlist_type("xen_arch_domainconfig")
            .allowlist_var("_?XEN_X86_EMU_.*|XEN_X86_MSR_RELAXED|XEN_X86_MISC_FLAGS_MAX"),
    };
    let bindings = builder
        .use_core()
        .ctypes_prefix("core::ffi")
        .layout_tests(true)
        .generate_comments(false)
        .derive_default(true)
        .derive_copy(true)
        .derive_debug(true)
        .prepend_enum_name(false)
        .clang_macro_fallback()
        .clang_macro_fallback_build_dir(scratch)
        .parse_callbacks(Box::new(XenMacroTypes::default()))
        .formatter(bindgen::Formatter::Prettyplease)
        .raw_line(format!(
            "// @generated by `cargo xtask bindgen` from {}. Do not edit.",
            view.wrapper()
        ))
        .generate()
        .with_context(|| format!("bindgen failed on {}", view.wrapper()))?;

    let out = bindings.to_string();
    // Determinism guard: nothing host-specific may leak into the checked-in file.
    if out.contains(headers) || out.contains(wrapper) || out.contains(&*scratch.to_string_lossy()) {
        bail!("generated bindings contain a host path");
    }
    Ok(out)
}

/// Checks that every generated file in the workspace at `root` matches a fresh
/// generation.
pub fn check(headers_dir: &Path, root: &Path) -> Result<()> {
    for (path, fresh) in generate(headers_dir)? {
        let existing =
            std::fs::read_to_string(root.join(path)).with_context(|| format!("reading {path}"))?;
        if fresh != existing {
            bail!("{path} is stale: run `cargo xtask bindgen`");
        }
    }
    Ok(())
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        let _ = write!(out, "{c}");
    }
    out
}

/// Gives macro constants their C types where bindgen would guess from the value.
#[derive(Debug, Default)]
struct XenMacroTypes {
    /// Macros whose C type is `unsigned long`/`unsigned long long`.
    ulong: Mutex<Vec<String>>,
    /// Macros without a `-` or `~` operator: a negative value means a literal above
    /// `i64::MAX` (C: `unsigned long`), which clang/cexpr hand over as a wrapped `i64`.
    no_negation: Mutex<Vec<String>>,
}

impl ParseCallbacks for XenMacroTypes {
    fn modify_macro(&self, name: &str, tokens: &mut Vec<Token>) {
        // Called for every macro definition, in definition order, before evaluation.
        let mut ulong = self.ulong.lock().unwrap();
        let is_ulong = tokens.iter().skip(1).any(|t| {
            t.kind == TokenKind::Identifier
                && (t.raw.as_ref() == b"xen_mk_ulong"
                    || t.raw.as_ref() == b"xen_mk_ullong"
                    || ulong.iter().any(|u| u.as_bytes() == t.raw.as_ref()))
        });
        if is_ulong {
            ulong.push(name.to_owned());
        }
        let negates = tokens
            .iter()
            .skip(1)
            .any(|t| t.kind == TokenKind::Punctuation && matches!(t.raw.as_ref(), b"-" | b"~"));
        if !negates {
            self.no_negation.lock().unwrap().push(name.to_owned());
        }
    }

    fn int_macro(&self, name: &str, value: i64) -> Option<IntKind> {
        if name.starts_with("DOMID_") && (0..=i64::from(u16::MAX)).contains(&value) {
            return Some(IntKind::U16);
        }
        if self.ulong.lock().unwrap().iter().any(|u| u == name) {
            return Some(IntKind::U64);
        }
        if value < 0 && self.no_negation.lock().unwrap().iter().any(|u| u == name) {
            return Some(IntKind::U64);
        }
        None
    }
}
