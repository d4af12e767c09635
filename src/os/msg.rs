//! A fixed-size message buffer for the allocator's lines, built without allocating.
//!
//! A line is whatever fits: text past the capacity is cut, and the cut is shown ("…") rather
//! than silent. Room for that mark and the final newline is always kept, so the line written
//! is whole. Input that is not the allocator's own text (an option item, a path) goes in through
//! [`Msg::escaped`], which keeps the line one line: a newline, a control byte or a non-ASCII
//! byte is written as an escape (`\n`, `\u0001`).

/// The mark that ends a cut line or a cut item.
const CUT: &[u8] = "…".as_bytes();
/// Bytes kept free at the end for the cut mark and the newline.
const RESERVE: usize = CUT.len() + 1;

/// A line of at most `N` bytes (its newline and cut mark included) built from strings and
/// numbers, never allocating.
#[derive(Clone, Copy)]
pub struct Msg<const N: usize = 256> {
    buf: [u8; N],
    len: usize,
    cut: bool,
}

impl Default for Msg {
    fn default() -> Self {
        Self::new()
    }
}

impl Msg {
    /// An empty message of the usual size (256 bytes).
    pub const fn new() -> Self {
        Self::empty()
    }
}

impl<const N: usize> Msg<N> {
    /// An empty message of `N` bytes.
    pub const fn empty() -> Self {
        assert!(N > RESERVE);
        Msg {
            buf: [0; N],
            len: 0,
            cut: false,
        }
    }

    /// Bytes that still fit before the reserve.
    fn room(&self) -> usize {
        N - RESERVE - self.len
    }

    /// Appends bytes as they are (the allocator's own text); cuts at the capacity.
    pub fn bytes(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(self.room());
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self.cut |= n < s.len();
        self
    }

    /// Appends a string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Appends outside input so that it stays on this line, readable and valid inside a JSON
    /// string: printable ASCII as is, except a backslash and a double quote (`\\`, `\"`);
    /// newline, tab and carriage return as `\n`, `\t`, `\r`; any other byte as `\u00HH`. At
    /// most `max` bytes are appended; if the input does not fit, what fits is followed by "…".
    pub fn escaped(&mut self, s: &[u8], max: usize) -> &mut Self {
        let limit = max.min(self.room());
        let mut used = 0;
        for (i, &b) in s.iter().enumerate() {
            let mut e = [0u8; 6];
            let n = match b {
                b'\\' | b'"' => {
                    e[0] = b'\\';
                    e[1] = b;
                    2
                }
                b'\n' | b'\t' | b'\r' => {
                    e[0] = b'\\';
                    e[1] = match b {
                        b'\n' => b'n',
                        b'\t' => b't',
                        _ => b'r',
                    };
                    2
                }
                0x20..=0x7e => {
                    e[0] = b;
                    1
                }
                _ => {
                    e[..4].copy_from_slice(b"\\u00");
                    e[4] = b"0123456789abcdef"[(b >> 4) as usize];
                    e[5] = b"0123456789abcdef"[(b & 15) as usize];
                    6
                }
            };
            // The last byte may use the room kept for the mark; any other needs room for it.
            let need = if i + 1 == s.len() { n } else { n + CUT.len() };
            if used + need > limit {
                if self.room() >= CUT.len() {
                    self.buf[self.len..self.len + CUT.len()].copy_from_slice(CUT);
                    self.len += CUT.len();
                } else {
                    self.cut = true; // `line` puts the mark in the reserve
                }
                return self;
            }
            self.buf[self.len..self.len + n].copy_from_slice(&e[..n]);
            self.len += n;
            used += n;
        }
        self
    }

    /// Appends `v` in decimal.
    pub fn dec(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.bytes(&tmp[i..])
    }

    /// Appends `v` as `0x…` in lower-case hexadecimal.
    pub fn hex(&mut self, v: u64) -> &mut Self {
        let mut tmp = [0u8; 18];
        let mut i = tmp.len();
        let mut v = v;
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        i -= 1;
        tmp[i] = b'x';
        i -= 1;
        tmp[i] = b'0';
        self.bytes(&tmp[i..])
    }

    /// The bytes written so far (no newline, no cut mark).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The message as a whole line: the text, "…" if it was cut, and a newline.
    pub fn line(&self) -> Line<N> {
        let mut l = Line {
            buf: self.buf,
            len: self.len,
        };
        if self.cut {
            l.buf[l.len..l.len + CUT.len()].copy_from_slice(CUT);
            l.len += CUT.len();
        }
        l.buf[l.len] = b'\n';
        l.len += 1;
        l
    }
}

/// A finished line (see [`Msg::line`]).
pub struct Line<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Line<N> {
    /// The line's bytes, newline included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_always_whole_and_one_line() {
        let mut m = Msg::new();
        m.str("prefix '")
            .escaped(b"a\nb\\c\"\x01\xff", 100)
            .str("'");
        assert_eq!(
            m.line().as_bytes(),
            b"prefix 'a\\nb\\\\c\\\"\\u0001\\u00ff'\n"
        );
        let mut m = Msg::new();
        m.str("x").escaped(&[b'k'; 300], 20).str(" tail");
        assert_eq!(m.line().as_bytes(), "xkkkkkkkkkkkkkkkkk… tail\n".as_bytes());
        let mut m = Msg::new();
        for _ in 0..100 {
            m.str("word ");
        }
        let l = m.line();
        assert_eq!(l.as_bytes().len(), 256);
        assert!(l.as_bytes().ends_with("…\n".as_bytes()));
        let mut m = Msg::<16>::empty();
        m.escaped(b"\n\n\n\n\n\n\n\n", 100);
        let l = m.line();
        assert!(
            l.as_bytes().ends_with("…\n".as_bytes()),
            "{:?}",
            l.as_bytes()
        );
        assert_eq!(l.as_bytes().iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
