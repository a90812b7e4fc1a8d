# Debian's own dynamically linked programs, run by absolute path: on Evergreen they were
# copied in with the libraries and the interpreter `ldd` lists (runner/src/systest/dynamic.rs).
# Every line of output and every exit status must be the host's.
export TZ=UTC
dir=$(mktemp -d /tmp/dynamic.XXXXXX) || exit 1
cd "$dir" || exit 1
mkdir -p a/b/c d
printf 'pear\napple\nfig\nbanana\napple\nCherry\n' > a/fruit
seq 1 3000 > a/b/numbers
printf 'x' > a/b/c/one
printf 'b,2\na,10\nc,1\n' > d/pairs
ln -s fruit a/link
touch -d '2024-01-02 03:04:05' a/fruit a/b/numbers a/b/c/one d/pairs
for bin in ls sort sha256sum find python3; do
    [ -x /usr/bin/$bin ] || echo "$bin: not on this system, skipped"
done

echo "== ls"
/usr/bin/ls a
/usr/bin/ls -R . | tail -n +2
/usr/bin/ls -l a/fruit a/b/numbers d/pairs
/usr/bin/ls -lL a/link
/usr/bin/ls -1 -S a/fruit a/b/numbers d/pairs
/usr/bin/ls -d a/*
/usr/bin/ls no-such-file
echo "status $?"

echo "== sort"
/usr/bin/sort a/fruit
/usr/bin/sort -u -f a/fruit
/usr/bin/sort -n -r a/b/numbers | head -n 3
/usr/bin/sort -t, -k2 -n d/pairs
/usr/bin/sort -R a/fruit | /usr/bin/sort -r
/usr/bin/sort -c a/fruit
echo "status $?"

echo "== sha256sum"
/usr/bin/sha256sum a/fruit a/b/numbers
/usr/bin/sha256sum < a/b/numbers
/usr/bin/sha256sum /usr/bin/sort
head -c 3000000 /dev/zero | /usr/bin/sha256sum
/usr/bin/sha256sum a/fruit > sums && /usr/bin/sha256sum -c sums
echo "status $?"

echo "== find"
/usr/bin/find . | /usr/bin/sort
/usr/bin/find . -type f -name '*u*' | /usr/bin/sort
/usr/bin/find a -type l
/usr/bin/find . -type f -size +2k
/usr/bin/find . -mindepth 2 -type d | /usr/bin/sort
/usr/bin/find . -newer a/fruit -type f | /usr/bin/sort
/usr/bin/find no-such-dir
echo "status $?"

echo "== python3"
/usr/bin/python3 -c 'print(sum(range(10**6)))'
echo "status $?"

cd / && rm -rf "$dir"
