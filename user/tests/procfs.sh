# procfs, mounts and tmpfs limits, checked inside Evergreen (guest only: it mounts file
# systems). Each check prints what it found; a failed check prints FAIL and the script exits 1.
fail() { echo "FAIL: $*"; exit 1; }
# This script may be init itself, before anyone mounted /proc.
[ -e /proc/self ] || mount -t proc proc /proc || fail "mount proc"

# /proc/self is the reader; /proc/PID/stat starts with the pid and (comm).
read pid comm state ppid rest < /proc/self/stat
[ "$pid" = "$$" ] || fail "/proc/self/stat pid $pid, shell $$"
[ "$state" = R ] || [ "$state" = S ] || fail "state $state"
grep -q "^Pid:	$$\$" /proc/$$/status || fail "/proc/$$/status"
tr '\0' ' ' < /proc/$$/cmdline | grep -q procfs.sh || fail "cmdline"
[ "$(readlink /proc/$$/exe)" = "$(readlink /proc/self/exe)" ] || fail "exe"
echo "self: pid matches, status and cmdline readable"

# /proc/PID/maps: the program's text, its stack and heap, in address order.
grep -q ' r-xp ' /proc/self/maps || fail "maps: no executable text"
grep -q ' rw-p .*\[stack\]$' /proc/self/maps || fail "maps: no [stack]"
awk -F'[- ]' '{ if (prev != "" && $1 < prev) bad = 1; prev = $2 } END { exit bad }' /proc/self/maps \
    || fail "maps: not in address order"
echo "maps: text, stack, in order"

# ps, pidof and killall (Debian's busybox has no pkill) see real processes.
sleep 100 &
sleeper=$!
ps | grep -q "^ *$sleeper .*sleep 100" || fail "ps does not list sleep ($sleeper)"
ps | grep -q "^ *1 " || fail "ps does not list process 1"
[ "$(pidof sleep)" = "$sleeper" ] || fail "pidof sleep: $(pidof sleep)"
killall sleep || fail "killall"
wait $sleeper
status=$?
[ $status = 143 ] || fail "sleep ended with $status, not 143 (SIGTERM)"
echo "ps/pidof/killall: sleep found and killed, status $status"
top -b -n 1 | grep -q "^Mem:" || fail "top"
echo "top: one batch frame"

# free, uptime and meminfo report numbers.
free | awk '/^Mem:/ { if ($2 > 100000) ok = 1 } END { exit !ok }' || fail "free"
uptime | grep -q "load average" || fail "uptime"
awk '{ if ($1 > 0) ok = 1 } END { exit !ok }' /proc/uptime || fail "/proc/uptime"
grep -q "^processor" /proc/cpuinfo || fail "cpuinfo"
grep -q "^cpu " /proc/stat || fail "/proc/stat"
echo "free/uptime/cpuinfo/stat: numbers"

# A tmpfs with a size limit: ENOSPC at the limit, df shows it, .. leaves the mount.
mkdir -p /tmp/small
mount -t tmpfs -o size=64k small /tmp/small || fail "mount tmpfs"
grep -q "^small /tmp/small tmpfs rw,size=64k" /proc/mounts || fail "/proc/mounts: $(cat /proc/mounts)"
dd if=/dev/zero of=/tmp/small/f bs=1k count=100 2>/tmp/dd.err && fail "dd past the limit succeeded"
grep -q "No space left on device" /tmp/dd.err || fail "dd: $(cat /tmp/dd.err)"
[ "$(wc -c < /tmp/small/f)" = 65536 ] || fail "size at the limit"
df /tmp/small | grep -q "64 *64 *0 100% /tmp/small" || fail "df: $(df /tmp/small)"
# O_TRUNC gives the bytes back: the file fills the mount again.
: > /tmp/small/f
dd if=/dev/zero of=/tmp/small/f bs=1k count=64 2>/dev/null || fail "dd after O_TRUNC: ENOSPC"
rm /tmp/small/f
echo x > /tmp/small/again || fail "space not returned after rm"
cd /tmp/small/.. && [ "$(ls -d small)" = small ] || fail ".. across the mount"
cd /
mkdir /tmp/small/inner
mount -t tmpfs inner /tmp/small/inner || fail "nested mount"
umount /tmp/small 2>/dev/null && fail "umount of a busy mount succeeded"
umount /tmp/small/inner || fail "umount inner"
umount /tmp/small || fail "umount"
[ -z "$(ls /tmp/small)" ] || fail "files visible after umount: $(ls /tmp/small)"
mount -t nosuchfs x /tmp/small 2>/tmp/m.err && fail "unknown type mounted"
grep -q "No such device" /tmp/m.err || fail "mount error: $(cat /tmp/m.err)"
echo "tmpfs: limit, df, .., busy umount, unknown type"

# Memory comes back: write 1 MiB, delete it, Shmem returns to where it was.
before=$(awk '/^Shmem:/ { print $2 }' /proc/meminfo)
dd if=/dev/zero of=/tmp/big bs=64k count=16 2>/dev/null
during=$(awk '/^Shmem:/ { print $2 }' /proc/meminfo)
rm /tmp/big
after=$(awk '/^Shmem:/ { print $2 }' /proc/meminfo)
[ $((during - before)) -ge 1024 ] || fail "Shmem grew by $((during - before)) kB"
[ "$after" = "$before" ] || fail "Shmem $before -> $after after rm"
echo "meminfo: 1 MiB file counted and given back"

# The host name, through /proc and uname.
echo testbox > /proc/sys/kernel/hostname
[ "$(uname -n)" = testbox ] || fail "uname -n $(uname -n)"
[ "$(hostname)" = testbox ] || fail "hostname"
echo "hostname: set through /proc"
# The kernel log: dmesg (syslog(2)) shows it from boot, /dev/kmsg takes a line and gives
# records.
dmesg | grep -q "Evergreen .* booting" || fail "dmesg has no boot line"
echo "<4>kmsg-test-line" > /dev/kmsg || fail "write /dev/kmsg"
dmesg | grep -q "kmsg-test-line" || fail "dmesg misses the line written to /dev/kmsg"
head -n 1 /dev/kmsg | grep -q "^[0-9],0,[0-9]*,-;" || fail "/dev/kmsg record: $(head -n 1 /dev/kmsg)"
dmesg -c > /dev/null
dmesg | grep -q "booting" && fail "dmesg -c did not clear"
echo "dmesg: boot log, /dev/kmsg, clear"
echo "procfs: all checks passed"
