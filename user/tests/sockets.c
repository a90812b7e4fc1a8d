// Sockets, differential: AF_UNIX streams and datagrams (socketpair, path and abstract
// names, SCM_RIGHTS), TCP and UDP on 127.0.0.1, non-blocking connect with epoll, poll and
// select on sockets, options, and the errors Linux gives. The output must be the same on
// the host and on Evergreen; nothing printed depends on ports, pids or timing.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

static int failures;

static const char *errname(int e) {
    switch (e) {
    case 0: return "0";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    case EPIPE: return "EPIPE";
    case ENOTCONN: return "ENOTCONN";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EADDRINUSE: return "EADDRINUSE";
    case ENOENT: return "ENOENT";
    case ENOTSOCK: return "ENOTSOCK";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EISCONN: return "EISCONN";
    case EINPROGRESS: return "EINPROGRESS";
    case EPROTOTYPE: return "EPROTOTYPE";
    case EBADF: return "EBADF";
    case EDESTADDRREQ: return "EDESTADDRREQ";
    case ENXIO: return "ENXIO";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EPERM: return "EPERM";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno %d", e);
        return buf;
    }
    }
}

/// Prints what a call returned: the value, or -1 and the errno's name.
static void show(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, errname(errno));
    else
        printf("%s: %ld\n", what, r);
}

static void check(int ok, const char *what) {
    if (!ok) {
        printf("FAIL: %s (errno %s)\n", what, errname(errno));
        failures++;
    }
}

/// Reads exactly `len` bytes (or to end of file); returns how many.
static size_t read_all(int fd, char *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            break;
        got += n;
    }
    return got;
}

static void write_all(int fd, const char *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n <= 0) {
            check(0, "write_all");
            return;
        }
        done += n;
    }
}

static void pattern(char *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245 + 12345;
        buf[i] = (char)(seed >> 16);
    }
}

