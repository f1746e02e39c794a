#!/bin/bash
# tests/debian_package.sh - the Debian package, end to end:
#   build       in a clean Debian 12 root (debootstrap) holding only what "apt-get build-dep ./"
#               installs: dpkg-buildpackage -b -us -uc on a copy of the tree, with decoy
#               cargo/rustc first in PATH; the binary must be built by Debian's rustc-web
#   lintian     no errors, no warnings but initial-upload-closes-no-bugs
#   depends     Depends: rrdtool, libsqlite3-0 (the binary links Debian's SQLite, no bundled
#               copy), corosync's and libqb's libraries; Recommends: rrdcached; no useless link
#   filelist    exactly the expected files, nothing of pve-cluster's
#   maintscripts  syntax, drop-in removal on remove/purge, no enable/start
#   manpage     every flag of --help is in pmxcfs-ng(8); versions agree
#   install     apt-get install ./pmxcfs-ng_*.deb into a fresh Debian 12 root
#               (debootstrap), a fake pve-cluster's files stay untouched
#   daemon      the installed pmxcfs-ng runs in local mode on a temporary root:
#               write, read, .debug, READY=1 (if built in), SIGTERM -> exit 0, data committed
#   switch      pmxcfs-ng-switch enable/status/disable (systemctl stubbed)
#   purge       apt-get purge removes every file of the package and the drop-in
#   systemd     under a real systemd (systemd-nspawn boots a Debian root): on a node with a
#               stand-in pve-cluster, "pmxcfs-ng-switch enable" makes pve-cluster.service run
#               pmxcfs-ng (Type=notify, units ordered after it see /etc/pve mounted), the data
#               survives restarts, "disable" and "apt-get remove" restore the original; on a
#               node without it, pmxcfs-ng.service runs and purge stops and removes it
#
# Needs root (chroot, mount, FUSE, systemd-nspawn), Debian's mirror and crates.io. Installs on
# the host what it lacks: dpkg-dev, lintian, debootstrap, python3, systemd-container.
# Caches (reused by later runs): the finished Debian roots as tarballs, downloaded .debs and
# cargo's target directory, under $PMXCFS_NG_TEST_CACHE (default /var/cache/pmxcfs-ng-test);
# CARGO_TARGET_DIR, if set, is used instead of the cache's target directory.
# Prints "debian-package: N passed, N failed" last; exits non-zero on any failure.

set -u


SRC=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${PMXCFS_NG_TEST_CACHE:-/var/cache/pmxcfs-ng-test}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
SUITE=bookworm
T0=$(date +%s)

PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()

log() { echo "debian-package: $*"; }
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }
pass() { PASSED=$((PASSED + 1)); log "PASS $1 ($(elapsed))"; }
fail() { FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); log "FAIL $1: $2 ($(elapsed))"; }
skip() { SKIPPED=$((SKIPPED + 1)); log "SKIP $1: $2"; }

