# busybox applets on files in the RAM file system: text tools, checksums, find, tar and
# gzip. Compared with the same busybox on the host.
d=$(mktemp -d) && cd "$d" || exit 90
umask 022
seq 1 200 > nums
printf 'pear 3\napple 10\nfig 7\napple 2\nkiwi 5\n' > fruit
sort fruit; sort -k2 -n fruit; sort -u -k1,1 fruit | cut -d' ' -f1
grep -c 1 nums; grep -E '^(19|2)[0-9]?$' nums | tr '\n' ,; echo
sed -n '5,8p;/^150$/q' nums | sed 's/^/n=/' | tail -n 3
awk '{ s += $2; c[$1]++ } END { print s; for (k in c) n++; print n " kinds" }' fruit
awk '$2 > 4 { printf "%s:%d\n", toupper($1), $2 * 2 }' fruit
head -c 20 nums | od -c | head -n 2
cut -c1-3 fruit | tr a-z A-Z | uniq
seq 1 10 | xargs -n 3 echo
seq 5 | xargs printf '<%s>'; echo
md5sum nums fruit; sha256sum fruit; sha1sum nums
mkdir -p a/b/c; echo x > a/b/c/f1; echo yy > a/b/f2; ln -s f2 a/b/link
find a | sort; find a -type f -name 'f*' | sort; find a -type l
tar cf t.tar a; tar tf t.tar | sort; rm -rf a; tar xf t.tar; cat a/b/c/f1 a/b/link
tar czf t.tgz a; rm -rf a; tar xzf t.tgz; tar tzf t.tgz | sort; cat a/b/c/f1
gzip -9 nums; ls nums*; gzip -dc nums.gz | wc -l; gunzip nums.gz; wc -c nums
ls -l a/b | tail -n +2 | awk '{print $1, $NF}'
wc fruit; wc -w < fruit
cp fruit f2; mv f2 f3; cmp fruit f3 && echo same; ls
echo "$(cat fruit | wc -l) lines"
cd /; rm -rf "$d"
