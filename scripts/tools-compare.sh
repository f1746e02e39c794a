#!/usr/bin/env bash
# tools-compare.sh: runs the tools an administrator uses on /etc/pve (cp, sed -i, perl -i, vim/ex,
# rsync, tar, install, ln, chmod, chown, touch, truncate, dd, python's tempfile+replace, flock,
# mkdir/mv/rm, stat, statfs, virtual files, the 1 MiB limit, nano) in a fresh local-mode mount
# of pmxcfs-ng and of the original, and diffs the two transcripts (errors, exit codes, modes,
# sizes, contents). Root; not part of CI. Original: ../shared/original/c-local.sh, $C_PMXCFS.
# Known difference: statfs f_namemax (1024 vs 256, docs/compatibility.md).
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/scripts/lib/side-by-side.sh"
OUT=${OUT:-$(mktemp -d /tmp/tools-compare.XXXXXX)}
transcript() { # $1 = ng|orig
sbs_start "$1" "$OUT/$1.log" || return 1
M=$SBS_MNT; cd $M
SRC=$(mktemp -d); printf 'dir: local\n\tpath /var/lib/vz\n' > $SRC/storage.cfg; mkdir -p $SRC/sub; echo a > $SRC/sub/a.conf; chmod 600 $SRC/sub/a.conf
t() { echo "== $*"; ( eval "$@" ) 2>&1 | sed -e "s#$M#MNT#g" -e "s#$SRC#SRC#g" -e 's/[0-9]\{9,\}/T/g' -e "s/\(\.[A-Za-z0-9_.-]*\)\.[A-Za-z0-9]\{6\}\"/\1.XXXXXX\"/g"; echo "rc=${PIPESTATUS[0]}"; }
t 'cp $SRC/storage.cfg storage.cfg; cat storage.cfg'
t 'sed -i s/local/local2/ storage.cfg; cat storage.cfg'
t 'perl -pi -e s/local2/local3/ storage.cfg; cat storage.cfg'
t 'perl -i.bak -pe s/local3/local4/ storage.cfg; ls; cat storage.cfg'
t 'vim -es -c "%s/local4/local5/" -c wq storage.cfg; cat storage.cfg; ls -a'
t 'ex -s -c "set backup" -c "%s/local5/local6/" -c wq storage.cfg; ls -a'
t 'cp -a $SRC/sub sub1; ls -l sub1 | cut -c1-10'
t 'cp -p $SRC/sub/a.conf p.conf; stat -c "%A %s" p.conf'
t 'cp -r $SRC/sub sub2; stat -c "%A %s %n" sub2/a.conf'
t 'rsync -a $SRC/sub/ sub3/; ls sub3'
t 'rsync -rt $SRC/sub/ sub4/; ls sub4'
t 'tar -C $SRC -cf - sub | tar -xf -; ls sub'
t 'tar -C $SRC -cf - sub | tar --no-same-owner --no-same-permissions -xf -; ls sub'
t 'install -m 0640 $SRC/storage.cfg inst.cfg; stat -c "%A" inst.cfg'
t 'install -m 0644 $SRC/storage.cfg inst2.cfg; stat -c "%A" inst2.cfg'
t 'ln -s storage.cfg link.cfg'
t 'ln storage.cfg hard.cfg'
t 'mkfifo fifo'
t 'chmod 600 storage.cfg; stat -c %A storage.cfg'
t 'chmod 640 storage.cfg; stat -c %A storage.cfg'
t 'chown root:root storage.cfg'
t 'chown nobody storage.cfg'
t 'chgrp www-data storage.cfg'
t 'touch -d "2020-01-01 00:00:00" storage.cfg; stat -c %y storage.cfg'
t 'touch -a storage.cfg'
t 'truncate -s 10 storage.cfg; stat -c %s storage.cfg'
t 'truncate -s 2M big.cfg'
t 'dd if=/dev/zero of=big2.cfg bs=1k count=1025 status=none; stat -c %s big2.cfg'
t 'dd if=/dev/zero of=s.cfg bs=1 count=5 seek=3 conv=notrunc status=none; od -c s.cfg | head -2'
t 'python3 -c "import tempfile,os; f=tempfile.NamedTemporaryFile(dir=\".\",delete=False); f.write(b\"x\"); f.close(); os.replace(f.name,\"py.cfg\")"; cat py.cfg'
t 'flock storage.cfg true'
t 'flock -x lockdir true 2>&1 | head -1'
t 'mkdir -p a/b/c; ls -R a'
t 'mkdir -m 700 m700; stat -c %A m700'
t 'rm -rf a; ls a'
t 'mv storage.cfg sub1/; ls sub1'
t 'mv sub1 sub9; ls'
t 'mv sub9/storage.cfg nodes/ 2>&1; ls nodes'
t 'ls -la | cut -c1-10 | sort | uniq -c'
t 'stat -c "%n %s %b %B" * .??* | sort'
t 'stat -c "%A %h %s %F" . sub9 local qemu-server lxc openvz .members .version .debug'
t 'readlink local qemu-server lxc openvz'
t 'df -h . | tail -1 | awk "{print \$2, \$5}"'
t 'stat -f -c "%b %f %a %s %S %c %d %l" .'
t 'echo x > .members'
t 'echo x >> .members'
t 'echo x >> .version; : > .vmlist'
t 'echo 1 > .debug; cat .debug; echo 0 > .debug'
t 'mkdir priv/x; ls -ld priv | cut -c1-10'
t 'cat nonexist'
t 'getfattr -d storage.cfg 2>&1 | head -2'
t 'setfattr -n user.x -v 1 s.cfg 2>&1'
t 'du -s . | wc -l'
t 'printf "%1048576s" x > max.cfg; stat -c %s max.cfg; printf "%1048577s" x > over.cfg; stat -c %s over.cfg'
t 'exec 3>keep.cfg; echo a >&3; cat keep.cfg; echo b >&3; cat keep.cfg; exec 3>&-'
t 'nano --version >/dev/null; TERM=dumb timeout 5 nano -t +1 s.cfg < /dev/null > /dev/null 2>&1; echo nano-exit=$?'
cd /; rm -rf $SRC
sbs_stop
}
transcript ng > "$OUT/ng.txt" 2>&1
transcript orig > "$OUT/orig.txt" 2>&1
if diff "$OUT/ng.txt" "$OUT/orig.txt"; then echo "tools-compare: transcripts identical"; else echo "tools-compare: transcripts differ (above; $OUT)"; fi