finish() {
    log "total $(elapsed)"
    [ ${#FAILED_NAMES[@]} -eq 0 ] || log "failed: ${FAILED_NAMES[*]}"
    if [ "$SKIPPED" -gt 0 ]; then
        echo "debian-package: $PASSED passed, $FAILED failed, $SKIPPED skipped"
    else
        echo "debian-package: $PASSED passed, $FAILED failed"
    fi
    [ "$FAILED" -eq 0 ]
    exit $?
}

if [ "$(id -u)" != 0 ]; then
    fail setup "must run as root (chroot, mount, FUSE)"
    finish
fi

WORK=$(mktemp -d /tmp/pmxcfs-ng-debtest.XXXXXX)
CHROOT=$WORK/root
DAEMON_PID=
LISTENER_PID=
NSPAWN_PID=

# Unmount everything below $WORK (deepest first), then delete it without crossing into
# any file system that is somehow still mounted.
cleanup() {
    set +e
    [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && sleep 1 && kill -KILL "$DAEMON_PID" 2>/dev/null
    [ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null
    if [ -n "$NSPAWN_PID" ]; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null
    fi
    local m
    for _ in 1 2 3; do
        awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        done
    done
    if awk -v w="$WORK/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
        echo "debian-package: WARNING: mounts remain below $WORK; not deleting it" >&2
    else
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
need=()
command -v dpkg-buildpackage >/dev/null || need+=(dpkg-dev)
command -v lintian >/dev/null || need+=(lintian)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v python3 >/dev/null || need+=(python3)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$WORK/apt-tools.log" 2>&1; then
        tail -20 "$WORK/apt-tools.log"
        fail setup "could not install ${need[*]}"
        finish
    fi
fi
mkdir -p "$CACHE"

# ---------------------------------------------------------------- Debian roots
# The mirror apt already uses (deb.debian.org unless configured otherwise).
MIRROR=$(sed -n 's/^URIs: *\([^ ]*\/debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
ARCH=$(dpkg --print-architecture)
mkdir -p "$CACHE/archives"

# in_root DIR CMD...: run CMD in the Debian root DIR with apt's downloads cached.
in_root() {
    local dir=$1 rc
    shift
    cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null
    find "$CACHE/archives" -name '*.deb' -exec cp -n {} "$dir/var/cache/apt/archives/" \;
    chroot "$dir" env DEBIAN_FRONTEND=noninteractive PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
    rc=$?
    find "$dir/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n {} "$CACHE/archives/" \;
    rm -f "$dir"/var/cache/apt/archives/*.deb
    return $rc
}

# make_root DIR NAME [PACKAGE...]: a Debian 12 root in DIR: minbase (debootstrap), plus
# PACKAGEs; each stage is kept as $CACHE/$SUITE-NAME-$ARCH.tar and reused by later runs.
make_root() {
    local dir=$1 name=$2 tarball
    shift 2
    tarball=$CACHE/$SUITE-$name-$ARCH.tar
    mkdir -p "$dir"
    if [ -s "$tarball" ]; then
        log "unpacking cached Debian root $(basename "$tarball")"
        tar -C "$dir" -xpf "$tarball" || return 1
        return 0
    fi
    if [ "$name" = minbase ]; then
        log "debootstrap --variant=minbase $SUITE from $MIRROR (cached afterwards)"
        debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
            { tail -20 "$WORK/debootstrap.log"; return 1; }
        mount -t proc proc "$dir/proc"
        in_root "$dir" apt-get update -qq >>"$WORK/debootstrap.log" 2>&1
        local rc=$?
        umount "$dir/proc"
        [ $rc = 0 ] || { tail -20 "$WORK/debootstrap.log"; return 1; }
    else
        make_root "$dir" minbase || return 1
        log "adding $* to the Debian root (cached afterwards)"
        mount -t proc proc "$dir/proc"
        in_root "$dir" apt-get install -y -qq --no-install-recommends "$@" >"$WORK/root-$name.log" 2>&1
        local rc=$?
        umount "$dir/proc"
        [ $rc = 0 ] || { tail -20 "$WORK/root-$name.log"; return 1; }
    fi
    rm -f "$dir"/var/cache/apt/archives/*.deb
    tar -C "$dir" -cpf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
}

# install_deb DIR: apt-get install ./pmxcfs-ng_*.deb in the root DIR (dependencies from the mirror).
install_deb() {
    local dir=$1
    cp "$DEB" "$dir/root/"
    { in_root "$dir" apt-get update -qq &&
        in_root "$dir" apt-get install -y --no-install-recommends "/root/$(basename "$DEB")"; } >"$WORK/install.log" 2>&1 &&
        chroot "$dir" dpkg -s pmxcfs-ng | grep -q '^Status: install ok installed'
}

# A stand-in for pve-cluster's files, which the package must never touch.
fake_pve_cluster() {
    local dir=$1
    cat >"$dir/usr/bin/pmxcfs" <<'EOF'
#!/bin/sh
# stand-in for pve-cluster's pmxcfs: forks, writes its pid file
mkdir -p /etc/pve
( exec sleep infinity ) &
echo $! >/run/pve-cluster.pid
EOF
    chmod 0755 "$dir/usr/bin/pmxcfs"
    mkdir -p "$dir/lib/systemd/system"
    cat >"$dir/lib/systemd/system/pve-cluster.service" <<'EOF'
[Unit]
Description=The Proxmox VE cluster filesystem (stand-in)
ConditionFileIsExecutable=/usr/bin/pmxcfs
DefaultDependencies=no
Before=shutdown.target
Conflicts=shutdown.target
After=network.target

[Service]
ExecStart=/usr/bin/pmxcfs
KillMode=mixed
Restart=on-failure
TimeoutStopSec=10
Type=forking
PIDFile=/run/pve-cluster.pid

[Install]
WantedBy=multi-user.target
EOF
}

# The security suite beside the main one, as a fresh Debian 12 installation has it
# (rustc-web/cargo-web >= 1.87 are only there).
SECURITY_MIRROR=$(sed -n 's/^URIs: *\([^ ]*\/debian-security\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$SECURITY_MIRROR" ] || SECURITY_MIRROR=$(awk '$1 == "deb" && $2 ~ /\/debian-security\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
[ -n "$SECURITY_MIRROR" ] || SECURITY_MIRROR=http://deb.debian.org/debian-security

# build_root DIR: minbase plus exactly what "apt-get build-dep ./" installs for debian/control,
# nothing else (no rustup, no development package of the host); cached per Build-Depends.
build_root() {
    local dir=$1 key tarball rc
    key=$(sed -n '/^Build-Depends:/,/^[A-Z]/p' "$SRC/debian/control" | sha256sum | cut -c1-12)
    tarball=$CACHE/$SUITE-build-$key-$ARCH.tar
    if [ -s "$tarball" ]; then
        log "unpacking cached build root $(basename "$tarball")"
        mkdir -p "$dir" && tar -C "$dir" -xpf "$tarball"
        return
    fi
    make_root "$dir" minbase || return 1
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
        "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SECURITY_MIRROR" "$SUITE" >"$dir/etc/apt/sources.list"
    mkdir -p "$dir/tmp/src"
    cp -a "$SRC/debian" "$dir/tmp/src/"
    log "apt-get build-dep in a clean Debian root (cached afterwards)"
    mount -t proc proc "$dir/proc"
    in_root "$dir" sh -c 'apt-get update -qq && cd /tmp/src && apt-get build-dep -y -qq ./' >"$WORK/root-build.log" 2>&1
    rc=$?
    umount "$dir/proc"
    rm -rf "$dir/tmp/src"
    [ $rc = 0 ] || { tail -20 "$WORK/root-build.log"; return 1; }
    rm -f "$dir"/var/cache/apt/archives/*.deb
    tar -C "$dir" -cpf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
}

# ---------------------------------------------------------------- build
# dpkg-buildpackage -b -us -uc in the clean build root. Decoy cargo/rustc/rustup stand first in
# PATH (where rustup puts its own): debian/rules must call Debian's toolchain, and the unstripped
# binary's .comment must name the build root's /usr/bin/rustc.
UPSTREAM=$(sed -n 's/^version = "\(.*\)"/\1/p' "$SRC/Cargo.toml" | head -1)
DEBVER=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version)
exec 9>"$CACHE/lock"
flock -w 1800 9 || { fail setup "another run holds $CACHE/lock"; finish; }
BR=$WORK/buildroot
build_root "$BR" || { fail build "could not make the build root with the build dependencies"; finish; }
# A fixed build path (cargo's fingerprints include it) lets unchanged crates be reused.
TREE=$BR/build/pmxcfs-ng-$UPSTREAM
mkdir -p "$TREE" "$BR/build/target" "$CARGO_TARGET_DIR"
tar -C "$SRC" --exclude=./target --exclude=./.git --exclude=./debian/pmxcfs-ng --exclude=./debian/cargo_home \
    --exclude=./debian/.debhelper --exclude=./debian/tmp -cf - . | tar -C "$TREE" -xmf -
# -m: the sources are newer than anything in the shared target cache, so cargo's mtime-based
# freshness never reuses a workspace crate built from another checkout (registry crates are
# still reused: their fingerprints do not depend on mtimes).
mount --bind "$CARGO_TARGET_DIR" "$BR/build/target"
# cargo fetches the crates over HTTPS: the root trusts what the host trusts (a local proxy's CA,
# say), as it uses the host's resolv.conf.
[ -s /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$BR/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$BR/root/.cargo/bin"
for t in cargo rustc rustdoc rustup; do
    printf '#!/bin/sh\necho "decoy %s called: debian/rules must use Debian'"'"'s toolchain" >&2\nexit 97\n' "$t" >"$BR/root/.cargo/bin/$t"
    chmod 0755 "$BR/root/.cargo/bin/$t"
done
log "building in the build root (target directory $CARGO_TARGET_DIR)"
mount -t proc proc "$BR/proc"
in_root "$BR" sh -c "cd /build/pmxcfs-ng-$UPSTREAM && dpkg-checkbuilddeps &&
    PATH=/root/.cargo/bin:\$PATH HOME=/root CARGO_TARGET_DIR=/build/target dpkg-buildpackage -b -us -uc" >"$WORK/build.log" 2>&1
rc=$?
umount "$BR/proc"
comment=$(chroot "$BR" readelf -p .comment /build/target/release/pmxcfs 2>/dev/null | sed -n 's/.*\(rustc version .*\)/\1/p' | head -1)
debian_rustc=$(chroot "$BR" /usr/bin/rustc --version)
umount "$BR/build/target"
BUILD=$CACHE/build
rm -rf "$BUILD"
mkdir -p "$BUILD"
cp "$BR"/build/pmxcfs-ng_* "$BR"/build/pmxcfs-ng-dbgsym_* "$BUILD/" 2>/dev/null
if [ $rc != 0 ]; then
    tail -40 "$WORK/build.log"
    fail build "dpkg-buildpackage failed in the clean build root"
    finish
elif grep -q '^decoy ' "$WORK/build.log"; then
    grep '^decoy ' "$WORK/build.log"
    fail build "the build called a cargo/rustc from PATH instead of Debian's"
elif [ -z "$comment" ] || [ "${comment#rustc version }" != "${debian_rustc#rustc }" ]; then
    fail build "binary built by '$comment', not by Debian's '$debian_rustc'"
else
    log "build: $comment (Debian's: $debian_rustc)"
    pass build
fi
DEB=$BUILD/pmxcfs-ng_${DEBVER}_$(dpkg --print-architecture).deb
CHANGES=$BUILD/pmxcfs-ng_${DEBVER}_$(dpkg --print-architecture).changes
[ -f "$DEB" ] || { fail build "no $DEB"; finish; }

# ---------------------------------------------------------------- lintian
lintian --pedantic -I "$CHANGES" >"$WORK/lintian.log" 2>&1
log "lintian: $(grep -c '^E:' "$WORK/lintian.log") errors, $(grep -c '^W:' "$WORK/lintian.log") warnings, $(grep -c '^[IP]:' "$WORK/lintian.log") info/pedantic"
sed 's/^/  /' "$WORK/lintian.log"
# The one accepted warning: a first upload closes no ITP bug.
if grep -qE '^(Skipping|No packages selected)' "$WORK/lintian.log"; then
    fail lintian "lintian checked nothing (see above)"
elif grep -q '^E:' "$WORK/lintian.log"; then
    fail lintian "errors (see above)"
elif grep '^W:' "$WORK/lintian.log" | grep -vq ' initial-upload-closes-no-bugs'; then
    fail lintian "warnings other than initial-upload-closes-no-bugs (see above)"
else
    pass lintian
fi

# ---------------------------------------------------------------- depends
# Debian's SQLite, not a bundled copy; every linked library used; rrdtool (which the daemon runs)
# in Depends, rrdcached in Recommends.
problems=()
depends=$(dpkg-deb -f "$DEB" Depends)
recommends=$(dpkg-deb -f "$DEB" Recommends)
for p in rrdtool libsqlite3-0 libqb100 libcpg4 libcmap4 libquorum5 libc6; do
    grep -qE "(^|, )$p( |,|\$)" <<<"$depends" || problems+=("Depends lacks $p")
done
grep -qE '(^|, )rrdcached(,|$)' <<<"$recommends" || problems+=("Recommends lacks rrdcached")
needed=$(chroot "$BR" readelf -d "/build/pmxcfs-ng-$UPSTREAM/debian/pmxcfs-ng/usr/bin/pmxcfs-ng" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
grep -q 'libsqlite3\.so\.0' <<<"$needed" || problems+=("binary does not link libsqlite3.so.0 (NEEDED: $needed)")
grep -q 'SQLite format 3' "$TREE/debian/pmxcfs-ng/usr/bin/pmxcfs-ng" && problems+=("binary carries its own SQLite")
grep 'dpkg-shlibdeps: warning' "$WORK/build.log" >&2 && problems+=("dpkg-shlibdeps warnings (above)")
if [ ${#problems[@]} -eq 0 ]; then
    log "depends: $depends; recommends: $recommends"
    pass depends
else
    fail depends "$(printf '%s; ' "${problems[@]}")"
fi

# ---------------------------------------------------------------- filelist
EXPECTED_FILES="/lib/systemd/system/pmxcfs-ng.service
/usr/bin/pmxcfs-ng
/usr/sbin/pmxcfs-ng-switch
/usr/share/doc/pmxcfs-ng/README.Debian
/usr/share/doc/pmxcfs-ng/changelog.Debian.gz
/usr/share/doc/pmxcfs-ng/copyright
/usr/share/man/man8/pmxcfs-ng-switch.8.gz
/usr/share/man/man8/pmxcfs-ng.8.gz
/usr/share/pmxcfs-ng/pve-cluster.service.d/pmxcfs-ng.conf"
dpkg-deb -c "$DEB" >"$WORK/contents"
awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' "$WORK/contents" | sort >"$WORK/files"
if diff -u <(echo "$EXPECTED_FILES" | sort) "$WORK/files"; then
    if grep -q -- '^-rwxr-xr-x root/root .* \./usr/bin/pmxcfs-ng$' "$WORK/contents" &&
        dpkg-deb -f "$DEB" Package Version Architecture Section | tr '\n' ' ' | grep -q "Package: pmxcfs-ng Version: $DEBVER Architecture: $(dpkg --print-architecture) Section: admin"; then
        pass filelist
    else
        fail filelist "binary mode or control fields wrong"
    fi
else
    fail filelist "unexpected file list (diff above)"
fi

# ---------------------------------------------------------------- maintscripts
CTRL=$WORK/control
dpkg-deb -e "$DEB" "$CTRL"
problems=()
for s in preinst postinst prerm postrm; do
    [ -f "$CTRL/$s" ] || continue
    sh -n "$CTRL/$s" || problems+=("$s: syntax")
    head -1 "$CTRL/$s" | grep -qx '#!/bin/sh' || problems+=("$s: not #!/bin/sh")
    grep -q '^set -e' "$CTRL/$s" || problems+=("$s: no set -e")
    # pve-cluster's files are never touched (only our drop-in inside its .d directory).
    grep -nE '(/usr/bin/pmxcfs([^-]|$)|/lib/systemd/system/pve-cluster)' "$CTRL/$s" | grep -v '^[0-9]*: *#' | grep -v 'echo' &&
        problems+=("$s: mentions pve-cluster's files")
    grep -qE 'deb-systemd-invoke +start|systemctl +(enable|start)' "$CTRL/$s" && problems+=("$s: enables/starts a unit")
done
grep -q 'rm -f "\$DROPIN"' "$CTRL/prerm" || problems+=("prerm: does not remove the drop-in")
grep -q 'DROPIN=/etc/systemd/system/pve-cluster.service.d/pmxcfs-ng.conf' "$CTRL/prerm" || problems+=("prerm: wrong drop-in path")
grep -q 'rm -f "\$DROPIN"' "$CTRL/postrm" || problems+=("postrm: does not remove the drop-in")
grep -q "deb-systemd-helper purge 'pmxcfs-ng.service'" "$CTRL/postrm" || problems+=("postrm: no unit purge")
grep -q 'deb-systemd-invoke stop pmxcfs-ng.service' "$CTRL/prerm" || problems+=("prerm: does not stop pmxcfs-ng.service")
sh -n "$TREE/debian/pmxcfs-ng-switch" || problems+=("pmxcfs-ng-switch: syntax")
if [ ${#problems[@]} -eq 0 ]; then
    pass maintscripts
else
    fail maintscripts "$(printf '%s; ' "${problems[@]}")"
fi

# ---------------------------------------------------------------- units
# systemd-analyze verify on the unpacked package: pmxcfs-ng.service, and a stand-in
# pve-cluster.service with the drop-in that "pmxcfs-ng-switch enable" installs.
U=$WORK/unpacked
dpkg-deb -x "$DEB" "$U"
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$U/etc/systemd/system/pve-cluster.service.d"
    printf '[Unit]\nDescription=stand-in\nDefaultDependencies=no\n[Service]\nExecStart=/usr/bin/pmxcfs\nType=forking\nPIDFile=/run/pve-cluster.pid\n' \
        >"$U/lib/systemd/system/pve-cluster.service"
    cp "$U/usr/share/pmxcfs-ng/pve-cluster.service.d/pmxcfs-ng.conf" "$U/etc/systemd/system/pve-cluster.service.d/"
    printf '#!/bin/sh\n' >"$U/usr/bin/pmxcfs" && chmod 0755 "$U/usr/bin/pmxcfs"
    if SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no --root="$U" \
        "$U/lib/systemd/system/pmxcfs-ng.service" "$U/lib/systemd/system/pve-cluster.service" >"$WORK/verify.log" 2>&1 &&
        ! grep -q . "$WORK/verify.log"; then
        pass units
    else
        cat "$WORK/verify.log"
        fail units "systemd-analyze verify"
    fi
else
    skip units "no systemd-analyze"
fi

# ---------------------------------------------------------------- manpage
BIN=$U/usr/bin/pmxcfs-ng
MAN=$SRC/docs/man/pmxcfs-ng.8
problems=()
mansrc=$(sed 's/\\-/-/g' "$MAN")
flags=$( { "$BIN" --help; "$BIN" check --help; "$BIN" dump --help; "$BIN" repair --help; } | grep -oE '(^|[ ,])--?[a-zA-Z][a-z-]*' | tr -d ' ,' | sort -u)
for f in $flags; do
    grep -qE -- "(^|[^a-zA-Z-])${f}([^a-zA-Z-]|\$)" <<<"$mansrc" || problems+=("flag $f not in pmxcfs-ng(8)")
done
for c in check dump repair; do
    grep -q "^\.BR $c\|^\.B $c" "$MAN" || problems+=("command $c not in pmxcfs-ng(8)")
done
for w in .debug /var/lib/pve-cluster/config.db /run/pve-cluster.pid /etc/pve "LOCAL MODE" "CRASH SAFETY" "pmxcfs-ng-switch disable"; do
    grep -qF -- "$w" <<<"$mansrc" || problems+=("'$w' not in pmxcfs-ng(8)")
done
binver=$("$BIN" --version | awk '{ print $NF }')
[ "$binver" = "$UPSTREAM" ] || problems+=("--version says $binver, Cargo.toml $UPSTREAM")
[ "${DEBVER%-*}" = "$UPSTREAM" ] || problems+=("debian/changelog $DEBVER vs Cargo.toml $UPSTREAM")
grep -q "^\.TH PMXCFS-NG 8 .*\"pmxcfs-ng $UPSTREAM\"" "$MAN" || problems+=(".TH version is not $UPSTREAM")
verline=$("$BIN" --version)
grep -qF "\"$verline\"" <<<"$mansrc" || problems+=("man page does not show the --version line '$verline'")
man --warnings -l "$MAN" 2>"$WORK/man.warn" >/dev/null
man --warnings -l "$SRC/docs/man/pmxcfs-ng-switch.8" 2>>"$WORK/man.warn" >/dev/null
[ -s "$WORK/man.warn" ] && problems+=("groff warnings: $(head -3 "$WORK/man.warn" | tr '\n' ' ')")
if [ ${#problems[@]} -eq 0 ]; then
    pass manpage
else
    fail manpage "$(printf '%s; ' "${problems[@]}")"
fi

# ---------------------------------------------------------------- install
install_ok=0
if make_root "$CHROOT" minbase; then
    mount -t proc proc "$CHROOT/proc"
    [ -e "$CHROOT/dev/fuse" ] || mknod -m 0666 "$CHROOT/dev/fuse" c 10 229
    fake_pve_cluster "$CHROOT"
    PVE_SUMS=$(cd "$CHROOT" && sha256sum usr/bin/pmxcfs lib/systemd/system/pve-cluster.service)
    if install_deb "$CHROOT"; then
        install_ok=1
        missing=$(chroot "$CHROOT" dpkg -L pmxcfs-ng | while read -r f; do [ -e "$CHROOT$f" ] || echo "$f"; done)
        if [ -n "$missing" ]; then
            fail install "files missing after install: $missing"
        elif [ "$(cd "$CHROOT" && sha256sum usr/bin/pmxcfs lib/systemd/system/pve-cluster.service)" != "$PVE_SUMS" ]; then
            fail install "pve-cluster's files changed"
        elif [ -e "$CHROOT/etc/systemd/system/pve-cluster.service.d" ]; then
            fail install "installation activated the drop-in"
        else
            pass install
        fi
    else
        tail -20 "$WORK/install.log"
        fail install "apt-get install of the .deb failed"
    fi
else
    fail install "could not make the Debian root (see above)"
fi

# ---------------------------------------------------------------- daemon
daemon_test() {
    local r=/tmp/r mnt=$CHROOT/tmp/r/etc/pve out=$WORK/daemon.log notify=$WORK/notify.log i
    mkdir -p "$CHROOT$r"
    local notify_env=() have_notify=0
    if grep -q NOTIFY_SOCKET "$CHROOT/usr/bin/pmxcfs-ng"; then
        have_notify=1
        # A stand-in for systemd's notify socket: records each message and whether the
        # file system was mounted when it arrived.
        python3 - "$CHROOT/run/notify.sock" "$mnt" "$notify" <<'EOF' &
import os, socket, sys
sock_path, mnt, out = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock_path)
s.settimeout(60)
with open(out, "w") as f:
    try:
        while True:
            msg = s.recv(4096).decode(errors="replace")
            mounted = any(l.split()[1] == mnt for l in open("/proc/self/mounts"))
            for line in msg.splitlines():
                f.write(f"{line} mounted={mounted}\n")
            f.flush()
    except socket.timeout:
        pass
EOF
        LISTENER_PID=$!
        for i in $(seq 50); do [ -S "$CHROOT/run/notify.sock" ] && break; sleep 0.1; done
        notify_env=(NOTIFY_SOCKET=/run/notify.sock)
    fi
    chroot "$CHROOT" env "${notify_env[@]}" /usr/bin/pmxcfs-ng -f -l --root "$r" --nodename t >"$out" 2>&1 &
    DAEMON_PID=$!
    for i in $(seq 100); do
        awk -v m="$mnt" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts && break
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! awk -v m="$mnt" '$2 == m && $3 ~ /^fuse/ { f = 1 } END { exit !f }' /proc/self/mounts; then
        cat "$out"
        fail daemon "not mounted on $mnt"
        return
    fi
    local problems=()
    printf 'keyboard: en-us\n' >"$mnt/datacenter.cfg" || problems+=("write failed")
    [ "$(cat "$mnt/datacenter.cfg" 2>/dev/null)" = "keyboard: en-us" ] || problems+=("read back differs")
    mkdir "$mnt/testdir" && printf 'x\n' >"$mnt/testdir/f" || problems+=("mkdir/write in subdirectory failed")
    [ "$(cat "$mnt/.debug")" = 0 ] || problems+=(".debug is not 0")
    echo 1 >"$mnt/.debug" && [ "$(cat "$mnt/.debug")" = 1 ] || problems+=(".debug not switchable")
    echo 0 >"$mnt/.debug"
    [ -s "$mnt/.version" ] || problems+=(".version empty")
    [ "$(stat -c %G "$mnt/datacenter.cfg")" = www-data ] || problems+=("group is not www-data")
    [ -f "$CHROOT$r/run/pve-cluster.pid" ] || problems+=("no pid file")
    kill -TERM "$DAEMON_PID"
    local code=0
    for i in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        problems+=("still running 10 s after SIGTERM")
    else
        wait "$DAEMON_PID"
        code=$?
        [ "$code" = 0 ] || problems+=("exit status $code after SIGTERM")
    fi
    DAEMON_PID=
    awk -v m="$mnt" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts && problems+=("still mounted after exit")
    [ -e "$CHROOT$r/run/pve-cluster.pid" ] && problems+=("pid file left behind")
    [ "$(chroot "$CHROOT" pmxcfs-ng dump --db "$r/var/lib/pve-cluster/config.db" datacenter.cfg)" = "keyboard: en-us" ] ||
        problems+=("datacenter.cfg not committed to the database")
    chroot "$CHROOT" pmxcfs-ng check --db "$r/var/lib/pve-cluster/config.db" >"$WORK/check.log" 2>&1 ||
        problems+=("check: $(tr '\n' ' ' <"$WORK/check.log")")
    grep -qE '^\[main\] notice: ' "$out" || problems+=("no '[main] notice: ...' log line")
    grep -vqE '^\[[a-z_-]+\] (crit|err|warning|notice|info|debug): ' "$out" && problems+=("log lines not in '[tag] level: message' form")
    if [ "$have_notify" = 1 ]; then
        sleep 0.2
        grep -q '^READY=1 mounted=True' "$notify" || problems+=("no READY=1 while mounted (got: $(tr '\n' ' ' <"$notify"))")
        kill "$LISTENER_PID" 2>/dev/null
        LISTENER_PID=
    fi
    sed 's/^/  daemon: /' "$out"
    if [ ${#problems[@]} -eq 0 ]; then
        pass daemon
    else
        fail daemon "$(printf '%s; ' "${problems[@]}")"
    fi
    [ "$have_notify" = 0 ] || log "daemon: READY=1 received while mounted"
    [ "$have_notify" = 1 ] || skip notify "binary has no sd_notify support (no NOTIFY_SOCKET string); READY=1 not checked"
}

# ---------------------------------------------------------------- switch
switch_test() {
    local dropin=$CHROOT/etc/systemd/system/pve-cluster.service.d/pmxcfs-ng.conf calls=$CHROOT/tmp/systemctl.calls
    local problems=()
    # Pretend systemd runs; systemctl only records what it is asked.
    mkdir -p "$CHROOT/run/systemd/system" "$CHROOT/usr/local/bin"
    printf '#!/bin/sh\necho "$*" >>/tmp/systemctl.calls\n[ "$1" = show ] && echo 0\nexit 0\n' >"$CHROOT/usr/local/bin/systemctl"
    chmod 0755 "$CHROOT/usr/local/bin/systemctl"
    : >"$calls"
    local sw="chroot $CHROOT env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin pmxcfs-ng-switch"
    $sw enable >"$WORK/switch.log" 2>&1 || problems+=("enable failed: $(tr '\n' ' ' <"$WORK/switch.log")")
    cmp -s "$dropin" "$CHROOT/usr/share/pmxcfs-ng/pve-cluster.service.d/pmxcfs-ng.conf" || problems+=("drop-in not installed")
    grep -qx 'ExecStart=' "$dropin" && grep -qx 'ExecStart=/usr/bin/pmxcfs-ng -f' "$dropin" &&
        grep -qx 'Type=notify' "$dropin" && grep -qx 'NotifyAccess=main' "$dropin" || problems+=("drop-in content")
    grep -qx 'daemon-reload' "$calls" && grep -qx 'restart pve-cluster.service' "$calls" || problems+=("enable: no daemon-reload + restart ($(tr '\n' ',' <"$calls"))")
    $sw status 2>&1 | grep -q '^switch: enabled' || problems+=("status does not say enabled")
    : >"$calls"
    $sw disable >>"$WORK/switch.log" 2>&1 || problems+=("disable failed")
    [ -e "$dropin" ] && problems+=("disable left the drop-in")
    [ -e "$(dirname "$dropin")" ] && problems+=("disable left the drop-in directory")
    grep -qx 'daemon-reload' "$calls" && grep -qx 'restart pve-cluster.service' "$calls" || problems+=("disable: no daemon-reload + restart")
    $sw status 2>&1 | grep -q '^switch: disabled' || problems+=("status does not say disabled")
    $sw bogus >/dev/null 2>&1; [ $? = 2 ] || problems+=("usage error is not exit 2")
    # Host without Proxmox VE: the package's own unit.
    mv "$CHROOT/lib/systemd/system/pve-cluster.service" "$WORK/pve-cluster.service.saved"
    : >"$calls"
    $sw enable >>"$WORK/switch.log" 2>&1 && grep -qx 'enable --now pmxcfs-ng.service' "$calls" || problems+=("non-PVE enable")
    $sw disable >>"$WORK/switch.log" 2>&1 && grep -qx 'disable --now pmxcfs-ng.service' "$calls" || problems+=("non-PVE disable")
    mv "$WORK/pve-cluster.service.saved" "$CHROOT/lib/systemd/system/pve-cluster.service"
    # Leave it enabled: purge must remove the drop-in.
    $sw enable --no-restart >>"$WORK/switch.log" 2>&1 && [ -e "$dropin" ] || problems+=("enable --no-restart")
    if [ ${#problems[@]} -eq 0 ]; then
        pass switch
    else
        sed 's/^/  switch: /' "$WORK/switch.log"
        fail switch "$(printf '%s; ' "${problems[@]}")"
    fi
}

# ---------------------------------------------------------------- purge
purge_test() {
    local files problems=()
    files=$(chroot "$CHROOT" dpkg -L pmxcfs-ng | while read -r f; do [ -f "$CHROOT$f" ] && echo "$f"; done)
    : >"$CHROOT/tmp/systemctl.calls"
    if ! chroot "$CHROOT" env DEBIAN_FRONTEND=noninteractive PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin apt-get purge -y pmxcfs-ng >"$WORK/purge.log" 2>&1; then
        tail -20 "$WORK/purge.log"
        fail purge "apt-get purge failed"
        return
    fi
    chroot "$CHROOT" dpkg -s pmxcfs-ng >/dev/null 2>&1 && problems+=("package still known to dpkg")
    chroot "$CHROOT" dpkg -L pmxcfs-ng >/dev/null 2>&1 && problems+=("dpkg -L still lists files")
    for f in $files /usr/share/pmxcfs-ng /usr/share/doc/pmxcfs-ng /etc/systemd/system/pve-cluster.service.d; do
        [ -e "$CHROOT$f" ] && problems+=("left behind: $f")
    done
    [ -n "$(find "$CHROOT/etc" -name '*pmxcfs-ng*' 2>/dev/null)" ] && problems+=("left in /etc: $(find "$CHROOT/etc" -name '*pmxcfs-ng*')")
    [ -n "$(find "$CHROOT/var/lib/dpkg/info" -name 'pmxcfs-ng*' 2>/dev/null)" ] && problems+=("dpkg info files left")
    [ "$(cd "$CHROOT" && sha256sum usr/bin/pmxcfs lib/systemd/system/pve-cluster.service)" = "$PVE_SUMS" ] || problems+=("pve-cluster's files changed")
    if [ ${#problems[@]} -eq 0 ]; then
        pass purge
    else
        sed 's/^/  purge: /' "$WORK/purge.log"
        fail purge "$(printf '%s; ' "${problems[@]}")"
    fi
}

# ---------------------------------------------------------------- systemd
systemd_test() {
    local R=$WORK/sdroot problems=() i state leader=
    if ! make_root "$R" systemd systemd systemd-sysv dbus; then
        fail systemd "could not make a Debian root with systemd"
        return
    fi
    fake_pve_cluster "$R"
    cat >"$R/lib/systemd/system/after-pve.service" <<'EOF'
[Unit]
Description=ordered after pve-cluster: records whether /etc/pve was mounted when it started
Requires=pve-cluster.service
After=pve-cluster.service
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'if grep -q " /etc/pve fuse" /proc/mounts; then echo mounted; else echo NOT-mounted; fi >>/run/after-pve.log'
EOF
    mount -t proc proc "$R/proc"
    if ! install_deb "$R"; then
        umount "$R/proc"
        tail -20 "$WORK/install.log"
        fail systemd "apt-get install of the .deb failed"
        return
    fi
    chroot "$R" systemctl enable pve-cluster.service >/dev/null 2>&1
    umount "$R/proc"
    systemd-nspawn -D "$R" -b --register=no --keep-unit --bind=/dev/fuse --console=pipe >"$WORK/nspawn.log" 2>&1 &
    NSPAWN_PID=$!
    # up to 90 s: a loaded 2-core CI machine boots a container slowly
    for i in $(seq 450); do
        # the container's init once it runs systemd (an earlier child may be nspawn's own
        # short-lived helper: looking it up once raced with that)
        leader=$(pgrep -P "$NSPAWN_PID" -x systemd | head -1)
        if [ -n "$leader" ]; then
            state=$(nsenter -t "$leader" -a systemctl is-system-running 2>/dev/null)
            case $state in running | degraded) break ;; esac
        fi
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.2
    done
    case ${state:-} in
        running | degraded) ;;
        *)
            tail -20 "$WORK/nspawn.log"
            fail systemd "systemd-nspawn did not boot the Debian root (state '${state:-}')"
            return
            ;;
    esac
    log "systemd: container booted"
    E() { nsenter -t "$leader" -a env PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
    exe_of() { E sh -c "readlink /proc/\$(systemctl show -p MainPID --value $1)/exe"; }
    prop() { E systemctl show -p "$2" --value "$1"; }
    local SL=$WORK/systemd.log
    : >"$SL"

    [ "$(exe_of pve-cluster.service)" = /usr/bin/sleep ] || problems+=("stand-in pve-cluster not running before the switch")
    E pmxcfs-ng-switch enable >>"$SL" 2>&1 || problems+=("enable failed")
    [ "$(exe_of pve-cluster.service)" = /usr/bin/pmxcfs-ng ] || problems+=("enable: pve-cluster.service does not run pmxcfs-ng")
    [ "$(prop pve-cluster.service Type)" = notify ] || problems+=("enable: Type is not notify")
    [ "$(prop pve-cluster.service ActiveState)" = active ] || problems+=("enable: not active")
    E sh -c 'printf "keyboard: de\n" >/etc/pve/datacenter.cfg' || problems+=("write to /etc/pve failed")
    # Readiness: a unit ordered after pve-cluster.service starts only once /etc/pve is mounted.
    E systemctl stop after-pve.service pve-cluster.service
    E systemctl start after-pve.service || problems+=("after-pve.service failed")
    [ "$(E tail -1 /run/after-pve.log 2>/dev/null)" = mounted ] || problems+=("a unit ordered after pve-cluster.service started before /etc/pve was mounted")
    [ "$(E cat /etc/pve/datacenter.cfg 2>/dev/null)" = "keyboard: de" ] || problems+=("datacenter.cfg lost across a stop/start")
    E journalctl -u pve-cluster.service -o cat --no-pager >"$WORK/journal.log" 2>&1
    grep -q "^\[main\] notice: mounted pmxcfs-ng on '/etc/pve'" "$WORK/journal.log" || problems+=("no '[main] notice: mounted' line in the journal")
    grep -q "^\[main\] notice: exit proxmox configuration filesystem (0)" "$WORK/journal.log" || problems+=("no clean exit (0) in the journal after stop")
    local prio
    prio=$(E journalctl -u pve-cluster.service -o verbose --no-pager 2>/dev/null |
        awk '/^ *PRIORITY=/ { p = $0; sub(/.*=/, "", p) } /MESSAGE=\[main\] notice: mounted/ { print p; exit }')

    E pmxcfs-ng-switch disable >>"$SL" 2>&1 || problems+=("disable failed")
    [ "$(exe_of pve-cluster.service)" = /usr/bin/sleep ] || problems+=("disable: original not back")
    [ "$(prop pve-cluster.service Type)" = forking ] || problems+=("disable: Type is not forking again")
    E pmxcfs-ng-switch enable >>"$SL" 2>&1 && [ "$(E cat /etc/pve/datacenter.cfg 2>/dev/null)" = "keyboard: de" ] ||
        problems+=("second enable, or datacenter.cfg lost")
    E apt-get remove -y pmxcfs-ng >>"$SL" 2>&1 || problems+=("apt-get remove failed")
    [ "$(exe_of pve-cluster.service)" = /usr/bin/sleep ] || problems+=("remove: original not back")
    [ "$(prop pve-cluster.service Type)" = forking ] || problems+=("remove: Type is not forking again")
    E test -e /etc/systemd/system/pve-cluster.service.d/pmxcfs-ng.conf && problems+=("remove: drop-in left")
    E grep -q ' /etc/pve fuse' /proc/mounts && problems+=("remove: pmxcfs-ng still mounted")

    # A host without Proxmox VE: pmxcfs-ng.service.
    E sh -c 'systemctl disable --now pve-cluster.service && rm /usr/bin/pmxcfs /lib/systemd/system/pve-cluster.service && systemctl daemon-reload' >>"$SL" 2>&1
    E dpkg -i "/root/$(basename "$DEB")" >>"$SL" 2>&1 || problems+=("reinstall failed")
    [ "$(prop pmxcfs-ng.service ActiveState)" = inactive ] || problems+=("pmxcfs-ng.service started by installation")
    E pmxcfs-ng-switch enable >>"$SL" 2>&1 || problems+=("non-PVE enable failed")
    [ "$(exe_of pmxcfs-ng.service)" = /usr/bin/pmxcfs-ng ] && [ "$(prop pmxcfs-ng.service Type)" = notify ] ||
        problems+=("pmxcfs-ng.service not running")
    [ "$(E cat /etc/pve/datacenter.cfg 2>/dev/null)" = "keyboard: de" ] || problems+=("pmxcfs-ng.service: datacenter.cfg not there")
    E apt-get purge -y pmxcfs-ng >>"$SL" 2>&1 || problems+=("purge failed")
    E grep -q ' /etc/pve fuse' /proc/mounts && problems+=("purge: still mounted")
    E test -e /etc/systemd/system/multi-user.target.wants/pmxcfs-ng.service && problems+=("purge: enablement symlink left")
    [ "$(prop pmxcfs-ng.service LoadState)" = not-found ] || problems+=("purge: unit still loaded")

    kill -TERM "$NSPAWN_PID"
    for i in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$NSPAWN_PID" 2>/dev/null && problems+=("container did not power off")
    wait "$NSPAWN_PID" 2>/dev/null
    NSPAWN_PID=

    if [ ${#problems[@]} -eq 0 ]; then
        pass systemd
    else
        sed 's/^/  systemd: /' "$SL"
        sed 's/^/  journal: /' "$WORK/journal.log"
        fail systemd "$(printf '%s; ' "${problems[@]}")"
    fi
    if [ "$prio" = 5 ]; then
        log "journald: '[main] notice: ...' has PRIORITY=5"
    else
        skip journald-priority "'[main] notice: ...' reaches the journal with PRIORITY=${prio:-?}, not 5: the daemon does not prefix its stderr lines with <N> under journald"
    fi
}

if [ "$install_ok" = 1 ]; then
    daemon_test
    switch_test
    purge_test
    systemd_test
else
    fail daemon "not installed"
    fail switch "not installed"
    fail purge "not installed"
    fail systemd "not installed"
fi

finish
