#!/usr/bin/env bash
# Builds the microvm backend's guest image (docs/sandbox.md, "The microvm backend") from
# Debian packages only:
#   <out>/vmlinuz         the kernel of Debian's linux-image-amd64, fetched with
#                         `apt-get download` and unpacked here, never installed on the host
#   <out>/initramfs.img   a gzip'd cpio (newc) holding the guest agent as /init, the virtio
#                         modules it loads (/sandflow/modules, their order in
#                         /etc/sandflow/modules), a generated
#                         /etc and the merged-/usr links; the interpreters are not in it: the
#                         guest mounts the host's /usr read-only over 9p
#   <out>/manifest        the kernel package and version, and the image's files with sizes
#
# usage: microvm-image.sh <out folder> <guest agent binary>
#
# Idempotent: the kernel package is downloaded once into <out>/debs (`rm -rf <out>` fetches
# it again), and the image is rewritten only when the agent, this script or the package
# changed. Reproducible: the same package and agent give the same bytes (files in sorted
# order, every mtime SOURCE_DATE_EPOCH or 0, uid/gid 0, gzip without a name or time).
# Without network access to Debian's archive and no package downloaded before, it says so
# and exits 0 without an image: the microvm backend then reports itself unavailable.
set -euo pipefail

out=${1:?usage: microvm-image.sh <out folder> <guest agent binary>}
agent=${2:?usage: microvm-image.sh <out folder> <guest agent binary>}
[ -x "$agent" ] || { echo "microvm-image: the guest agent $agent is not built" >&2; exit 1; }

# The kernel's modules the agent loads, dependencies first (checked below against each
# module's own `depends=`): the virtio-mmio transport (microvm's only bus), virtio-serial
# for the channel and the worker's stdout, 9p over virtio for the host's /usr.
modules=(virtio_ring virtio virtio_mmio virtio_console netfs fscache 9pnet 9pnet_virtio 9p)

mkdir -p "$out/debs"
out=$(cd "$out" && pwd)
work="$out/work"

# Which kernel package linux-image-amd64 stands for now; the archive's answer, or, offline,
# the newest one downloaded before.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}' || true)
deb=""
if [ -n "$kpkg" ]; then
    deb=$(ls "$out/debs/${kpkg}_"*.deb 2>/dev/null | sort | tail -n 1 || true)
    if [ -z "$deb" ]; then
        echo "microvm-image: downloading $kpkg (Debian's kernel for the guest; not installed)" >&2
        if ! (cd "$out/debs" && apt-get download -q "$kpkg" >/dev/null 2>&1); then
            echo "microvm-image: WARNING: apt-get download $kpkg failed (no access to Debian's archive?);" \
                 "no guest image, so the microvm backend is unavailable. Run \`make microvm-image\` once it is reachable." >&2
        fi
        deb=$(ls "$out/debs/${kpkg}_"*.deb 2>/dev/null | sort | tail -n 1 || true)
    fi
fi
[ -n "$deb" ] || deb=$(ls "$out/debs/"linux-image-*.deb 2>/dev/null | sort | tail -n 1 || true)
if [ -z "$deb" ]; then
    [ -n "$kpkg" ] || echo "microvm-image: WARNING: apt-cache knows no linux-image-amd64 (run apt-get update);" \
        "no guest image, so the microvm backend is unavailable" >&2
    exit 0
fi

stamp="$(sha256sum "$deb" "$agent" "$0" | sha256sum | cut -d' ' -f1)"
if [ -f "$out/manifest" ] && [ -f "$out/initramfs.img" ] && [ -f "$out/vmlinuz" ] &&
    grep -qx "stamp $stamp" "$out/manifest"; then
    exit 0
fi

rm -rf "$work"
mkdir -p "$work/deb" "$work/root"
dpkg-deb -x "$deb" "$work/deb"
kver=$(ls "$work/deb/lib/modules" | head -n 1)
kmods="$work/deb/lib/modules/$kver/kernel"

root="$work/root"
mkdir -p "$root"/{dev,proc,sys,tmp,usr,etc/sandflow,sandflow/modules}
# The merged-/usr links: the interpreters and their libraries come from the host's /usr.
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
install -m 0755 "$agent" "$root/init"

