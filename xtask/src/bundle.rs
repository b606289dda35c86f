//! Domain bundles on the xtask side: the manifest users edit (TOML), the guest list of
//! `cargo xtask run hello hello hello`, and writing the binary bundle the shim boots
//! (its layout, parser and writer: `hypervisor_shim::pv::build::bundle`).
//!
//! A manifest is a list of `[[domain]]` tables:
//!
//! ```toml
//! [[domain]]
//! name = "hello"          # required: printable ASCII, no spaces, at most 64 bytes, unique
//! image = "hello"         # an example under examples/, or a path to a PV ELF (or bzImage)
//! memory = "64M"          # "512K", "16M", "1G", or a number of MiB; default 16M (dom0: 64M)
//! cmdline = "loglevel=3"  # default empty, at most 1023 bytes
//! role = "dom0"           # "dom0" or "domU" (default); at most one dom0
//! backends = true         # dom0 only: it runs xenstored and the console back-end, so
//!                         # domUs get ring event channels and start paused (default false)
//! disk = ["vdev=xvda,access=rw,size=64M,target=images/kv.img"]
//!                         # domUs only: virtual disks, xl.cfg's disk specs (`disks.rs`)
//! vif = ["ip=10.0.2.16,hostfwd=8080:80"]
//!                         # domUs only: virtual NICs, xl.cfg's vif specs (`vifs.rs`);
//!                         # dom0 bridges them to the machine's NIC (QEMU's user
//!                         # network when dom0 has no `nic`)
//! nic = "user"            # dom0 only: the machine's NIC, a QEMU virtio-net device
//!                         # (MAC 52:54:00:12:34:56) that dom0 drives: "user" (QEMU's
//!                         # user-mode network: gateway 10.0.2.2, DHCP gives 10.0.2.15)
//!                         # or "tap:NAME" (an existing host tap device); default none
//! ```
//!
//! An `image` with a `/` in it is a path, relative to the manifest's directory (write
//! `./vmlinuz` for a file beside the manifest); otherwise it names an example, built
//! by xtask. Unknown keys are errors, so a typo does not silently drop a setting.
//!
//! A dom0 running the back-ends learns from its command line what the shim does not
//! tell it: the domUs' names, ` names=1:web,2:db`, and their disks,
//! ` disks=DOMID:VDEV:MODE:SERIAL,...` (e.g. ` disks=1:xvda:w:vbd0,2:xvdb:r:vbd1`):
//! the domU's domain id (numbered as in `names=`), the vdev as the manifest writes it,
//! `w` or `r`, and the serial of the virtio-blk device QEMU gives the disk (`vbd0`,
//! `vbd1`, ... in manifest order). `disks=` is there only when there are disks. The
//! disks are dom0's devices, served to the domUs, so dom0 itself has none, and a
//! manifest with disks needs a dom0 with `backends = true`. A dom0 with a `nic` gets
//! ` nic` on its command line: it then looks for the virtio-net device and drives it
//! (`cargo xtask run --pcap FILE` records the NIC's traffic). The domUs' vifs come as
//! ` vifs=DOMID|MAC|IP|GATEWAY,...` (`vifs.rs`; IP and GATEWAY empty for DHCP), in
//! manifest order, each domU's numbered from 0.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
/// A domain's role, as the bundle format has it.
pub use hypervisor_shim::pv::build::bundle::Role;
use hypervisor_shim::pv::build::bundle::{self as format, BundleDomain};
use serde::Deserialize;

use crate::disks::{self, Access, Disk, DiskSpec};
use crate::images;
use crate::qemu::{HostFwd, Nic, NicBackend};
use crate::vifs::VifSpec;

/// Memory of a domU without `memory`, in MiB.
pub const DEFAULT_DOMU_MIB: u64 = 16;
/// Memory of the dom0 without `memory`: the shim's default for its single domain.
pub const DEFAULT_DOM0_MIB: u64 = hypervisor_shim::cmdline::DEFAULT_DOM0_MEM >> 20;

/// Where a domain's image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// An example under `examples/`, built by xtask.
    Example(String),
    /// A PV kernel file (ELF, or a Linux bzImage that xtask unwraps).
    Path(PathBuf),
}

