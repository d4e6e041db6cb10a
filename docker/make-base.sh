#!/usr/bin/env bash
# Builds a minimal runtime base image from this machine's own glibc: the files
# the compiled serve-bin links against (found with ldd), a /tmp, and an
# /etc/passwd naming the image's non-root user. For machines that cannot pull
# debian:bookworm-slim; pass the result to the Dockerfile:
#
#   docker/make-base.sh [dist/serve-bin] [local/glibc-base:1] [addon.node ...]
#   docker build --target prebuilt --build-arg BASE=local/glibc-base:1 -t serve-bin .
#
# Native addons an app loads from its node_modules link more than the binary
# does (onnxruntime-node needs libstdc++ and libgcc_s): name them after the tag
# and the system libraries they link go in too (not the addons themselves:
# those come with the app's node_modules).
#
# Prints the image id on stdout. Needs bash, ldd, tar and the docker CLI.
set -euo pipefail

binary="${1:-dist/serve-bin}"
tag="${2:-local/glibc-base:1}"
[ -x "$binary" ] || { echo "make-base: $binary is not an executable; run npm run build first" >&2; exit 2; }
addons=("${@:3}")
for addon in "${addons[@]}"; do
  [ -f "$addon" ] || { echo "make-base: no file $addon (name the .node addons an app loads)" >&2; exit 2; }
done

root="$(mktemp -d "${TMPDIR:-/tmp}/serve-bin-base.XXXXXX")"
trap 'rm -rf "$root"' EXIT

# Every absolute path ldd prints: "libc.so.6 => /lib/... (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)".
libs="$(ldd "$binary" | grep -o '/[^ ]*' | sort -u)"
[ -n "$libs" ] || { echo "make-base: ldd found no libraries for $binary (is it statically linked, or for another architecture?)" >&2; exit 1; }
# An addon's system libraries only: what it links from its own package stays with the package.
for addon in "${addons[@]}"; do
  more="$(ldd "$addon" | grep -o '/[^ ]*' | grep -E '^/(usr/)?lib(64|32)?/' || true)"
  [ -n "$more" ] || { echo "make-base: ldd found no system libraries for $addon" >&2; exit 1; }
  libs="$(printf '%s\n%s\n' "$libs" "$more" | sort -u)"
done
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib" # -L: the file itself, not the symlink
done

mkdir -p "$root/etc" "$root/tmp" "$root/app"
chmod 1777 "$root/tmp"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
serve-bin:x:10001:10001:serve-bin:/app:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
serve-bin:x:10001:
nogroup:x:65534:
GROUP
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"

tar -C "$root" --numeric-owner --owner=0 --group=0 -c . | docker import \
  --message "glibc from $(hostname) for serve-bin ($(echo $libs | tr '\n' ' '))" - "$tag" >/dev/null
docker image inspect --format '{{.Id}}' "$tag"
