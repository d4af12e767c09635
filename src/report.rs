//! What the allocator prints about itself: the start-up line (`verbose=on`) and the statistics
//! at exit (`stats=text|json`, to stderr or `stats_file`).
//!
//! Owns: the report formats. The text report is a few lines, each starting with
//! `rseqmalloc[<pid>]: `, with sizes in KiB/MiB/GiB (three significant digits); per-class lines
//! only with `stats_classes=on`. The JSON report is one object on one line with exact byte
//! counts, every class, and a schema version ([`JSON_SCHEMA`]) bumped whenever a field changes
//! meaning or goes away (added fields do not bump it).
//!
//! May call: the public API (`crate::malloc`/`free`, to choose the rseq mode before the
//! start-up line), `stats`, `config`, `os`, `size_class`.

use crate::config::{self, StatsAtExit};
use crate::os::{self, Msg};
use crate::size_class::NUM_CLASSES;
use crate::stats::{stats, Stats};
use crate::{RseqMode, VERSION};

/// Version of the JSON report's layout: 2 added `schema`, `version`, `pid`, the peaks and
/// `options` to the unversioned layout 1; 3 added `owned_spans_taken` and
/// `owned_spans_given_back` (`owned_spans=on`); 4 added `owned_spans_reclassed`; 5 added
/// `owned_classes_routed`; 6 added `owned_classes_unrouted`.
pub const JSON_SCHEMA: u32 = 6;

/// Where a report goes: the allocator's stderr channel, or a file of its own.
#[derive(Clone, Copy)]
enum Sink {
    Stderr,
    File(i32),
}

impl Sink {
    /// Writes `m` as one line, with one `write(2)`.
    fn line<const N: usize>(self, m: &Msg<N>) {
        match self {
            Sink::Stderr => os::write_stderr(m),
            Sink::File(fd) => os::output::write_fd(fd, m.line().as_bytes()),
        }
    }
}

/// A report line of up to 1 KiB (the options line is the longest).
type ReportLine = Msg<1024>;

/// A new report line, started with `rseqmalloc[<pid>]: `.
fn line() -> ReportLine {
    let mut m = ReportLine::empty();
    m.str("rseqmalloc[").dec(os::pid() as u64).str("]: ");
    m
}

/// Appends `v` bytes in binary units with three significant digits (`512 B`, `1.50 KiB`,
/// `12.3 MiB`, `640 GiB`), rounded down.
fn human<const N: usize>(m: &mut Msg<N>, v: u64) -> &mut Msg<N> {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if v < 1024 {
        return m.dec(v).str(" B");
    }
    let mut shift = 10;
    while shift < 40 && v >> (shift + 10) != 0 {
        shift += 10;
    }
    let hundredths = ((v as u128 * 100) >> shift) as u64;
    let int = hundredths / 100;
    if int >= 100 {
        m.dec(int);
    } else if int >= 10 {
        m.dec(int).str(".").dec(hundredths / 10 % 10);
    } else {
        let frac = hundredths % 100;
        m.dec(int).str(if frac < 10 { ".0" } else { "." }).dec(frac);
    }
    m.str(" ").str(UNITS[shift / 10])
}

/// A report line of labelled sizes, each label followed by its value in binary units (a
/// value of `usize::MAX` stands for none: the label ends the line).
fn sizes(parts: &[(&str, usize)]) -> ReportLine {
    let mut m = line();
    for &(label, v) in parts {
        m.str(label);
        if v != usize::MAX {
            human(&mut m, v as u64);
        }
    }
    m
}

/// `rseq mode glibc (mm_cid)`, or that nothing was allocated yet.
fn mode<const N: usize>(m: &mut Msg<N>, s: &Stats) {
    if s.rseq_mode == RseqMode::Uninitialized {
        m.str("rseq mode: no allocations yet");
    } else {
        m.str("rseq mode ")
            .str(s.rseq_mode.name())
            .str(" (")
            .str(s.id_kind())
            .str(")");
    }
}

/// Class `c`'s size, objects in use and objects cached, each after its label in `labels`
/// (the fourth ends the entry).
fn class<const N: usize>(m: &mut Msg<N>, s: &Stats, c: usize, labels: [&str; 4]) {
    m.str(labels[0])
        .dec(s.class_size[c] as u64)
        .str(labels[1])
        .dec(s.class_in_use[c] as u64)
        .str(labels[2])
        .dec(s.class_cached[c] as u64)
        .str(labels[3]);
}

