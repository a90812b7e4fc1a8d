# Downloads the file the host serves through guestfwd (10.0.2.100:80, by its name in /etc/hosts) with busybox wget and
# prints its size and SHA-256: the runner compares them with the file it served.
set -e
# evergreen-host is 10.0.2.100 in /etc/hosts.
wget -q -O /tmp/download http://evergreen-host/file
ls -l /tmp/download | awk '{print "net-wget: size", $5}'
sha256sum /tmp/download | awk '{print "net-wget: sha256", $1}'
rm /tmp/download
# guestfwd never relays the host's FIN, so wget's closed connection waits in FIN-WAIT-2
# until the kernel gives up on it (1 s); the runner checks that its memory came back.
sleep 2
echo "net-wget: done"
