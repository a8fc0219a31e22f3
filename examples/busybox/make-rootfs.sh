#!/bin/sh
# Write a tiny root filesystem tarball: the host's static busybox with all its
# applets, plus passwd/group files. Usage: make-rootfs.sh OUT.tar
set -eu
out=$(realpath "$1")
busybox=$(command -v busybox) || { echo "install busybox-static" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/proc" "$root/sys" \
    "$root/dev" "$root/home/app"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
cat > "$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<GROUP
root:x:0:
app:x:1000:
extra:x:2000:app
nogroup:x:65534:
GROUP
chown 1000:1000 "$root/home/app"
chmod 1777 "$root/tmp"
tar -C "$root" -cf "$out" .