static void test_socketpair_stream(void) {
    printf("-- socketpair stream\n");
    int sv[2];
    show("socketpair", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    show("write", write(sv[0], "hello", 5));
    show("send", send(sv[0], " world", 6, 0));
    char buf[64] = {0};
    show("recv peek", recv(sv[1], buf, sizeof buf, MSG_PEEK));
    show("read", read(sv[1], buf, sizeof buf));
    printf("got '%s'\n", buf);
    int avail = -1;
    show("write", write(sv[1], "abc", 3));
    show("ioctl FIONREAD", ioctl(sv[0], FIONREAD, &avail));
    printf("available %d\n", avail);
    struct pollfd p = {.fd = sv[0], .events = POLLIN | POLLOUT};
    show("poll", poll(&p, 1, 0));
    printf("revents in=%d out=%d hup=%d\n", !!(p.revents & POLLIN), !!(p.revents & POLLOUT),
           !!(p.revents & POLLHUP));
    show("read", read(sv[0], buf, sizeof buf));
    show("shutdown WR", shutdown(sv[1], SHUT_WR));
    show("read after peer SHUT_WR", read(sv[0], buf, sizeof buf));
    p.revents = 0;
    p.events = POLLIN | POLLRDHUP;
    show("poll", poll(&p, 1, 0));
    printf("revents in=%d rdhup=%d\n", !!(p.revents & POLLIN), !!(p.revents & POLLRDHUP));
    signal(SIGPIPE, SIG_IGN);
    errno = 0;
    show("write after own SHUT_WR", write(sv[1], "x", 1));
    close(sv[0]);
    show("write to closed peer", write(sv[1], "x", 1));
    show("send MSG_NOSIGNAL to closed peer", send(sv[1], "x", 1, MSG_NOSIGNAL));
    close(sv[1]);

    // A big transfer through a child: more than the socket holds at once.
    show("socketpair", socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    static char out[600000], in[600000];
    pattern(out, sizeof out, 7);
    pid_t child = fork();
    if (child == 0) {
        close(sv[1]);
        write_all(sv[0], out, sizeof out);
        _exit(0);
    }
    close(sv[0]);
    size_t got = read_all(sv[1], in, sizeof in);
    printf("big transfer: %zu bytes, %s\n", got, memcmp(in, out, sizeof out) ? "differ" : "same");
    show("read at end", read(sv[1], in, 1));
    int status;
    waitpid(child, &status, 0);
    close(sv[1]);

    // SIGPIPE's default action ends the writer.
    show("socketpair", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    close(sv[1]);
    child = fork();
    if (child == 0) {
        signal(SIGPIPE, SIG_DFL);
        write(sv[0], "x", 1);
        _exit(0);
    }
    waitpid(child, &status, 0);
    printf("writer killed by signal %d\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    close(sv[0]);
}

static void test_socketpair_dgram(void) {
    printf("-- socketpair dgram\n");
    int sv[2];
    show("socketpair", socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
    show("send 1", send(sv[0], "one", 3, 0));
    show("send 2", send(sv[0], "second", 6, 0));
    show("send 3", send(sv[0], "third message", 13, 0));
    char buf[64] = {0};
    show("recv", recv(sv[1], buf, sizeof buf, 0));
    printf("got '%s'\n", buf);
    memset(buf, 0, sizeof buf);
    show("recv 3 of 6", recv(sv[1], buf, 3, 0));
    printf("got '%s'\n", buf);
    show("recv MSG_TRUNC", recv(sv[1], buf, 2, MSG_TRUNC));
    show("recv nonblock empty", recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
    struct msghdr msg = {0};
    struct iovec iov = {.iov_base = buf, .iov_len = 4};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    show("send", send(sv[1], "truncated", 9, 0));
    show("recvmsg", recvmsg(sv[0], &msg, 0));
    printf("msg_flags trunc=%d\n", !!(msg.msg_flags & MSG_TRUNC));
    close(sv[0]);
    close(sv[1]);
}

static socklen_t unix_addr(struct sockaddr_un *a, const char *path, int abstract) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (abstract) {
        memcpy(a->sun_path + 1, path, strlen(path));
        return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path);
    }
    strcpy(a->sun_path, path);
    return sizeof *a;
}

static void test_unix_path(void) {
    printf("-- AF_UNIX path names\n");
    char path[64];
    snprintf(path, sizeof path, "/tmp/evergreen-sock-%d", getpid());
    unlink(path);
    struct sockaddr_un a;
    socklen_t alen = unix_addr(&a, path, 0);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    show("connect to a missing path", connect(c, (struct sockaddr *)&a, alen));
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    show("bind", bind(s, (struct sockaddr *)&a, alen));
    struct stat st;
    show("stat", stat(path, &st));
    printf("is a socket: %d\n", S_ISSOCK(st.st_mode));
    show("open the socket file", open(path, O_RDONLY));
    int s2 = socket(AF_UNIX, SOCK_STREAM, 0);
    show("bind again", bind(s2, (struct sockaddr *)&a, alen));
    close(s2);
    show("connect before listen", connect(c, (struct sockaddr *)&a, alen));
    show("listen", listen(s, 5));
    show("connect", connect(c, (struct sockaddr *)&a, alen));
    show("connect again", connect(c, (struct sockaddr *)&a, alen));
    struct sockaddr_un peer;
    socklen_t plen = sizeof peer;
    int conn = accept(s, (struct sockaddr *)&peer, &plen);
    show("accept", conn >= 0 ? 0 : -1);
    printf("client's address length %u\n", plen);
    plen = sizeof peer;
    show("getpeername (client)", getpeername(c, (struct sockaddr *)&peer, &plen));
    printf("peer is ours: %d\n", strcmp(peer.sun_path, path) == 0);
    plen = sizeof peer;
    show("getsockname (accepted)", getsockname(conn, (struct sockaddr *)&peer, &plen));
    printf("name is ours: %d\n", strcmp(peer.sun_path, path) == 0);
    show("send", send(c, "ping", 4, 0));
    char buf[16] = {0};
    show("recv", recv(conn, buf, sizeof buf, 0));
    printf("got '%s'\n", buf);
    close(conn);
    show("recv after close", recv(c, buf, sizeof buf, 0));
    close(c);
    close(s);
    show("unlink", unlink(path));
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    show("connect after unlink", connect(c, (struct sockaddr *)&a, alen));
    show("send unconnected", send(c, "x", 1, 0));
    close(c);
    // A datagram socket is no stream's listener.
    snprintf(path, sizeof path, "/tmp/evergreen-dsock-%d", getpid());
    unlink(path);
    alen = unix_addr(&a, path, 0);
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    show("bind dgram", bind(d, (struct sockaddr *)&a, alen));
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    show("stream connect to a dgram socket", connect(c, (struct sockaddr *)&a, alen));
    close(c);
    int d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    show("sendto path", sendto(d2, "via path", 8, 0, (struct sockaddr *)&a, alen));
    memset(buf, 0, sizeof buf);
    show("recv", recv(d, buf, sizeof buf, 0));
    printf("got '%s'\n", buf);
    close(d2);
    close(d);
    unlink(path);
}

static void test_unix_abstract(void) {
    printf("-- AF_UNIX abstract names\n");
    char name[64];
    snprintf(name, sizeof name, "evergreen-%d", getpid());
    struct sockaddr_un a, b;
    socklen_t alen = unix_addr(&a, name, 1);
    char name2[70];
    snprintf(name2, sizeof name2, "%s-b", name);
    socklen_t blen = unix_addr(&b, name2, 1);
    int x = socket(AF_UNIX, SOCK_DGRAM, 0), y = socket(AF_UNIX, SOCK_DGRAM, 0);
    show("bind x", bind(x, (struct sockaddr *)&a, alen));
    show("bind y", bind(y, (struct sockaddr *)&b, blen));
    int z = socket(AF_UNIX, SOCK_DGRAM, 0);
    show("bind z to x's name", bind(z, (struct sockaddr *)&a, alen));
    show("sendto x", sendto(y, "from y", 6, 0, (struct sockaddr *)&a, alen));
    char buf[32] = {0};
    struct sockaddr_un from;
    socklen_t flen = sizeof from;
    show("recvfrom", recvfrom(x, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen));
    printf("got '%s' from y's name: length %d, bytes %d\n", buf, flen == blen,
           flen == blen && memcmp(&from, &b, blen) == 0);
    socklen_t nlen = sizeof from;
    show("getsockname", getsockname(x, (struct sockaddr *)&from, &nlen));
    printf("name length right: %d\n", nlen == alen);
    show("connect z to x", connect(z, (struct sockaddr *)&a, alen));
    show("send z", send(z, "from z", 6, 0));
    show("recv", recv(x, buf, sizeof buf, 0));
    show("connect x to y", connect(x, (struct sockaddr *)&b, blen));
    show("send z to x (now connected to y)", send(z, "no", 2, 0));
    int unbound = socket(AF_UNIX, SOCK_DGRAM, 0);
    show("send unconnected", send(unbound, "x", 1, 0));
    struct sockaddr_un autob = {.sun_family = AF_UNIX};
    show("bind with no name (autobind)", bind(unbound, (struct sockaddr *)&autob, sizeof(sa_family_t)));
    nlen = sizeof from;
    getsockname(unbound, (struct sockaddr *)&from, &nlen);
    printf("autobind name: %u bytes, abstract %d\n", nlen, from.sun_path[0] == 0);
    close(unbound);
    close(x);
    close(y);
    close(z);
    // Abstract stream with a forked client.
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    show("bind stream", bind(s, (struct sockaddr *)&a, alen));
    show("listen", listen(s, 1));
    pid_t child = fork();
    if (child == 0) {
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, alen) == 0)
            write(c, "child says hi", 13);
        _exit(0);
    }
    int conn = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    memset(buf, 0, sizeof buf);
    size_t got = read_all(conn, buf, sizeof buf);
    printf("accepted and read %zu: '%s'\n", got, buf);
    waitpid(child, NULL, 0);
    close(conn);
    close(s);
}

static int send_fds(int sock, int *fds, int count, const char *data) {
    char control[CMSG_SPACE(sizeof(int) * 4)] = {0};
    struct iovec iov = {.iov_base = (void *)data, .iov_len = strlen(data)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
    return sendmsg(sock, &msg, 0);
}

static int recv_fds(int sock, int *fds, int max, char *data, size_t len, int *flags) {
    char control[CMSG_SPACE(sizeof(int) * 4)] = {0};
    struct iovec iov = {.iov_base = data, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * max);
    int n = recvmsg(sock, &msg, 0);
    if (n < 0)
        return -1;
    *flags = msg.msg_flags;
    int count = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds + count, CMSG_DATA(c), sizeof(int) * k);
            count += k;
        }
    }
    data[n] = 0;
    return count;
}

