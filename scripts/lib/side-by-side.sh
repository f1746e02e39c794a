# side-by-side.sh: start and stop pmxcfs-ng or the original in local mode under a fresh root,
# for the scripts that compare the two (sourced; needs HERE = the checkout).
#   sbs_start ng|orig LOG  → SBS_ROOT, SBS_MNT, SBS_PID, SBS_SVC (IPC service), SBS_NS (command
#                            prefix that enters the daemon's network namespace, for IPC)
#   sbs_stop               → stops the daemon, waits for c-local.sh's bind of ROOT/etc to go,
#                            removes the root
# pmxcfs-ng: $PMXCFS_BIN (default target/release/pmxcfs), extra environment in $NGENV.
# original: ../shared/original/c-local.sh in its own network namespace, binary $C_PMXCFS.
sbs_start() {
    SBS_PID=; SBS_ROOT=$(mktemp -d /tmp/side-by-side.XXXXXX)
    SBS_MNT=$SBS_ROOT/etc/pve
    mkdir -p "$SBS_ROOT/var/lib/pve-cluster" "$SBS_ROOT/run/pve-cluster" "$SBS_MNT"
    if [ "$1" = ng ]; then
        SBS_SVC="sbs-$$"; SBS_NS=()
        env ${NGENV:-} "${PMXCFS_BIN:-$HERE/target/release/pmxcfs}" -f -l --root "$SBS_ROOT" \
            --nodename pve1 --ipc-name "$SBS_SVC" > "$2" 2>&1 &
        SBS_PID=$!
    else
        C_PMXCFS=${C_PMXCFS:-/opt/pmxcfs-c/pmxcfs} unshare -n "$HERE/../shared/original/c-local.sh" \
            -f -l --root "$SBS_ROOT" --nodename pve1 > "$2" 2>&1 &
        SBS_PID=$!; SBS_SVC=pve2; SBS_NS=(nsenter "--net=/proc/$SBS_PID/ns/net")
    fi
    for _ in $(seq 200); do [ -e "$SBS_MNT/.version" ] && return 0; sleep 0.1; done
    echo "daemon ($1) did not mount; log: $2" >&2
    return 1
}

sbs_stop() {
    [ -n "${SBS_ROOT:-}" ] || return 0
    if [ -n "$SBS_PID" ]; then kill "$SBS_PID" 2>/dev/null || true; fi
    wait "$SBS_PID" 2>/dev/null || true
    fusermount3 -u "$SBS_MNT" 2>/dev/null || true
    for _ in $(seq 100); do mountpoint -q "$SBS_ROOT/etc" || break; sleep 0.1; done
    if mountpoint -q "$SBS_ROOT/etc"; then umount "$SBS_ROOT/etc" || true; fi
    rm -rf "$SBS_ROOT" || true
}
