#!/bin/sh
# Builds librseqmalloc and installs it for C and C++ programs that link it directly:
#
#   scripts/install.sh --prefix DIR [--libdir DIR] [--static]
#
# installs
#   DIR/lib/librseqmalloc.so.VERSION, librseqmalloc.so.0 -> it, librseqmalloc.so -> .so.0
#   DIR/lib/librseqmalloc.a                  (with --static)
#   DIR/include/rseqmalloc.h
#   DIR/lib/pkgconfig/rseqmalloc.pc          (so: cc main.c $(pkg-config --cflags --libs rseqmalloc))
#
# The pkg-config file adds an rpath to DIR/lib, so a program linked with it runs without
# LD_LIBRARY_PATH or ldconfig. Builds with cargo into $CARGO_TARGET_DIR (default: target/).
set -eu

usage() {
    echo "usage: $0 --prefix DIR [--libdir DIR] [--static]" >&2
    exit 2
}

prefix=
libdir=
static=no
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --libdir) [ $# -ge 2 ] || usage; libdir=$2; shift 2 ;;
    --libdir=*) libdir=${1#--libdir=}; shift ;;
    --static) static=yes; shift ;;
    -h | --help) usage ;;
    *) echo "$0: unknown argument '$1'" >&2; usage ;;
    esac
done
[ -n "$prefix" ] || usage
case "$prefix" in /*) ;; *) prefix=$(pwd)/$prefix ;; esac
[ -n "$libdir" ] || libdir=$prefix/lib
includedir=$prefix/include

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$(pwd)/$target ;; esac
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/allocator-shim/Cargo.toml" | head -n 1)
major=${version%%.*}
cargo=${CARGO:-cargo}

"$cargo" build --release --manifest-path "$root/Cargo.toml" -p rseqmalloc-shim --lib
if [ "$static" = yes ]; then
    # The same library as an archive; the system libraries it needs go to Libs.private.
    "$cargo" rustc --release --manifest-path "$root/Cargo.toml" -p rseqmalloc-shim --lib \
        --crate-type staticlib
fi

mkdir -p "$libdir/pkgconfig" "$includedir"
install -m 0755 "$target/release/librseqmalloc.so" "$libdir/librseqmalloc.so.$version"
ln -sf "librseqmalloc.so.$version" "$libdir/librseqmalloc.so.$major"
ln -sf "librseqmalloc.so.$major" "$libdir/librseqmalloc.so"
if [ "$static" = yes ]; then
    install -m 0644 "$target/release/librseqmalloc.a" "$libdir/librseqmalloc.a"
fi
install -m 0644 "$root/allocator-shim/include/rseqmalloc.h" "$includedir/rseqmalloc.h"
# pkg-config splits its output at spaces: escape them in the paths.
esc() { printf '%s' "$1" | sed 's/ /\\ /g'; }
cat >"$libdir/pkgconfig/rseqmalloc.pc" <<PC
prefix=$(esc "$prefix")
libdir=$(esc "$libdir")
includedir=$(esc "$includedir")

Name: rseqmalloc
Description: General-purpose malloc for Linux: per-CPU caches guarded by restartable sequences
URL: https://github.com/rseqmalloc/rseqmalloc
Version: $version
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lrseqmalloc
Libs.private: -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
Cflags: -I\${includedir}
PC
echo "installed rseqmalloc $version into $prefix"