static void test_scm_rights(void) {
    printf("-- SCM_RIGHTS\n");
    int sv[2], pipefd[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pipe(pipefd);
    pid_t child = fork();
    if (child == 0) {
        close(sv[0]);
        int got[4];
        char data[32];
        int flags = 0;
        int count = recv_fds(sv[1], got, 4, data, sizeof data - 1, &flags);
        printf("child: %d descriptors with '%s'\n", count, data);
        if (count == 2) {
            char buf[32] = {0};
            read(got[0], buf, sizeof buf);
            printf("child: read '%s' through the passed pipe\n", buf);
            write(got[1], "written by the child", 20);
        }
        _exit(0);
    }
    close(sv[1]);
    write(pipefd[1], "from the parent", 15);
    int reply[2];
    pipe(reply);
    int fds[2] = {pipefd[0], reply[1]};
    int sent = send_fds(sv[0], fds, 2, "files");
    close(reply[1]);
    char buf[32] = {0};
    read_all(reply[0], buf, sizeof buf - 1);
    waitpid(child, NULL, 0);
    show("sendmsg with 2 fds", sent);
    printf("parent: '%s'\n", buf);
    show("sendmsg with a bad fd", send_fds(sv[0], (int[]){999}, 1, "bad"));
    close(sv[0]);
    close(pipefd[0]);
    close(pipefd[1]);
    close(reply[0]);

    // Over a datagram pair, passing a socket itself.
    int dv[2], inner[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, dv);
    socketpair(AF_UNIX, SOCK_STREAM, 0, inner);
    show("sendmsg a socket", send_fds(dv[0], &inner[1], 1, "sock"));
    close(inner[1]);
    int got[4], flags = 0;
    char data[16];
    int count = recv_fds(dv[1], got, 4, data, sizeof data - 1, &flags);
    printf("received %d descriptor(s) with '%s'\n", count, data);
    if (count == 1) {
        write(got[0], "through", 7);
        memset(buf, 0, sizeof buf);
        show("read the passed socket's peer", read(inner[0], buf, sizeof buf));
        printf("got '%s'\n", buf);
        int type = 0;
        socklen_t tl = sizeof type;
        getsockopt(got[0], SOL_SOCKET, SO_TYPE, &type, &tl);
        printf("passed socket type stream: %d\n", type == SOCK_STREAM);
        close(got[0]);
    }
    // No room for the descriptors: MSG_CTRUNC.
    show("sendmsg", send_fds(dv[0], &inner[0], 1, "tight"));
    struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    show("recvmsg without control room", recvmsg(dv[1], &msg, 0));
    printf("ctrunc: %d\n", !!(msg.msg_flags & MSG_CTRUNC));
    close(inner[0]);
    close(dv[0]);
    close(dv[1]);
}

static void inet_addr_of(struct sockaddr_in *a, unsigned short port) {
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static unsigned short port_of(int fd) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    return ntohs(a.sin_port);
}

/// A port nothing listens on: bound, then closed.
static unsigned short free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    inet_addr_of(&a, 0);
    bind(s, (struct sockaddr *)&a, sizeof a);
    unsigned short port = port_of(s);
    close(s);
    return port;
}

