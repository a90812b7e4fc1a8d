# busybox sh, non-interactive: loops, pipes, redirection to files, $?, command
# substitution, functions, subshells, background jobs and traps. Prints only what is the
# same on any Linux (no paths, pids or times); compared with the host's output.
d=$(mktemp -d) && cd "$d" || exit 90
i=0
while [ $i -lt 5 ]; do i=$((i + 1)); echo "line $i"; done > lines.txt
for w in b a c a b a; do echo $w; done | sort | uniq -c
cat lines.txt | wc -l
false; echo "status $?"
(exit 7); echo "subshell $?"
x=$(echo hello | tr a-z A-Z); echo "upper $x"
f() { echo "args $# $1 $2"; return 3; }; f one two; echo "func $?"
case "$x" in HEL*) echo matched;; *) echo no;; esac
echo append >> lines.txt; tail -n 2 lines.txt; head -n 1 lines.txt
echo err 1>&2 2>/dev/null; echo "after err"
read first < lines.txt; echo "read $first"
n=0; for f in $(seq 1 20); do n=$((n + f)); done; echo "sum $n"
echo a b c | { read p q r; echo "$r$q$p"; }
exec 3> fd3.txt; echo "via fd 3" >&3; exec 3>&-; cat fd3.txt
ls; rm lines.txt fd3.txt; ls | wc -l
sleep 0.1 & wait $!; echo "background $?"
(exit 4) & wait $!; echo "background status $?"
sh -c 'kill -TERM $$'; echo "killed $?"
sh -c 'exit 300'; echo "wrapped $?"
trap 'echo trapped USR1' USR1; kill -USR1 $$; echo "after trap"
nosuchcommand 2>/dev/null; echo "missing $?"
yes | head -n 3
echo one; echo two | cat -n
cd /; rm -rf "$d"; [ -e "$d" ] || echo removed
exit 5