/// The text report: five lines, and one per class in use with `stats_classes=on`.
fn print_text(s: &Stats, to: Sink, classes: bool) {
    let mut m = line();
    m.str("rseqmalloc ").str(VERSION).str(", ");
    mode(&mut m, s);
    m.str(", ")
        .dec(s.slabs_in_use as u64)
        .str(" of ")
        .dec(s.slabs as u64)
        .str(" per-CPU slabs in use");
    to.line(&m);

    to.line(&sizes(&[
        ("allocated ", s.allocated),
        (", active ", s.active),
        (" (peak ", s.peak_active),
        ("), resident ", s.resident),
        (" (peak ", s.peak_resident),
        (")", usize::MAX),
    ]));
    to.line(&sizes(&[
        ("mapped ", s.mapped),
        (", free ", s.free),
        (" (released ", s.released),
        ("), metadata ", s.metadata),
        (", per-CPU caches ", s.cpu_caches().iter().sum()),
    ]));

    let mut m = line();
    m.str("restarts ")
        .dec(s.restarts)
        .str(" (batch sections ")
        .dec(s.batch_restarts)
        .str("), fallback lock operations ")
        .dec(s.fallback_ops as u64)
        .str(", drains skipped ")
        .dec(s.drains_skipped as u64)
        .str(", objects sent home ")
        .dec(s.sent_home as u64)
        .str(" (declined ")
        .dec(s.sent_home_declined as u64)
        .str(", no outbox ")
        .dec(s.sent_home_no_outbox as u64)
        .str("), objects evicted ")
        .dec(s.evicted as u64)
        .str(", burst growths ")
        .dec(s.burst_growths as u64)
        .str(", owned spans taken ")
        .dec(s.owned_spans_taken as u64)
        .str(" (given back whole ")
        .dec(s.owned_spans_given_back as u64)
        .str(", turned over to another class ")
        .dec(s.owned_spans_reclassed as u64)
        .str("), small classes routed to owned spans ")
        .dec(s.owned_classes_routed as u64)
        .str(" (unrouted ")
        .dec(s.owned_classes_unrouted as u64)
        .str(")")
        .str(", maintenance ticks ")
        .dec(s.maintenance_ticks)
        .str(" (background thread ")
        .dec(s.background_ticks)
        .str(")");
    to.line(&m);

    let mut m = line();
    m.str("options ");
    config::write_options(&mut m, &config::get());
    to.line(&m);

    if classes {
        for c in 1..NUM_CLASSES {
            if s.class_in_use[c] + s.class_cached[c] > 0 {
                let mut m = line();
                class(&mut m, s, c, ["class ", " B: ", " in use, ", " cached"]);
                to.line(&m);
            }
        }
    }
}

/// Bytes of the JSON report at most: 100 classes of at most 70 bytes, 64 cpu figures of at
/// most 21, the options (under 1 KiB with a long `stats_file`) and the rest well under 2 KiB.
const JSON_MAX: usize = 16 << 10;

/// The JSON report: one object on one line, exact bytes, written at once.
fn print_json(s: &Stats, to: Sink) {
    let mut m = Msg::<JSON_MAX>::empty();
    m.str("{\"rseqmalloc\":{\"schema\":")
        .dec(JSON_SCHEMA as u64)
        .str(",\"version\":\"")
        .str(VERSION)
        .str("\",\"pid\":")
        .dec(os::pid() as u64)
        .str(",\"rseq_mode\":\"")
        .str(s.rseq_mode.name())
        .str("\",\"uses_mm_cid\":")
        .str(if s.uses_mm_cid { "true" } else { "false" });
    for (k, v) in [
        ("allocated", s.allocated as u64),
        ("active", s.active as u64),
        ("peak_active", s.peak_active as u64),
        ("resident", s.resident as u64),
        ("peak_resident", s.peak_resident as u64),
        ("mapped", s.mapped as u64),
        ("released", s.released as u64),
        ("free", s.free as u64),
        ("metadata", s.metadata as u64),
        ("restarts", s.restarts),
        ("batch_restarts", s.batch_restarts),
        ("fallback_ops", s.fallback_ops as u64),
        ("drains_skipped", s.drains_skipped as u64),
        ("sent_home", s.sent_home as u64),
        ("sent_home_declined", s.sent_home_declined as u64),
        ("sent_home_no_outbox", s.sent_home_no_outbox as u64),
        ("evicted", s.evicted as u64),
        ("burst_growths", s.burst_growths as u64),
        ("owned_spans_taken", s.owned_spans_taken as u64),
        ("owned_spans_given_back", s.owned_spans_given_back as u64),
        ("owned_spans_reclassed", s.owned_spans_reclassed as u64),
        ("owned_classes_routed", s.owned_classes_routed as u64),
        ("owned_classes_unrouted", s.owned_classes_unrouted as u64),
        ("maintenance_ticks", s.maintenance_ticks),
        ("background_ticks", s.background_ticks),
        ("slabs", s.slabs as u64),
        ("slabs_in_use", s.slabs_in_use as u64),
    ] {
        m.str(",\"").str(k).str("\":").dec(v);
    }
    m.str(",\"options\":\"");
    config::write_options(&mut m, &config::get());
    m.str("\",\"cpu_cache_bytes\":[");
    for (i, b) in s.cpu_caches().iter().enumerate() {
        if i > 0 {
            m.str(",");
        }
        m.dec(*b as u64);
    }
    m.str("],\"classes\":[");
    for c in 1..NUM_CLASSES {
        if c > 1 {
            m.str(",");
        }
        class(
            &mut m,
            s,
            c,
            ["{\"size\":", ",\"in_use\":", ",\"cached\":", "}"],
        );
    }
    m.str("]}}");
    to.line(&m);
}

