#!/usr/bin/env bash
# make release: a self-contained comfy-sandbox for a bare machine (e.g. the GPU
# box): the Swift runtime and FoundationEssentials linked statically, and
# libseccomp and libacl linked statically too, so `ldd` shows only
# glibc (and the loader). Output: dist/comfy-sandbox.
#
# How the C libraries become static: their module maps say `link "seccomp"`
# (-lseccomp). The linker takes the first -L directory that has either
# libX.so or libX.a, so a directory holding only the .a files, searched
# before the system's, makes -lseccomp resolve to libseccomp.a.
# libgcc_s (the unwinder clang links by default) is GCC's, not glibc's:
# -static-libgcc links its static twin (libgcc_eh) instead, so the binary
# needs nothing a bare glibc system might lack.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT="${SWIFT:-$(command -v swift || echo /opt/swift/usr/bin/swift)}"
SCRATCH="${SCRATCH:-.build-release}"
multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
static_dir="$PWD/$SCRATCH/static-libs"
mkdir -p "$static_dir" dist
for lib in seccomp acl; do
  archive="/usr/lib/$multiarch/lib$lib.a"
  [ -f "$archive" ] || { echo "missing $archive: apt-get install lib${lib}-dev (libacl1-dev for acl)" >&2; exit 1; }
  ln -sf "$archive" "$static_dir/lib$lib.a"
done
# SwiftPM asks pkg-config for the module maps' libraries, and pkg-config's
# `-L/usr/lib/<multiarch>` lands before any -L we add: give it .pc files of
# our own that point at the archive directory instead.
pc_dir="$PWD/$SCRATCH/pkgconfig"
mkdir -p "$pc_dir"
for pc in libseccomp:seccomp; do
  name="${pc%%:*}" lib="${pc##*:}"
  printf 'Name: %s\nDescription: static %s for make release\nVersion: 0\nLibs: -L%s -l%s\nCflags:\n' \
    "$name" "$name" "$static_dir" "$lib" > "$pc_dir/$name.pc"
done
export PKG_CONFIG_PATH="$pc_dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# The C++ runtime (swift-crypto's BoringSSL has C++ parts): the driver links
# -lstdc++ explicitly, so the archive beside the others makes it static too.
stdcxx="$(g++ -print-file-name=libstdc++.a 2>/dev/null || gcc -print-file-name=libstdc++.a)"
[ -f "$stdcxx" ] && ln -sf "$stdcxx" "$static_dir/libstdc++.a"
# lld with packed relative relocations (DT_RELR, glibc >= 2.36): the ~49,000
# R_X86_64_RELATIVE entries of a PIE this size shrink from 1.2 MB of RELA the
# loader reads at every start to 16 KB of bitmaps. Every `run` pays that start.
# Concrete generic types (KeyedDecodingContainer<Config.CodingKeys>...) through
# metadata accessors rather than by mangled name: the runtime otherwise
# demangles each one on first use and proves its conformances by scanning every
# conformance record in the binary, a third of decoding the config on `run`.
"$SWIFT" build -c release --scratch-path "$SCRATCH" --static-swift-stdlib -Xlinker -L"$static_dir" \
  -Xswiftc -Xclang-linker -Xswiftc -static-libgcc \
  -Xswiftc -use-ld=lld -Xlinker -z -Xlinker pack-relative-relocs -Xlinker --no-export-dynamic \
  -Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors
install -m 0755 "$SCRATCH/release/comfy-sandbox" dist/comfy-sandbox
echo "dist/comfy-sandbox ($(du -h dist/comfy-sandbox | cut -f1)); shared libraries it needs:"
ldd dist/comfy-sandbox | sed 's/^/  /'
if ldd dist/comfy-sandbox | grep -Eq 'lib(seccomp|cap|acl|swift|Foundation|dispatch|stdc\+\+|gcc_s)'; then
  echo "FAIL: a non-glibc library is still dynamic" >&2
  exit 1
fi
# Only FoundationEssentials: corelibs Foundation (an `import Foundation`
# anywhere, ours or a dependency's) links ICU's data too, and some 37,000
# relocations and 1,700 protocol conformances every start of the tool pays for.
# (Not grep -q: it would stop reading, and nm's SIGPIPE fails the pipeline.)
if nm dist/comfy-sandbox | grep 's10Foundation' >/dev/null; then
  echo "FAIL: corelibs Foundation is linked; import FoundationEssentials (and Glibc, Dispatch) instead" >&2
  exit 1
fi