impl ImageRef {
    /// `text` as a manifest or command line writes it: a path if it contains a `/`
    /// (relative paths are taken from `base`), an example name otherwise.
    pub fn parse(text: &str, base: &Path) -> ImageRef {
        if text.contains('/') {
            // Without `.` components, so `./k` prints as `<base>/k`.
            let path: PathBuf = Path::new(text)
                .components()
                .filter(|c| *c != std::path::Component::CurDir)
                .collect();
            ImageRef::Path(base.join(path))
        } else {
            ImageRef::Example(text.to_owned())
        }
    }

    /// The default domain name for this image: the example's name or the file's stem.
    fn default_name(&self) -> String {
        match self {
            ImageRef::Example(name) => name.clone(),
            ImageRef::Path(path) => {
                let stem = path
                    .file_stem()
                    .map_or("guest".into(), |s| s.to_string_lossy());
                let name: String = stem
                    .chars()
                    .map(|c| if c.is_ascii_graphic() { c } else { '_' })
                    .take(format::MAX_NAME_LEN)
                    .collect();
                if name.is_empty() {
                    "guest".into()
                } else {
                    name
                }
            }
        }
    }
}

/// One domain of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    pub name: String,
    pub image: ImageRef,
    pub memory_kib: u64,
    pub cmdline: String,
    pub role: Role,
    /// The dom0 runs xenstored and the console back-end (the bundle's `FLAG_BACKENDS`).
    pub backends: bool,
    /// The domain's virtual disks, in manifest order (served by dom0).
    pub disks: Vec<DiskSpec>,
    /// The domain's virtual network interfaces, in manifest order (served by dom0).
    pub vifs: Vec<VifSpec>,
    /// The machine's NIC, which this domain (the dom0) drives.
    pub nic: Option<Nic>,
}

/// A checked manifest: the domains in file order (the shim numbers domUs in this order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub domains: Vec<DomainSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    domain: Vec<RawDomain>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: String,
    image: String,
    #[serde(default, deserialize_with = "memory_kib")]
    memory: Option<u64>,
    #[serde(default)]
    cmdline: String,
    #[serde(default)]
    role: RawRole,
    #[serde(default)]
    backends: bool,
    /// xl.cfg's disk specs (`disks.rs`).
    #[serde(default)]
    disk: Vec<String>,
    /// xl.cfg's vif specs (`vifs.rs`).
    #[serde(default)]
    vif: Vec<String>,
    /// `user` or `tap:NAME` (`qemu::Nic::parse`).
    nic: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
enum RawRole {
    #[serde(rename = "dom0")]
    Dom0,
    #[default]
    #[serde(rename = "domU", alias = "domu")]
    DomU,
}

/// Parses a memory size: a number of MiB, or a string `<n>[K|M|G]` (a bare number is
/// MiB). Returns KiB.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, kib_per_unit) = match t.as_bytes().last() {
        Some(b'K' | b'k') => (&t[..t.len() - 1], 1),
        Some(b'M' | b'm') => (&t[..t.len() - 1], 1 << 10),
        Some(b'G' | b'g') => (&t[..t.len() - 1], 1 << 20),
        _ => (t, 1 << 10),
    };
    let n: u64 = num.parse().map_err(|_| {
        format!(
            "memory {text:?}: expected a size like \"512K\", \"16M\", \"1G\" or a number of MiB"
        )
    })?;
    n.checked_mul(kib_per_unit)
        .ok_or_else(|| format!("memory {text:?} is too large"))
}

fn memory_kib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a size like \"16M\" or a number of MiB")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .ok()
                .and_then(|mib| mib.checked_mul(1 << 10))
                .ok_or_else(|| E::custom(format!("memory {v}: not a valid number of MiB")))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            v.checked_mul(1 << 10)
                .ok_or_else(|| E::custom(format!("memory {v} MiB is too large")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            parse_memory(v).map_err(E::custom)
        }
    }
    d.deserialize_any(Visitor).map(Some)
}