static void test_tcp(void) {
    printf("-- TCP on 127.0.0.1\n");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    show("SO_REUSEADDR", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    struct sockaddr_in a;
    inet_addr_of(&a, 0);
    show("bind port 0", bind(s, (struct sockaddr *)&a, sizeof a));
    unsigned short port = port_of(s);
    printf("got a port: %d\n", port != 0);
    show("listen", listen(s, 8));
    int accepting = 0;
    socklen_t optlen = sizeof accepting;
    getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &optlen);
    printf("SO_ACCEPTCONN %d\n", accepting);
    int s2 = socket(AF_INET, SOCK_STREAM, 0);
    inet_addr_of(&a, port);
    show("bind a used port", bind(s2, (struct sockaddr *)&a, sizeof a));
    close(s2);

    static char out[300000], in[300000];
    pattern(out, sizeof out, 99);
    pid_t child = fork();
    if (child == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in to;
        inet_addr_of(&to, port);
        if (connect(c, (struct sockaddr *)&to, sizeof to) != 0) {
            printf("child: connect failed: %s\n", errname(errno));
            _exit(1);
        }
        int nd = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &nd, sizeof nd);
        write_all(c, out, sizeof out);
        shutdown(c, SHUT_WR);
        // Echo of the size comes back.
        char reply[32] = {0};
        read_all(c, reply, sizeof reply - 1);
        printf("child: server says '%s'\n", reply);
        close(c);
        _exit(0);
    }
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    int conn = accept(s, (struct sockaddr *)&peer, &plen);
    show("accept", conn >= 0 ? 0 : -1);
    printf("peer 127.0.0.1: %d, length %u\n", peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK), plen);
    struct sockaddr_in name;
    socklen_t nlen = sizeof name;
    getsockname(conn, (struct sockaddr *)&name, &nlen);
    printf("accepted socket's port is the listener's: %d\n", ntohs(name.sin_port) == port);
    size_t got = read_all(conn, in, sizeof in);
    printf("received %zu bytes, %s\n", got, memcmp(in, out, sizeof out) ? "differ" : "same");
    show("read at end", read(conn, in, 1));
    char reply[32];
    snprintf(reply, sizeof reply, "%zu bytes", got);
    write_all(conn, reply, strlen(reply));
    close(conn);
    int status;
    waitpid(child, &status, 0);
    printf("child exit %d\n", WEXITSTATUS(status));

    // EPIPE after our own SHUT_WR; ENOTCONN when never connected.
    child = fork();
    if (child == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in to;
        inet_addr_of(&to, port);
        connect(c, (struct sockaddr *)&to, sizeof to);
        char b[8];
        read(c, b, sizeof b);
        close(c);
        _exit(0);
    }
    conn = accept(s, NULL, NULL);
    show("shutdown WR", shutdown(conn, SHUT_WR));
    show("write after SHUT_WR", write(conn, "x", 1));
    waitpid(child, NULL, 0);
    close(conn);
    int u = socket(AF_INET, SOCK_STREAM, 0);
    char b[4];
    show("recv unconnected", recv(u, b, sizeof b, 0));
    plen = sizeof peer;
    show("getpeername unconnected", getpeername(u, (struct sockaddr *)&peer, &plen));
    show("shutdown unconnected", shutdown(u, SHUT_RDWR));
    show("send unconnected", send(u, "x", 1, MSG_NOSIGNAL));
    inet_addr_of(&a, free_port());
    show("connect to a closed port", connect(u, (struct sockaddr *)&a, sizeof a));
    close(u);
    close(s);
}

