//! The crate's version, in Rust ([`VERSION`]) and in the binary: every program or library that
//! contains rseqmalloc carries `rseqmalloc <version>` in its ELF `.comment` section
//! (`readelf -p .comment`, `strings`; written by `os::compiled_in_options`' assembly).

/// This rseqmalloc's version (the crate's `package.version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