impl Manifest {
    /// Parses a manifest's text; relative image paths are taken from `base` (the
    /// manifest's directory). Checks every rule of the bundle format that does not need
    /// the images, so mistakes show before anything is built.
    pub fn parse(text: &str, base: &Path) -> Result<Manifest> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let domains = raw
            .domain
            .into_iter()
            .map(|d| {
                let role = match d.role {
                    RawRole::Dom0 => Role::Dom0,
                    RawRole::DomU => Role::DomU,
                };
                let disks = d
                    .disk
                    .iter()
                    .map(|spec| {
                        DiskSpec::parse(spec, base)
                            .map_err(|e| anyhow::anyhow!("domain {:?}: disk {spec:?}: {e}", d.name))
                    })
                    .collect::<Result<_>>()?;
                let vifs = d
                    .vif
                    .iter()
                    .map(|spec| {
                        VifSpec::parse(spec)
                            .map_err(|e| anyhow::anyhow!("domain {:?}: vif {spec:?}: {e}", d.name))
                    })
                    .collect::<Result<_>>()?;
                let nic = match &d.nic {
                    Some(text) => Some(
                        Nic::parse(text)
                            .map_err(|e| anyhow::anyhow!("domain {:?}: {e}", d.name))?,
                    ),
                    None => None,
                };
                Ok(DomainSpec {
                    memory_kib: d.memory.unwrap_or(default_memory_kib(role)),
                    image: ImageRef::parse(&d.image, base),
                    name: d.name,
                    cmdline: d.cmdline,
                    role,
                    backends: d.backends,
                    disks,
                    vifs,
                    nic,
                })
            })
            .collect::<Result<Vec<DomainSpec>>>()?;
        let mut manifest = Manifest { domains };
        manifest.default_nic();
        manifest.check()?;
        Ok(manifest)
    }

    /// Reads and parses the manifest file `path`.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Manifest::parse(&text, base).with_context(|| format!("manifest {}", path.display()))
    }

    /// The domains of `cargo xtask run GUEST...`: each `IMAGE[:CMDLINE]`; the first is
    /// dom0 (memory `dom0_mib`), the others domUs of [`DEFAULT_DOMU_MIB`]. Names are the
    /// examples' (or files') names, made unique with `-1`, `-2`, ...
    pub fn from_guests(guests: &[String], dom0_kib: u64, base: &Path) -> Result<Manifest> {
        let mut unnamed = Vec::new();
        for (i, guest) in guests.iter().enumerate() {
            let (image, cmdline) = guest.split_once(':').unwrap_or((guest, ""));
            if image.is_empty() {
                bail!("guest {guest:?}: no image before the `:`");
            }
            let (role, memory_kib) = if i == 0 {
                (Role::Dom0, dom0_kib)
            } else {
                (Role::DomU, DEFAULT_DOMU_MIB << 10)
            };
            unnamed.push((
                ImageRef::parse(image, base),
                role,
                memory_kib,
                cmdline.into(),
            ));
        }
        Manifest::named(unnamed)
    }

    /// Domains `(image, role, memory in KiB, command line)` named after their images,
    /// made unique with `-1`, `-2`, ... in order (`hello`, `hello-1`, `hello-2`).
    pub fn named(domains: Vec<(ImageRef, Role, u64, String)>) -> Result<Manifest> {
        let mut named: Vec<DomainSpec> = Vec::new();
        for (image, role, memory_kib, cmdline) in domains {
            let taken: BTreeSet<&str> = named.iter().map(|d| d.name.as_str()).collect();
            named.push(DomainSpec {
                name: unique_name(&image.default_name(), &taken),
                image,
                memory_kib,
                cmdline,
                role,
                backends: false,
                disks: Vec::new(),
                vifs: Vec::new(),
                nic: None,
            });
        }
        let manifest = Manifest { domains: named };
        manifest.check()?;
        Ok(manifest)
    }

    /// Vifs need the machine's NIC, on dom0: QEMU's user network unless the manifest
    /// names one; the user network forwards the vifs' `hostfwd` ports.
    fn default_nic(&mut self) {
        let fwd: Vec<HostFwd> = self
            .domains
            .iter()
            .flat_map(|d| &d.vifs)
            .flat_map(|v| {
                let ip = v.ip.map(|(a, _)| a);
                v.hostfwd.iter().filter_map(move |&(h, g)| {
                    Some(HostFwd {
                        host_port: h,
                        guest: ip?,
                        guest_port: g,
                    })
                })
            })
            .collect();
        let any_vif = self.domains.iter().any(|d| !d.vifs.is_empty());
        let Some(dom0) = self.domains.iter_mut().find(|d| d.role == Role::Dom0) else {
            return;
        };
        if any_vif && dom0.nic.is_none() {
            dom0.nic = Some(Nic {
                backend: NicBackend::User {
                    hostfwd: Vec::new(),
                },
                pcap: None,
            });
        }
        if let Some(Nic {
            backend: NicBackend::User { hostfwd },
            ..
        }) = &mut dom0.nic
        {
            hostfwd.extend(fwd);
        }
    }

    /// Makes dom0 copy domU `name`'s vif traffic to the NIC (` mirror=DOMID` on its
    /// command line), for `run --pcap --mirror`.
    pub fn mirror(&mut self, name: &str) -> Result<()> {
        let Some((id, d)) = self.with_ids().find(|(_, d)| d.name == name) else {
            bail!("--mirror {name}: no domain of that name in the manifest");
        };
        if d.vifs.is_empty() {
            bail!("--mirror {name}: that domain has no vif");
        }
        let Some(dom0) = self.domains.iter_mut().find(|d| d.nic.is_some()) else {
            bail!("--mirror {name}: the manifest has no NIC to mirror to");
        };
        dom0.cmdline = format!("{} mirror={id}", dom0.cmdline).trim().to_owned();
        Ok(())
    }

    /// Moves the first port QEMU's user network forwards (a vif's `hostfwd`) to host
    /// port `port` (scenarios and the bench take a free one, not the manifest's).
    pub fn forward_host_port(&mut self, port: u16) -> Result<()> {
        for d in &mut self.domains {
            if let Some(Nic {
                backend: NicBackend::User { hostfwd },
                ..
            }) = &mut d.nic
            {
                if let Some(f) = hostfwd.first_mut() {
                    f.host_port = port;
                    return Ok(());
                }
            }
        }
        bail!("the manifest forwards no host port (no vif with hostfwd)")
    }

    /// Every vif with its domain id, MAC and index in its domain.
    pub fn vifs(&self) -> Vec<(u16, [u8; 6], &VifSpec)> {
        let mut out = Vec::new();
        for (domid, d) in self.with_ids() {
            for (i, v) in d.vifs.iter().enumerate() {
                out.push((domid, v.mac_for(&d.name, i), v));
            }
        }
        out
    }

    /// The bundle rules that do not depend on the images, checked by the shim's own
    /// writer on placeholder images (so the rules live in one place).
    pub fn check(&self) -> Result<()> {
        self.check_disks()?;
        self.check_vifs()?;
        if let Some(d) = self
            .domains
            .iter()
            .find(|d| d.nic.is_some() && d.role != Role::Dom0)
        {
            bail!(
                "domain {:?}: only dom0 may have a nic: it is the machine's NIC, which dom0 drives",
                d.name
            );
        }
        const PLACEHOLDER: &[u8] = b"\x7fELF";
        let domains: Vec<_> = self
            .domains
            .iter()
            .map(|d| d.to_bundle(PLACEHOLDER))
            .collect();
        format::encode(&domains)
            .map(drop)
            .map_err(|e| self.explain(e))
    }

    /// The rules of disks: only domUs have them, served by a dom0 running the
    /// back-ends; one vdev once per domain; one image file per writer; at most
    /// [`disks::MAX_DISKS`].
    fn check_disks(&self) -> Result<()> {
        let total: usize = self.domains.iter().map(|d| d.disks.len()).sum();
        if total == 0 {
            return Ok(());
        }
        if total > disks::MAX_DISKS {
            bail!(
                "{total} disks: at most {} in all (each is a virtio-mmio transport of QEMU's \
                 microvm, which has a fixed few)",
                disks::MAX_DISKS
            );
        }
        for d in &self.domains {
            if d.role == Role::Dom0 && !d.disks.is_empty() {
                bail!(
                    "domain {:?}: dom0 may not have disks: the disks are dom0's devices, \
                     which it serves to the domUs",
                    d.name
                );
            }
            for (i, a) in d.disks.iter().enumerate() {
                if let Some(b) = d.disks[..i].iter().find(|b| b.devid == a.devid) {
                    bail!(
                        "domain {:?}: two disks are the same device {} (vdev {} and vdev {})",
                        d.name,
                        a.devid,
                        b.vdev,
                        a.vdev
                    );
                }
            }
        }
        // QEMU locks images: two drives on one file start only if none writes it, and
        // two writers would corrupt it anyway. Paths compare as written (the images may
        // not exist yet); QEMU's lock catches the rest.
        let all: Vec<(&DomainSpec, &DiskSpec)> = self
            .domains
            .iter()
            .flat_map(|d| d.disks.iter().map(move |k| (d, k)))
            .collect();
        for (i, (da, a)) in all.iter().enumerate() {
            let shared = all[..i].iter().find(|(_, b)| b.target == a.target);
            if let Some((db, b)) = shared {
                if a.access == Access::ReadWrite || b.access == Access::ReadWrite {
                    bail!(
                        "image {} is both domain {:?}'s {} and domain {:?}'s {}: one image \
                         file may be shared only read-only (access=ro)",
                        a.target.display(),
                        db.name,
                        b.vdev,
                        da.name,
                        a.vdev
                    );
                }
            }
        }
        if !self.domains.iter().any(|d| d.backends) {
            bail!("the manifest has disks but no dom0 with `backends = true` to serve them");
        }
        Ok(())
    }

    /// Vifs: on domUs only, served by a dom0 with the back-ends, every MAC and every
    /// forwarded host port once.
    fn check_vifs(&self) -> Result<()> {
        if self.domains.iter().all(|d| d.vifs.is_empty()) {
            return Ok(());
        }
        if let Some(d) = self
            .domains
            .iter()
            .find(|d| d.role == Role::Dom0 && !d.vifs.is_empty())
        {
            bail!(
                "domain {:?}: dom0 may not have vifs: it bridges the domUs' vifs to the NIC",
                d.name
            );
        }
        if !self.domains.iter().any(|d| d.backends) {
            bail!("the manifest has vifs but no dom0 with `backends = true` to serve them");
        }
        let vifs = self.vifs();
        for (i, (_, mac, _)) in vifs.iter().enumerate() {
            if vifs[..i].iter().any(|(_, m, _)| m == mac) {
                bail!("two vifs have the MAC {}", crate::vifs::format_mac(mac));
            }
        }
        let ports: Vec<u16> = vifs
            .iter()
            .flat_map(|(_, _, v)| v.hostfwd.iter().map(|f| f.0))
            .collect();
        for (i, p) in ports.iter().enumerate() {
            if ports[..i].contains(p) {
                bail!("host port {p} is forwarded twice");
            }
        }
        Ok(())
    }

    /// Every disk of the manifest, in order, with its domU's id and its serial
    /// (`vbd0`, `vbd1`, ...): what QEMU attaches and dom0 is told.
    pub fn disks(&self) -> Vec<Disk> {
        let mut out = Vec::new();
        for (domid, d) in self.with_ids() {
            for spec in &d.disks {
                out.push(Disk {
                    domid,
                    serial: format!("vbd{}", out.len()),
                    spec: spec.clone(),
                });
            }
        }
        out
    }

    /// The machine's NIC: the dom0's, if it has one.
    pub fn nic(&self) -> Option<Nic> {
        self.domains.iter().find_map(|d| d.nic.clone())
    }

    /// Each domain with the id the shim gives it: dom0 0, the domUs 1, 2, ... in order.
    fn with_ids(&self) -> impl Iterator<Item = (u16, &DomainSpec)> {
        let mut next_domu = 0;
        self.domains.iter().map(move |d| match d.role {
            Role::Dom0 => (0, d),
            Role::DomU => {
                next_domu += 1;
                (next_domu, d)
            }
        })
    }

    /// A bundle error with the name of the domain it is about.
    fn explain(&self, e: format::BundleError) -> anyhow::Error {
        let index = match e {
            format::BundleError::OutOfBounds { index, .. }
            | format::BundleError::Misaligned { index, .. }
            | format::BundleError::NotElf { index }
            | format::BundleError::NameLength { index, .. }
            | format::BundleError::NameChars { index }
            | format::BundleError::CmdlineLength { index, .. }
            | format::BundleError::CmdlineChars { index }
            | format::BundleError::Memory { index, .. }
            | format::BundleError::Role { index, .. }
            | format::BundleError::Flags { index, .. }
            | format::BundleError::BackendsNotDom0 { index } => Some(index),
            format::BundleError::DuplicateName { second, .. }
            | format::BundleError::TwoDom0 { second, .. } => Some(second),
            _ => None,
        };
        match index.and_then(|i| self.domains.get(i)) {
            Some(d) => anyhow::anyhow!("{e} (domain {:?}, image {})", d.name, d.image),
            None => anyhow::anyhow!("{e}"),
        }
    }

    /// The examples the domains need built, without repeats.
    pub fn examples(&self) -> Vec<String> {
        let set: BTreeSet<_> = self
            .domains
            .iter()
            .filter_map(|d| match &d.image {
                ImageRef::Example(e) => Some(e.clone()),
                ImageRef::Path(_) => None,
            })
            .collect();
        set.into_iter().collect()
    }

    /// Each domain's image file: examples from `example` (a built image's path), paths
    /// checked to be ELF files or bzImages (unwrapped under `target/images/`).
    pub fn image_files(
        &self,
        root: &Path,
        example: impl Fn(&str) -> Result<PathBuf>,
    ) -> Result<Vec<PathBuf>> {
        self.domains
            .iter()
            .map(|d| {
                match &d.image {
                    ImageRef::Example(name) => example(name),
                    ImageRef::Path(path) => images::prepare_kernel(root, path),
                }
                .with_context(|| format!("domain {:?}", d.name))
            })
            .collect()
    }

    /// Builds the examples the domains need (none: no build), then returns every
    /// domain's image file.
    pub fn build_images(&self, root: &Path) -> Result<Vec<PathBuf>> {
        let examples = self.examples();
        let built = if examples.is_empty() {
            None
        } else {
            let known = images::guest_packages(root)?;
            if let Some(e) = examples.iter().find(|e| !known.contains(e)) {
                bail!(
                    "no example named `{e}` (examples: {}); an image path needs a `/`, e.g. ./{e}",
                    known.join(", ")
                );
            }
            Some(images::build(root, &examples)?)
        };
        self.image_files(root, |name| {
            built
                .as_ref()
                .with_context(|| format!("example `{name}` was not built"))?
                .guest(name)
        })
    }

    /// The binary bundle of these domains, with `files[i]` the image of domain `i`.
    pub fn encode(&self, files: &[PathBuf]) -> Result<Vec<u8>> {
        let data = files
            .iter()
            .map(|f| std::fs::read(f).with_context(|| format!("reading image {}", f.display())))
            .collect::<Result<Vec<_>>>()?;
        let cmdlines = self.cmdlines();
        let domains: Vec<_> = self
            .domains
            .iter()
            .zip(&data)
            .zip(&cmdlines)
            .map(|((d, image), cmdline)| BundleDomain {
                cmdline,
                ..d.to_bundle(image)
            })
            .collect();
        format::encode(&domains).map_err(|e| self.explain(e))
    }

    /// Each domain's command line as bundled. A dom0 running the back-ends also
    /// learns the domUs' names (` names=1:web,2:db`), which the shim does not tell
    /// it: it names their consoles and their `name` nodes in xenstore after them; and
    /// their disks (` disks=1:xvda:w:vbd0`), which it serves; a dom0 with a NIC, ` nic`
    /// (module documentation).
    fn cmdlines(&self) -> Vec<String> {
        let names: Vec<String> = self
            .with_ids()
            .filter(|(_, d)| d.role == Role::DomU)
            .map(|(id, d)| format!("{id}:{}", d.name))
            .collect();
        let disks: Vec<String> = self
            .disks()
            .iter()
            .map(|k| {
                format!(
                    "{}:{}:{}:{}",
                    k.domid,
                    k.spec.vdev,
                    k.spec.access.mode(),
                    k.serial
                )
            })
            .collect();
        let vifs: Vec<String> = self
            .vifs()
            .iter()
            .map(|(domid, mac, v)| v.dom0_entry(*domid, *mac))
            .collect();
        self.domains
            .iter()
            .map(|d| {
                let mut cmdline = d.cmdline.clone();
                if d.backends && !names.is_empty() {
                    cmdline = format!("{cmdline} names={}", names.join(","));
                }
                if d.backends && !disks.is_empty() {
                    cmdline = format!("{cmdline} disks={}", disks.join(","));
                }
                if d.backends && !vifs.is_empty() {
                    cmdline = format!("{cmdline} vifs={}", vifs.join(","));
                }
                if d.nic.is_some() {
                    cmdline = format!("{cmdline} nic");
                }
                cmdline.trim_start().to_string()
            })
            .collect()
    }

    /// Builds what is needed and writes the bundle to `out`.
    pub fn write(&self, root: &Path, out: &Path) -> Result<()> {
        let files = self.build_images(root)?;
        self.write_files(&files, out)
    }

    /// Writes the bundle of these domains to `out`, `files[i]` being domain `i`'s image.
    pub fn write_files(&self, files: &[PathBuf], out: &Path) -> Result<()> {
        let bytes = self.encode(files)?;
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("==> bundle {} ({} bytes):", out.display(), bytes.len());
        eprint!("{}", self.table());
        Ok(())
    }

    /// One line per domain: domain id, name, role, memory, image, command line; and
    /// one per disk: serial, vdev, mode, image file.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut disks = self.disks().into_iter();
        for (id, d) in self.with_ids() {
            let role = match d.role {
                Role::Dom0 => "dom0",
                Role::DomU => "domU",
            };
            let _ = writeln!(
                s,
                "    d{id:<3} {:<16} {role} {:>6} MiB  {}  {:?}",
                d.name,
                d.memory_kib >> 10,
                d.image,
                d.cmdline
            );
            if let Some(nic) = &d.nic {
                let _ = writeln!(
                    s,
                    "           nic  {}  MAC {}",
                    nic.backend,
                    crate::qemu::NIC_MAC
                );
            }
            for k in disks.by_ref().take(d.disks.len()) {
                let _ = writeln!(
                    s,
                    "           disk {:<5} {:<8} {}  {}",
                    k.serial,
                    k.spec.vdev,
                    k.spec.access.mode(),
                    k.spec.target.display()
                );
            }
        }
        s
    }

    /// Memory the domains need, in MiB (for sizing the machine).
    pub fn total_mib(&self) -> u64 {
        self.domains
            .iter()
            .map(|d| d.memory_kib.div_ceil(1024))
            .sum()
    }
}

