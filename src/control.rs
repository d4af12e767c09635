//! Run-time control, like jemalloc's `mallctl` or mimalloc's `mi_option_set`: one function,
//! [`ctl`], taking a command string, for Rust and (as `rseqmalloc_ctl`) for C.
//!
//! May call: the public API (`trim`, `stats`, `VERSION`), `config`, `guard`, `percpu`, `os`.

use crate::config::{self, SetError};
use crate::os::Msg;

/// Why [`ctl`] refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CtlError {
    /// No such command, option or statistic (C: `ENOENT`).
    Unknown,
    /// Not `key=value`, or a value the option does not accept (C: `EINVAL`).
    Invalid,
    /// The option is read at start-up only (C: `EPERM`).
    NotAtRunTime,
    /// The answer does not fit in `out` (C: `ERANGE`); nothing was written.
    TooLong,
}

impl CtlError {
    /// The `errno` value `rseqmalloc_ctl` returns for this error.
    pub fn errno(self) -> i32 {
        match self {
            CtlError::Unknown => libc::ENOENT,
            CtlError::Invalid => libc::EINVAL,
            CtlError::NotAtRunTime => libc::EPERM,
            CtlError::TooLong => libc::ERANGE,
        }
    }
}

/// Runs one control command; writes its answer (ASCII, no NUL) into `out` and returns its
/// length.
///
/// | command | effect | answer |
/// | --- | --- | --- |
/// | `KEY` (an option, e.g. `decay_ms`) | none | its value, as an option string writes it |
/// | `KEY=VALUE` | sets an option that may change at run time (`decay_ms`, `cpu_cache_bytes`, `dirty_max`, `huge_pages`, `stats`, `stats_classes`) | empty |
/// | `options` | none | every option, `key=value,…` |
/// | `version` | none | [`crate::VERSION`] |
/// | `stats.NAME` (`allocated`, `active`, `peak_active`, `resident`, `peak_resident`, `mapped`, `released`, `free`, `metadata`) | none | the figure in bytes |
/// | `stats.sent_home`, `stats.sent_home_declined`, `stats.sent_home_no_outbox` | none | owner return's object counts (see [`crate::Stats`]) |
/// | `stats.evicted` | none | objects capacity steals moved out of idle per-CPU classes (see [`crate::Stats`]) |
/// | `stats.burst_growths` | none | growths of per-CPU classes into the burst tier (see [`crate::Stats`]) |
/// | `stats.maintenance_ticks`, `stats.background_ticks` | none | maintenance ticks run, and of those the ones the background thread ran (see [`crate::Stats`]) |
/// | `purge` | drains every per-CPU cache and the central caches and returns every free page to the OS ([`crate::trim`]) | bytes released |
/// | `flush` | empties the calling thread's caches: its magazine (locked fallback) and the per-CPU slab it runs on with what other CPUs sent home to it, into the central lists | bytes moved |
///
/// White space around the command, the key and the value is ignored.
pub fn ctl(command: &[u8], out: &mut [u8]) -> Result<usize, CtlError> {
    let mut m = Msg::<1024>::empty();
    let cmd = command.trim_ascii();
    match cmd {
        b"options" => config::write_options(&mut m, &config::get()),
        b"version" => {
            m.str(crate::VERSION);
        }
        b"purge" => {
            m.dec(crate::trim() as u64);
        }
        b"flush" => {
            let _g = crate::guard::enter("rseqmalloc_ctl");
            m.dec(crate::percpu::flush_mine() as u64);
        }
        _ if cmd.starts_with(b"stats.") => {
            let s = crate::stats();
            let v = match &cmd[6..] {
                b"allocated" => s.allocated as u64,
                b"active" => s.active as u64,
                b"peak_active" => s.peak_active as u64,
                b"resident" => s.resident as u64,
                b"peak_resident" => s.peak_resident as u64,
                b"mapped" => s.mapped as u64,
                b"released" => s.released as u64,
                b"free" => s.free as u64,
                b"metadata" => s.metadata as u64,
                b"sent_home" => s.sent_home as u64,
                b"sent_home_declined" => s.sent_home_declined as u64,
                b"sent_home_no_outbox" => s.sent_home_no_outbox as u64,
                b"evicted" => s.evicted as u64,
                b"burst_growths" => s.burst_growths as u64,
                b"maintenance_ticks" => s.maintenance_ticks,
                b"background_ticks" => s.background_ticks,
                _ => return Err(CtlError::Unknown),
            };
            m.dec(v);
        }
        _ if cmd.contains(&b'=') => {
            config::set_runtime(cmd).map_err(|e| match e {
                SetError::UnknownKey => CtlError::Unknown,
                SetError::Malformed => CtlError::Invalid,
                SetError::NotAtRunTime => CtlError::NotAtRunTime,
            })?;
        }
        _ => {
            if !config::write_value(&mut m, cmd, &config::get()) {
                return Err(CtlError::Unknown);
            }
        }
    }
    let answer = m.as_bytes();
    let dest = out.get_mut(..answer.len()).ok_or(CtlError::TooLong)?;
    dest.copy_from_slice(answer);
    Ok(answer.len())
}
