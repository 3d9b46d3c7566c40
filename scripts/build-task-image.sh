#!/usr/bin/env bash
# Build the development task image localhost/koji-adjutant-task:dev from Debian bookworm.
#
# No container registry is reachable on the development and CI machines, so the image is made
# from a debootstrap root and `podman import`ed. It carries the tools a buildArch or createrepo
# task runs (rpm, rpmbuild, dnf, createrepo_c, mergerepo_c, a C toolchain) and an unprivileged
# build user. Reused when present unless FORCE=1. The production image for an RPM distribution
# is built from images/Containerfile.almalinux10 instead (see docs/images.md).
set -euo pipefail

IMAGE=${IMAGE:-localhost/koji-adjutant-task:dev}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BUILD_DIR=${BUILD_DIR:-build}
PODMAN=(podman --runtime runc)

if [[ "${FORCE:-0}" != 1 ]] && "${PODMAN[@]}" image exists "$IMAGE"; then
    echo "task image $IMAGE present, reusing it (FORCE=1 rebuilds)"
    exit 0
fi

PACKAGES=(
    rpm dnf createrepo-c gcc g++ make tar gzip bzip2 xz-utils zstd cpio patch diffutils
    findutils file gawk sed grep unzip python3 ca-certificates passwd procps
)

root=$(mktemp -d "${TMPDIR:-/tmp}/koji-adjutant-rootfs.XXXXXX")
cleanup() { rm -rf --one-file-system "$root"; }
trap cleanup EXIT

echo "debootstrap bookworm into $root"
debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" bookworm "$root" "$MIRROR" \
    > "$BUILD_DIR/debootstrap.log" 2>&1 || { tail -n 40 "$BUILD_DIR/debootstrap.log"; exit 1; }

# The unprivileged user that runs rpmbuild, as mock's "mockbuild" (uid 1000, group mock 135).
chroot "$root" groupadd -g 135 mock
chroot "$root" useradd -m -u 1000 -g mock -d /builddir mockbuild
mkdir -p "$root/etc/yum.repos.d" "$root/etc/rpm" "$root/var/lib/rpm"
# Debian's rpm keeps one database per user (~/.rpmdb): root's dnf would install the buildroot
# into /root/.rpmdb and mockbuild's rpmbuild would see none of it. Pin the system location,
# as RPM distributions have it.
echo '%_dbpath /var/lib/rpm' > "$root/etc/rpm/macros.dbpath"
# Keep the image small: no apt lists or docs are needed at build time.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/*

echo "importing $IMAGE"
tar --numeric-owner -C "$root" -c . | "${PODMAN[@]}" import \
    --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
"${PODMAN[@]}" image inspect --format '{{.Id}} {{.Size}}' "$IMAGE"
