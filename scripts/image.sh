#!/usr/bin/env bash
# Builds the hodometer container image offline and saves it as an OCI archive.
#
#   scripts/image.sh [TAG]            (default TAG: localhost/hodometer:dev)
#
# The root filesystem is assembled from this machine: the binary (HODOMETER_BIN, default
# `hodometer` built here with only `daemon` (`--no-default-features`) and the size-optimised
# `small` profile, installed as /usr/local/bin/hodometer), the shared libraries `ldd` lists for it, the CA bundle and an
# /etc/passwd with uid 1000 — nothing else. Then the Containerfile (FROM scratch) is built with
# podman (or docker when podman is absent) and saved to HODOMETER_IMAGE_TAR (default
# target/hodometer-image.tar), which `podman load`, `docker load` or `skopeo` can read.
#
# Environment:
#   HODOMETER_BIN        binary to ship (e.g. a debug build in tests); debug info is stripped.
#                        The full `hodometer` works too; the daemon-only one is smaller at rest.
#   HODOMETER_IMAGE_TAR  where the OCI archive goes
#   PODMAN_GLOBAL_FLAGS  podman's global flags [default: the ones that work offline in
#                        restricted sandboxes: --storage-driver vfs --runtime runc
#                        --cgroup-manager cgroupfs]
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-localhost/hodometer:dev}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
archive="${HODOMETER_IMAGE_TAR:-$repo/target/hodometer-image.tar}"
read -r -a podman_flags <<<"${PODMAN_GLOBAL_FLAGS:---storage-driver vfs --runtime runc --cgroup-manager cgroupfs}"

bin="${HODOMETER_BIN:-}"
if [[ -z "$bin" ]]; then
  (cd "$repo" && cargo build --profile small --locked --no-default-features --bin hodometer)
  bin="$target_dir/small/hodometer"
fi
[[ -x "$bin" ]] || { echo "image.sh: $bin is not an executable" >&2; exit 1; }

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
install -d -m 0755 "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs"
install -m 0755 "$bin" "$rootfs/usr/local/bin/hodometer"
# A debug build carries hundreds of MB of debug info the container never reads.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$rootfs/usr/local/bin/hodometer"
fi

# Every shared library the dynamic loader resolves for the binary, the loader included, at the
# same path; a static binary has none ("not a dynamic executable").
if ldd "$bin" >/dev/null 2>&1; then
  ldd "$bin" | awk '/=>/ { print $3; next } /^[[:space:]]*\// { print $1 }' | while read -r lib; do
    [[ -e "$lib" ]] || continue
    install -d -m 0755 "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
fi

bundle=/etc/ssl/certs/ca-certificates.crt
[[ -r "$bundle" ]] || { echo "image.sh: no CA bundle at $bundle (apt-get install ca-certificates)" >&2; exit 1; }
install -m 0644 "$bundle" "$rootfs$bundle"
printf 'hodometer:x:1000:1000:hodometer:/:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'hodometer:x:1000:\n' >"$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
cp "$repo/Containerfile" "$context/Containerfile"

mkdir -p "$(dirname "$archive")"
rm -f "$archive"
if command -v podman >/dev/null 2>&1; then
  podman "${podman_flags[@]}" build --quiet -t "$tag" -f "$context/Containerfile" "$context"
  podman "${podman_flags[@]}" save --format oci-archive -o "$archive" "$tag"
  size="$(podman "${podman_flags[@]}" image inspect --format '{{.Size}}' "$tag")"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  docker build -q -t "$tag" -f "$context/Containerfile" "$context"
  docker save -o "$archive" "$tag"
  size="$(docker image inspect --format '{{.Size}}' "$tag")"
else
  echo "image.sh: neither podman nor a running docker found (apt-get install podman buildah runc)" >&2
  exit 1
fi
echo "image.sh: built $tag ($size bytes), saved to $archive"