: > "$root/etc/sandflow/modules"
loaded=" "
for m in "${modules[@]}"; do
    f=$(find "$kmods" -name "$m.ko" | head -n 1)
    [ -n "$f" ] || { echo "microvm-image: $deb has no module $m.ko" >&2; exit 1; }
    deps=$(strings -a "$f" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' ')
    for d in $deps; do
        case "$loaded" in *" $d "*) ;; *)
            echo "microvm-image: module $m needs $d, which is not loaded before it; add it to the list" >&2
            exit 1 ;;
        esac
    done
    install -m 0644 "$f" "$root/sandflow/modules/$m.ko"
    echo "$m" >> "$root/etc/sandflow/modules"
    loaded="$loaded$m "
done

printf 'sandbox:x:65534:65534:sandbox:/tmp:/usr/sbin/nologin\n' > "$root/etc/passwd"
printf 'sandbox:x:65534:\n' > "$root/etc/group"
printf 'sandflow\n' > "$root/etc/hostname"
printf '127.0.0.1 localhost sandflow\n::1 localhost\n' > "$root/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' > "$root/etc/nsswitch.conf"
# The host's loader cache, so that libraries resolve without a search over 9p; a library
# installed on the host after the image was built is still found by the search.
[ -f /etc/ld.so.cache ] && install -m 0644 /etc/ld.so.cache "$root/etc/ld.so.cache"
# Debian's alternatives, as the links they are: some libraries are reached through them
# (numpy's libblas.so.3). Only links into /usr, which the guest shares; as the host has them
# when the image is built.
if [ -d /etc/alternatives ]; then
    mkdir -p "$root/etc/alternatives"
    for link in /etc/alternatives/*; do
        target="$(readlink "$link")" || continue
        case "$target" in
            /usr/*) ln -s "$target" "$root/etc/alternatives/$(basename "$link")" ;;
        esac
    done
fi

# cpio newc, written here (no cpio on a minimal Debian): sorted paths, fixed metadata.
epoch=${SOURCE_DATE_EPOCH:-0}
python3 - "$root" "$work/initramfs.cpio" "$epoch" <<'EOF'
import os, stat, sys
root, dest, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
paths = []
for d, dirs, files in os.walk(root):
    dirs.sort()
    for n in sorted(dirs + files):
        paths.append(os.path.relpath(os.path.join(d, n), root))
paths.sort()
ino = 1
with open(dest, "wb") as o:
    def entry(name, mode, data, nlink=1):
        global ino
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            ino, mode, 0, 0, nlink, epoch, len(data), 0, 0, 0, 0, len(nb), 0))
        ino += 1
        o.write(hdr.encode() + nb)
        o.write(b"\0" * ((4 - (110 + len(nb)) % 4) % 4))
        o.write(data)
        o.write(b"\0" * ((4 - len(data) % 4) % 4))
    for p in paths:
        full = os.path.join(root, p)
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            entry(p, stat.S_IFLNK | 0o777, os.readlink(full).encode())
        elif stat.S_ISDIR(st.st_mode):
            perm = 0o1777 if p == "tmp" else 0o755
            entry(p, stat.S_IFDIR | perm, b"", 2)
        else:
            with open(full, "rb") as f:
                entry(p, stat.S_IFREG | (st.st_mode & 0o777), f.read())
    entry("TRAILER!!!", 0, b"")
EOF
gzip -9 -n -c "$work/initramfs.cpio" > "$out/initramfs.img.new"
install -m 0644 "$work/deb/boot/vmlinuz-$kver" "$out/vmlinuz.new"
mv "$out/initramfs.img.new" "$out/initramfs.img"
mv "$out/vmlinuz.new" "$out/vmlinuz"
{
    echo "stamp $stamp"
    echo "package $(basename "$deb")"
    echo "kernel $kver"
    echo "modules ${modules[*]}"
    echo "vmlinuz $(stat -c %s "$out/vmlinuz")"
    echo "initramfs $(stat -c %s "$out/initramfs.img")"
} > "$out/manifest"
rm -rf "$work"
echo "microvm-image: $out/vmlinuz ($kver) and $out/initramfs.img ($(stat -c %s "$out/initramfs.img") bytes)" >&2