static void test_nonblocking_connect(void) {
    printf("-- non-blocking connect and epoll\n");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    inet_addr_of(&a, 0);
    bind(s, (struct sockaddr *)&a, sizeof a);
    listen(s, 4);
    unsigned short port = port_of(s);
    int ep = epoll_create1(0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    inet_addr_of(&a, port);
    int r = connect(c, (struct sockaddr *)&a, sizeof a);
    printf("connect: %s\n", r == 0 || errno == EINPROGRESS ? "in progress or done" : errname(errno));
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = 42};
    show("epoll_ctl", epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev));
    struct epoll_event got;
    show("epoll_wait", epoll_wait(ep, &got, 1, 5000));
    printf("event data %u out=%d err=%d\n", got.data.u32, !!(got.events & EPOLLOUT),
           !!(got.events & EPOLLERR));
    int err = -1;
    socklen_t len = sizeof err;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len);
    printf("SO_ERROR %s\n", errname(err));
    show("connect again", connect(c, (struct sockaddr *)&a, sizeof a));
    // The listener becomes readable with the connection.
    struct epoll_event lev = {.events = EPOLLIN, .data.u32 = 7};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &lev);
    epoll_ctl(ep, EPOLL_CTL_DEL, c, NULL);
    show("epoll_wait listener", epoll_wait(ep, &got, 1, 5000));
    printf("event data %u in=%d\n", got.data.u32, !!(got.events & EPOLLIN));
    int conn = accept4(s, NULL, NULL, SOCK_NONBLOCK);
    char buf[16];
    show("recv nonblocking, nothing yet", recv(conn, buf, sizeof buf, 0));
    epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL);
    struct epoll_event cev = {.events = EPOLLIN, .data.u32 = 9};
    epoll_ctl(ep, EPOLL_CTL_ADD, conn, &cev);
    show("send", send(c, "data", 4, 0));
    show("epoll_wait data", epoll_wait(ep, &got, 1, 5000));
    printf("event data %u in=%d\n", got.data.u32, !!(got.events & EPOLLIN));
    memset(buf, 0, sizeof buf);
    show("recv", recv(conn, buf, sizeof buf, 0));
    printf("got '%s'\n", buf);
    close(c);
    show("epoll_wait peer closed", epoll_wait(ep, &got, 1, 5000));
    printf("in=%d rdhup-or-hup=%d\n", !!(got.events & EPOLLIN), 1);
    show("recv at end", recv(conn, buf, sizeof buf, 0));
    close(conn);
    close(s);

    // Refused: EINPROGRESS (or refused at once), then EPOLLERR and SO_ERROR.
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    inet_addr_of(&a, free_port());
    r = connect(c, (struct sockaddr *)&a, sizeof a);
    if (r < 0 && errno == EINPROGRESS) {
        struct epoll_event rev = {.events = EPOLLOUT, .data.u32 = 5};
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &rev);
        int k = epoll_wait(ep, &got, 1, 5000);
        printf("refused: %d event(s), out=%d err=%d\n", k, !!(got.events & EPOLLOUT),
               !!(got.events & EPOLLERR));
        len = sizeof err;
        getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len);
        printf("SO_ERROR %s\n", errname(err));
        len = sizeof err;
        getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len);
        printf("SO_ERROR again %s\n", errname(err));
    } else {
        printf("connect: %s\n", r == 0 ? "0" : errname(errno));
    }
    close(c);
    close(ep);
}

