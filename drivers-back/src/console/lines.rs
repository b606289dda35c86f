//! Cuts a domain's console output into whole lines, each prefixed by the domain's name,
//! so that the output of several domains interleaves on one serial line only at line
//! boundaries (xenconsoled writes each domain to its own log or pty instead).
//!
//! A line ends at `\n` or after [`LINE_MAX`] bytes of text, whichever comes first; the
//! rest of a long line continues on the next prefixed line. Nothing is lost or
//! reordered. Because a guest must not be able to forge another domain's prefix or
//! drive the terminal, carriage returns are dropped (guests commonly end lines with
//! `\r\n`) and other control characters except tab are shown as `.`.

use alloc::vec::Vec;

/// Most text bytes on one output line (the prefix not counted).
pub const LINE_MAX: usize = 256;

/// One domain's partial output line.
#[derive(Debug)]
pub struct LineAssembler {
    /// `"name| "` followed by the current line's text.
    line: Vec<u8>,
    prefix_len: usize,
}

impl LineAssembler {
    /// An assembler prefixing lines with `"name| "`.
    pub fn new(name: &str) -> Self {
        let mut line = Vec::with_capacity(name.len() + 2 + LINE_MAX + 1);
        line.extend(name.bytes().map(shown));
        line.extend_from_slice(b"| ");
        let prefix_len = line.len();
        Self { line, prefix_len }
    }

    /// Adds output bytes; calls `sink` with each line completed, `\n` included.
    pub fn push(&mut self, bytes: &[u8], sink: &mut impl FnMut(&[u8])) {
        for &b in bytes {
            match b {
                b'\n' => self.emit(sink),
                b'\r' => {}
                _ => {
                    self.line.push(shown(b));
                    if self.line.len() - self.prefix_len == LINE_MAX {
                        self.emit(sink);
                    }
                }
            }
        }
    }

    /// Whether a partial line is waiting for its end.
    pub fn is_partial(&self) -> bool {
        self.line.len() > self.prefix_len
    }

    /// Emits the partial line, if any, as a whole line (on disconnect).
    pub fn flush(&mut self, sink: &mut impl FnMut(&[u8])) {
        if self.is_partial() {
            self.emit(sink);
        }
    }

    fn emit(&mut self, sink: &mut impl FnMut(&[u8])) {
        self.line.push(b'\n');
        sink(&self.line);
        self.line.truncate(self.prefix_len);
    }
}

/// The byte written to the serial line for output byte `b`.
fn shown(b: u8) -> u8 {
    if (b < 0x20 && b != b'\t') || b == 0x7f {
        b'.'
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec;

    fn run(name: &str, chunks: &[&[u8]], flush: bool) -> std::vec::Vec<String> {
        let mut a = LineAssembler::new(name);
        let mut out = vec![];
        let mut sink = |l: &[u8]| out.push(String::from_utf8(l.to_vec()).unwrap());
        for c in chunks {
            a.push(c, &mut sink);
        }
        if flush {
            a.flush(&mut sink);
        }
        out
    }

    #[test]
    fn whole_lines_with_prefix_across_chunks() {
        let out = run("d1", &[b"hel", b"lo\nwor", b"ld\r\n", b"tail"], false);
        assert_eq!(out, ["d1| hello\n", "d1| world\n"]);
        let out = run("d1", &[b"hel", b"lo\nwor", b"ld\r\n", b"tail"], true);
        assert_eq!(out, ["d1| hello\n", "d1| world\n", "d1| tail\n"]);
        assert_eq!(run("d1", &[b"\n"], true), ["d1| \n"], "empty lines kept");
        assert!(run("d1", &[b""], true).is_empty(), "nothing to flush");
    }

    #[test]
    fn long_lines_cut_at_line_max_without_loss() {
        let text: std::vec::Vec<u8> = (0..LINE_MAX * 2 + 10)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let mut input = text.clone();
        input.push(b'\n');
        let out = run("x", &[&input], false);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].len(), 3 + LINE_MAX + 1);
        assert_eq!(out[1].len(), 3 + LINE_MAX + 1);
        let joined: String = out.iter().map(|l| &l[3..l.len() - 1]).collect();
        assert_eq!(joined.as_bytes(), &text[..]);
        // Exactly LINE_MAX then newline: the cut line, then an empty one.
        let exact = [b'z'; LINE_MAX];
        assert_eq!(run("x", &[&exact, b"\n"], false).len(), 2);
    }

    #[test]
    fn control_characters_cannot_forge_a_prefix() {
        let out = run("d1", &[b"ok\rd2| forged\x1b[2K\x07\tend\n"], false);
        assert_eq!(out, ["d1| okd2| forged.[2K.\tend\n"]);
        let out = run("evil\nname", &[b"x\n"], false);
        assert_eq!(out, ["evil.name| x\n"]);
    }
}
