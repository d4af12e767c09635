//! `realloc-growth`: many containers grown one step at a time, interleaved so
//! that a neighbour often sits right after each block: a `Vec<u64>` by push
//! (capacity doubling), a `String` by `push_str` of short pieces, and a byte
//! buffer grown *exactly* (`reserve_exact`), which reallocates on every step
//! like C code doing `realloc(p, n + k)`. Each is checked, shrunk to fit
//! (a shrinking realloc), checked again and freed.

use crate::pattern::tag;
use crate::rng::{mix, Rng};
use crate::{scaled, SEED};

/// Rounds at full scale; each grows [`GROWERS`] sets of containers.
const FULL_ROUNDS: u64 = 500;
/// Containers of each kind grown side by side.
const GROWERS: usize = 32;
/// Pieces appended to the strings, chosen by position.
const PIECES: [&str; 6] = ["a", "bc", "def", "ghij", "klmno", "pqrstuvw"];

pub fn run(scale: f64) -> u64 {
    let rounds = scaled(FULL_ROUNDS, scale, 2);
    let mut rng = Rng::new(SEED, 0);
    let mut ops = 0;
    let mut next_id = 0u64;
    for _ in 0..rounds {
        let mut growers: Vec<Grower> = (0..GROWERS)
            .map(|_| {
                next_id += 1;
                Grower::new(next_id, rng.log_uniform(16, 2048))
            })
            .collect();
        let longest = growers.iter().map(|g| g.target).max().unwrap_or(0);
        for step in 0..longest {
            for g in growers.iter_mut().filter(|g| step < g.target) {
                g.grow(step);
                ops += 3;
            }
        }
        for mut g in growers {
            g.verify();
            g.shrink();
            g.verify();
        }
    }
    ops
}

struct Grower {
    id: u64,
    target: usize,
    words: Vec<u64>,
    text: String,
    bytes: Vec<u8>,
}

impl Grower {
    fn new(id: u64, target: usize) -> Self {
        Grower {
            id,
            target,
            words: Vec::new(),
            text: String::new(),
            bytes: Vec::new(),
        }
    }

    fn word(&self, i: usize) -> u64 {
        mix(self.id) ^ i as u64
    }

    fn piece(&self, step: usize) -> &'static str {
        PIECES[(self.id as usize + step) % PIECES.len()]
    }

    /// The byte buffer's chunk for `step`: 1 to 16 bytes of one value.
    fn chunk(&self, step: usize) -> (usize, u8) {
        (1 + step % 16, tag(self.id) ^ step as u8)
    }

    fn grow(&mut self, step: usize) {
        self.words.push(self.word(step));
        self.text.push_str(self.piece(step));
        let (len, byte) = self.chunk(step);
        self.bytes.reserve_exact(len);
        self.bytes.resize(self.bytes.len() + len, byte);
    }

    fn shrink(&mut self) {
        self.words.shrink_to_fit();
        self.text.shrink_to_fit();
        self.bytes.shrink_to_fit();
    }

    fn verify(&self) {
        let words_ok = self.words.len() == self.target
            && self
                .words
                .iter()
                .enumerate()
                .all(|(i, &w)| w == self.word(i));
        let mut text = self.text.as_str();
        let mut bytes = self.bytes.as_slice();
        let mut rest_ok = true;
        for step in 0..self.target {
            let piece = self.piece(step);
            let (len, byte) = self.chunk(step);
            match (text.strip_prefix(piece), bytes.split_at_checked(len)) {
                (Some(t), Some((chunk, b))) if crate::pattern::uniform(chunk, byte) => {
                    text = t;
                    bytes = b;
                }
                _ => {
                    rest_ok = false;
                    break;
                }
            }
        }
        if !(words_ok && rest_ok && text.is_empty() && bytes.is_empty()) {
            crate::pattern::corrupted("realloc-growth", self.id, self.bytes.len());
        }
    }
}