/// Opens `stats_file` for this process: `%p` becomes the pid, `%%` a `%`.
fn open_stats_file(pattern: &[u8]) -> Option<i32> {
    let mut path = [0u8; 4200];
    let mut n = 0;
    let mut i = 0;
    while i < pattern.len() {
        let mut pid = Msg::<32>::empty();
        let piece: &[u8] = match (pattern[i], pattern.get(i + 1)) {
            (b'%', Some(b'p')) => {
                i += 2;
                pid.dec(os::pid() as u64).as_bytes()
            }
            (b'%', Some(b'%')) => {
                i += 2;
                b"%"
            }
            _ => {
                i += 1;
                &pattern[i - 1..i]
            }
        };
        path.get_mut(n..n + piece.len())?.copy_from_slice(piece);
        n += piece.len();
    }
    *path.get_mut(n)? = 0;
    let path = core::ffi::CStr::from_bytes_until_nul(&path).ok()?;
    os::create_file(path)
}

/// Prints the statistics as the options say (nothing with `stats=none`).
fn print_at_exit() {
    let opts = config::get();
    if opts.stats != StatsAtExit::None {
        print_report(&opts);
    }
}

/// The report at exit, out of line: its figures take kilobytes of stack, which every
/// process's exit touched (a page fault per stack page, about ten) even with `stats=off`
/// while this was inlined into [`print_at_exit`].
#[cold]
#[inline(never)]
fn print_report(opts: &config::Options) {
    let mut to = Sink::Stderr;
    if let Some(pattern) = opts.stats_file {
        match open_stats_file(pattern) {
            Some(fd) => to = Sink::File(fd),
            None => {
                let mut m = Msg::new();
                m.str("rseqmalloc: cannot create stats_file '")
                    .escaped(pattern, 160)
                    .str("'; the report follows on stderr");
                os::write_stderr(&m);
            }
        }
    }
    let s = stats();
    match opts.stats {
        StatsAtExit::Json => print_json(&s, to),
        _ => print_text(&s, to, opts.stats_classes),
    }
    if let Sink::File(fd) = to {
        os::close(fd);
    }
}

extern "C" fn at_exit() {
    print_at_exit();
}

/// Start-up, after the options are loaded: registers the report at exit (it checks `stats`
/// then, which may have changed at run time) and prints the `verbose` line.
pub fn at_start() {
    os::at_exit(at_exit);
    if config::get().verbose {
        // The rseq mode is chosen by the first allocation.
        // SAFETY: a pointer `malloc` just returned, freed once.
        unsafe { crate::free(crate::malloc(16)) };
        let s = stats();
        let mut m = line();
        m.str("rseqmalloc ").str(VERSION).str(", ");
        mode(&mut m, &s);
        m.str(", options ");
        config::write_options(&mut m, &config::get());
        Sink::Stderr.line(&m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units_with_three_digits() {
        for (v, text) in [
            (0u64, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (1536, "1.50 KiB"),
            (1024 + 10, "1.00 KiB"),
            (1024 + 11, "1.01 KiB"),
            (12_900_000, "12.3 MiB"),
            (500 << 20, "500 MiB"),
            (3 << 30, "3.00 GiB"),
            (5 << 40, "5.00 TiB"),
            (u64::MAX, "16777215 TiB"),
        ] {
            let mut m = Msg::new();
            human(&mut m, v);
            assert_eq!(core::str::from_utf8(m.as_bytes()).unwrap(), text, "{v}");
        }
    }
}
