//! Nothing to build: this package only names the crates whose bundled allocator sources
//! `rseqmalloc-bench` compiles as `LD_PRELOAD` libraries (see `Cargo.toml` beside it).