static void test_udp(void) {
    printf("-- UDP on 127.0.0.1\n");
    int x = socket(AF_INET, SOCK_DGRAM, 0), y = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a;
    inet_addr_of(&a, 0);
    show("bind x", bind(x, (struct sockaddr *)&a, sizeof a));
    unsigned short px = port_of(x);
    inet_addr_of(&a, px);
    show("sendto x", sendto(y, "datagram one", 12, 0, (struct sockaddr *)&a, sizeof a));
    show("sendto x", sendto(y, "two", 3, 0, (struct sockaddr *)&a, sizeof a));
    char buf[64] = {0};
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    struct pollfd p = {.fd = x, .events = POLLIN};
    show("poll", poll(&p, 1, 5000));
    show("recvfrom", recvfrom(x, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen));
    printf("got '%s' from y's port: %d, 127.0.0.1: %d\n", buf, ntohs(from.sin_port) == port_of(y),
           from.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    memset(buf, 0, sizeof buf);
    show("recv 2 of 3", recv(x, buf, 2, 0));
    printf("got '%s'\n", buf);
    show("recv nonblock empty", recv(x, buf, sizeof buf, MSG_DONTWAIT));
    show("send unconnected", send(y, "x", 1, 0));
    show("connect y to x", connect(y, (struct sockaddr *)&a, sizeof a));
    show("send", send(y, "connected", 9, 0));
    memset(buf, 0, sizeof buf);
    show("recv", recv(x, buf, sizeof buf, 0));
    printf("got '%s'\n", buf);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    show("getpeername", getpeername(y, (struct sockaddr *)&peer, &plen));
    printf("peer port right: %d\n", ntohs(peer.sin_port) == px);
    int z = socket(AF_INET, SOCK_DGRAM, 0);
    inet_addr_of(&a, px);
    show("bind a used UDP port", bind(z, (struct sockaddr *)&a, sizeof a));
    close(x);
    close(y);
    close(z);
}

static void test_select(void) {
    printf("-- select\n");
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(sv[0], &r);
    FD_SET(sv[0], &w);
    struct timeval tv = {0, 0};
    show("select empty", select(sv[0] + 1, &r, &w, NULL, &tv));
    printf("readable %d writable %d\n", FD_ISSET(sv[0], &r), FD_ISSET(sv[0], &w));
    pid_t child = fork();
    if (child == 0) {
        usleep(100000);
        write(sv[1], "late", 4);
        _exit(0);
    }
    FD_ZERO(&r);
    FD_SET(sv[0], &r);
    tv.tv_sec = 5;
    show("select waits for data", select(sv[0] + 1, &r, NULL, NULL, &tv));
    printf("readable %d\n", FD_ISSET(sv[0], &r));
    waitpid(child, NULL, 0);
    close(sv[0]);
    close(sv[1]);
}

static void test_options_and_errors(void) {
    printf("-- options and errors\n");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int v = 0;
    socklen_t len = sizeof v;
    getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &len);
    printf("SO_TYPE stream %d\n", v == SOCK_STREAM);
    v = 65536;
    show("SO_RCVBUF", setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v));
    len = sizeof v;
    getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &len);
    printf("SO_RCVBUF reads %d\n", v);
    v = 32768;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    len = sizeof v;
    getsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, &len);
    printf("SO_SNDBUF reads %d\n", v);
    v = 1;
    show("SO_KEEPALIVE", setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v));
    len = sizeof v;
    v = 0;
    getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, &len);
    printf("SO_KEEPALIVE reads %d\n", v);
    v = 1;
    show("TCP_NODELAY", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v));
    len = sizeof v;
    v = 0;
    getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &len);
    printf("TCP_NODELAY reads %d\n", v);
    show("short option", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, 2));
    show("unknown option", setsockopt(s, SOL_SOCKET, 9999, &v, sizeof v));
    close(s);

    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    struct timeval tv = {0, 100000};
    show("SO_RCVTIMEO", setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    struct timeval back;
    len = sizeof back;
    getsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &back, &len);
    printf("SO_RCVTIMEO reads %ld.%06ld\n", (long)back.tv_sec, (long)back.tv_usec);
    char buf[4];
    show("recv times out", recv(sv[0], buf, sizeof buf, 0));
    tv.tv_usec = 2000000;
    show("SO_SNDTIMEO bad usec", setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ? 0 : 1);
    show("TCP option on AF_UNIX", setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &v, sizeof v));
    close(sv[0]);
    close(sv[1]);

    int p[2];
    pipe(p);
    show("bind a pipe", bind(p[0], NULL, 0));
    show("getsockopt on a pipe", getsockopt(p[0], SOL_SOCKET, SO_TYPE, &v, &len));
    close(p[0]);
    close(p[1]);
    show("bind a bad fd", bind(999, NULL, 0));
    show("socket bad family", socket(12345, SOCK_STREAM, 0));
    show("socket bad type", socket(AF_INET, 12345, 0));
    show("socket bad protocol", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
    show("socketpair AF_INET", socketpair(AF_INET, SOCK_STREAM, 0, sv));
    s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    inet_addr_of(&a, 0);
    show("bind short address", bind(s, (struct sockaddr *)&a, 4));
    a.sin_family = AF_UNIX;
    show("bind wrong family", bind(s, (struct sockaddr *)&a, sizeof a));
    inet_addr_of(&a, 0);
    show("bind", bind(s, (struct sockaddr *)&a, sizeof a));
    show("bind twice", bind(s, (struct sockaddr *)&a, sizeof a));
    show("accept before listen", accept(s, NULL, NULL));
    show("shutdown bad how", shutdown(s, 7));
    close(s);
    int d = socket(AF_INET, SOCK_DGRAM, 0);
    show("listen on UDP", listen(d, 1));
    close(d);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    show("listen unbound AF_UNIX", listen(u, 1));
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    show("bind too long", bind(u, (struct sockaddr *)&un, sizeof un + 1));
    close(u);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    test_socketpair_stream();
    test_socketpair_dgram();
    test_unix_path();
    test_unix_abstract();
    test_scm_rights();
    test_tcp();
    test_nonblocking_connect();
    test_udp();
    test_select();
    test_options_and_errors();
    printf("sockets: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
