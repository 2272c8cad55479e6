#!/usr/bin/env bash
# Build one lab base image: debootstrap --variant=minbase + `docker import`.
#
# Called by `labctl images`; the content of this file is part of the image
# recipe hash, so any change here rebuilds the images on the next `labctl up`.
#
# Usage: build-image.sh FAMILY SUITE MIRROR SECURITY_MIRROR COMPONENTS PACKAGES TAG [TAG...]
#   FAMILY           ubuntu | debian
#   SUITE            noble | bookworm | ...
#   MIRROR           archive URL; empty = debootstrap's own default for SUITE
#   SECURITY_MIRROR  archive URL for the -security suite; empty = derived from MIRROR
#   COMPONENTS       comma-separated (main,universe)
#   PACKAGES         comma-separated list passed to debootstrap --include
#   TAG...           image references; the first is created, the others tagged
# Environment: http_proxy (the lab package cache, set by labctl), LAB_BUILD_DIR,
#   LAB_IMAGE_LABELS (space-separated key=value labels for the image).
set -euo pipefail

family=$1 suite=$2 mirror=$3 security_mirror=$4 components=$5 packages=$6
shift 6
tags=("$@")

log() { printf '[build-image %s] %s\n' "$suite" "$*" >&2; }

workdir=$(mktemp -d "${LAB_BUILD_DIR:-/var/tmp}/ssai-lab-build.XXXXXX")
rootfs=$workdir/rootfs
cleanup() {
  # debootstrap may leave /proc etc. mounted on failure
  for m in proc sys dev/pts dev; do
    if mountpoint -q "$rootfs/$m" 2>/dev/null; then umount -l "$rootfs/$m" || :; fi
  done
  rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT

# Private copy of debootstrap's scripts: Debian's debootstrap may not know the
# newest Ubuntu suites; they use the same script as every Ubuntu since gutsy.
export DEBOOTSTRAP_DIR=$workdir/debootstrap
cp -a /usr/share/debootstrap "$DEBOOTSTRAP_DIR"
if [[ ! -e $DEBOOTSTRAP_DIR/scripts/$suite ]]; then
  if [[ $family == ubuntu ]]; then
    ln -s gutsy "$DEBOOTSTRAP_DIR/scripts/$suite"
  else
    ln -s sid "$DEBOOTSTRAP_DIR/scripts/$suite"
  fi
fi

opts=(--variant=minbase --components="$components" --include="$packages")
if [[ $family == ubuntu ]]; then
  # Debian's host has no Ubuntu keyring; apt inside the image verifies
  # signatures once ubuntu-keyring (in PACKAGES) is installed.
  if [[ ! -r /usr/share/keyrings/ubuntu-archive-keyring.gpg ]]; then
    opts+=(--no-check-gpg)
  fi
fi

log "debootstrap ${opts[*]} $suite ${mirror:-<default mirror>} (proxy: ${http_proxy:-none})"
start=$SECONDS
# shellcheck disable=SC2086
debootstrap "${opts[@]}" "$suite" "$rootfs" ${mirror:+"$mirror"} >"$workdir/debootstrap.log" 2>&1 || {
  tail -n 40 "$workdir/debootstrap.log" >&2
  [[ -f $rootfs/debootstrap/debootstrap.log ]] && tail -n 40 "$rootfs/debootstrap/debootstrap.log" >&2
  exit 1
}
log "debootstrap done in $((SECONDS - start)) s"

# --- apt sources: like a stock server image (main archive + updates + security)
if [[ -z $mirror ]]; then
  # the mirror debootstrap chose by default (it wrote it into the target)
  mirror=$(awk '$1 == "deb" {print $2; exit}' "$rootfs/etc/apt/sources.list")
fi
if [[ -z $security_mirror ]]; then
  if [[ $family == debian ]]; then
    security_mirror=${mirror%/}-security
  else
    security_mirror=$mirror
  fi
fi
comps=${components//,/ }
{
  echo "# Written by the lab image builder (lab/build-image.sh)."
  echo "deb $mirror $suite $comps"
  echo "deb $mirror $suite-updates $comps"
  echo "deb $security_mirror $suite-security $comps"
} >"$rootfs/etc/apt/sources.list"

# --- cloud-image-like configuration -------------------------------------------
# Locale and timezone
# Package installs as on a minimised cloud image (Ubuntu's "minimal" images
# and the Docker base images do the same): no manual pages, documentation
# (copyright files kept) or message translations, no translated package
# descriptions in apt's lists. On top, lab only: dpkg skips fsync (a container's
# disk is scratch; nine hosts installing at once on two cores spent their time
# in fsync and man-db triggers otherwise). Production hosts keep both defaults.
mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d" "$rootfs/etc/apt/apt.conf.d"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/10-lab-minimal" <<'CONF'
# Written by the lab image builder (lab/build-image.sh).
path-exclude=/usr/share/man/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*/LC_MESSAGES/*.mo
path-exclude=/usr/share/lintian/*
force-unsafe-io
CONF
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/10-lab-no-languages"
rm -f "$rootfs/var/lib/man-db/auto-update"
find "$rootfs/usr/share/man" "$rootfs/usr/share/info" -mindepth 1 -delete 2>/dev/null || :
find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || :

echo 'LANG=C.UTF-8' >"$rootfs/etc/default/locale"
ln -sf /usr/share/zoneinfo/Etc/UTC "$rootfs/etc/localtime"
echo 'Etc/UTC' >"$rootfs/etc/timezone"

# Key-only SSH, like cloud images (Ubuntu ships the same file name).
mkdir -p "$rootfs/etc/ssh/sshd_config.d"
cat >"$rootfs/etc/ssh/sshd_config.d/60-cloudimg-settings.conf" <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
CONF
if ! grep -q '^Include /etc/ssh/sshd_config.d/' "$rootfs/etc/ssh/sshd_config"; then
  sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' "$rootfs/etc/ssh/sshd_config"
fi

# No SSH host keys baked into the image: every host generates its own at first boot.
rm -f "$rootfs"/etc/ssh/ssh_host_*
cat >"$rootfs/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate missing SSH host keys (first boot)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target ssh.service
UNIT
for t in multi-user.target ssh.service; do
  mkdir -p "$rootfs/etc/systemd/system/$t.wants"
  ln -sf ../ssh-hostkeys.service "$rootfs/etc/systemd/system/$t.wants/ssh-hostkeys.service"
done

# Empty machine-id: systemd fills it at first boot, every host gets its own.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$rootfs/var/lib/dbus/machine-id"

# Units that make no sense in a container (no consoles, no udev, no kernel
# modules, the root fs and /sys are managed by the container runtime).
mask=(
  getty.target console-getty.service getty@.service serial-getty@.service
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
  systemd-udev-trigger.service systemd-udev-settle.service
  systemd-remount-fs.service systemd-modules-load.service
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount
  sys-fs-fuse-connections.mount systemd-firstboot.service
  systemd-hwdb-update.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount
  e2scrub_reap.service e2scrub_all.timer
  systemd-ask-password-console.path systemd-ask-password-wall.path
)
for u in "${mask[@]}"; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$u"
done

# Keep the image small: no package cache, no apt lists (like cloud images;
# the first `apt-get update` fills them).
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/debootstrap
rm -f "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* 2>/dev/null || :
: >"$rootfs/etc/hostname"

changes=(
  --change 'CMD ["/sbin/init"]'
  --change 'ENV container=docker'
)
for l in ${LAB_IMAGE_LABELS:-}; do
  changes+=(--change "LABEL $l")
done

log "importing as ${tags[0]}"
tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import "${changes[@]}" - "${tags[0]}" >/dev/null
for t in "${tags[@]:1}"; do
  docker tag "${tags[0]}" "$t"
done
log "image ${tags[*]} built in $((SECONDS - start)) s"