impl DomainSpec {
    fn to_bundle<'a>(&'a self, image: &'a [u8]) -> BundleDomain<'a> {
        BundleDomain {
            name: &self.name,
            image,
            memory_kib: self.memory_kib,
            cmdline: &self.cmdline,
            role: self.role,
            backends: self.backends,
        }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageRef::Example(e) => write!(f, "example {e}"),
            ImageRef::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

fn default_memory_kib(role: Role) -> u64 {
    match role {
        Role::Dom0 => DEFAULT_DOM0_MIB << 10,
        Role::DomU => DEFAULT_DOMU_MIB << 10,
    }
}

/// `base`, or `base-1`, `base-2`, ... : the first not in `taken`.
fn unique_name(base: &str, taken: &BTreeSet<&str>) -> String {
    if !taken.contains(base) {
        return base.to_owned();
    }
    (1..)
        .map(|k| format!("{base}-{k}"))
        .find(|n| !taken.contains(n.as_str()))
        .expect("a free suffix exists")
}

/// Where `run` and `bundle` put a bundle named `stem`: `target/images/<stem>.bundle`.
pub fn default_output(root: &Path, stem: &str) -> PathBuf {
    images::target_dir(root)
        .join("images")
        .join(format!("{stem}.bundle"))
}

#[cfg(test)]
mod tests;
