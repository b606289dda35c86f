//! The shim's command line: `[options] [-- guest command line]`.
//! Options: `dom0_mem=<n>[K|M|G]` (memory of the initial domain, default 64M).

#[derive(Debug, PartialEq, Eq)]
pub struct ShimOptions<'a> {
    pub dom0_pages: u64,
    pub guest_cmdline: &'a str,
}

/// Memory of the initial domain without `dom0_mem=`, in bytes.
pub const DEFAULT_DOM0_MEM: u64 = 64 << 20;

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl<'a> ShimOptions<'a> {
    pub fn parse(cmdline: &'a str) -> Self {
        let (shim, guest) = match cmdline.split_once("--") {
            Some((s, g)) => (s, g.trim()),
            None => (cmdline, ""),
        };
        let mut opts = ShimOptions {
            dom0_pages: DEFAULT_DOM0_MEM >> 12,
            guest_cmdline: guest,
        };
        for word in shim.split_whitespace() {
            match word.split_once('=') {
                Some(("dom0_mem", v)) => match parse_size(v) {
                    Some(bytes) => opts.dom0_pages = bytes >> 12,
                    None => log::warn!("ignoring bad dom0_mem={v}"),
                },
                _ => log::warn!("ignoring unknown option {word}"),
            }
        }
        opts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_guest_command_line() {
        let o = ShimOptions::parse("dom0_mem=32M -- console=hvc0 loglevel=3");
        assert_eq!(
            o,
            ShimOptions {
                dom0_pages: 8192,
                guest_cmdline: "console=hvc0 loglevel=3"
            }
        );
        assert_eq!(ShimOptions::parse("").dom0_pages, 16384);
        assert_eq!(ShimOptions::parse("dom0_mem=lots").dom0_pages, 16384);
        assert_eq!(ShimOptions::parse("dom0_mem=1G").dom0_pages, 1 << 18);
    }
}
