/* eventfd and epoll, compared with the host: eventfd's counter (sum on write, whole or one
 * per read in semaphore mode, EAGAIN when empty or full, EINVAL for short buffers and
 * UINT64_MAX) and its readiness in poll; epoll's interest list (ADD/MOD/DEL errors, EPERM for
 * regular files, EINVAL for itself, ELOOP for a cycle), level-triggered, edge-triggered and
 * one-shot reports on pipes and eventfds, EPOLLOUT and EPOLLHUP, a closed descriptor leaving
 * the list, timeouts, a blocking wait woken by another process, and an epoll inside an
 * epoll. Prints only what is the same on any Linux. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *err(long rc) { return rc < 0 ? strerror(errno) : "ok"; }

static void eventfds(void) {
    int fd = eventfd(3, EFD_NONBLOCK);
    uint64_t v = 4;
    write(fd, &v, 8);
    v = 0;
    long n = read(fd, &v, 8);
    printf("eventfd: read %ld -> %llu\n", n, (unsigned long long)v);
    n = read(fd, &v, 8);
    printf("eventfd: empty read %s\n", err(n));
    n = read(fd, &v, 4);
    printf("eventfd: short read %s\n", err(n));
    v = UINT64_MAX;
    printf("eventfd: write UINT64_MAX %s\n", err(write(fd, &v, 8)));
    v = UINT64_MAX - 1;
    printf("eventfd: write max %s\n", err(write(fd, &v, 8)));
    v = 1;
    printf("eventfd: write past max %s\n", err(write(fd, &v, 8)));
    struct pollfd p = {fd, POLLIN | POLLOUT, 0};
    poll(&p, 1, 0);
    printf("eventfd: full poll revents %#x\n", p.revents);
    read(fd, &v, 8);
    p.revents = 0;
    poll(&p, 1, 0);
    printf("eventfd: drained poll revents %#x\n", p.revents);
    struct stat st;
    fstat(fd, &st);
    printf("eventfd: st_mode %#o\n", st.st_mode);
    close(fd);

    fd = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    uint64_t a = 0, b = 0, c = 0;
    read(fd, &a, 8);
    read(fd, &b, 8);
    n = read(fd, &c, 8);
    printf("eventfd: semaphore reads %llu %llu, then %s\n", (unsigned long long)a,
           (unsigned long long)b, err(n));
    close(fd);
    printf("eventfd: bad flags %s\n", err(eventfd(0, 0x40000)));
}

static int wait_events(int ep, int timeout, struct epoll_event *out, int max) {
    memset(out, 0, sizeof(*out) * max);
    return epoll_wait(ep, out, max, timeout);
}

static void epolls(void) {
    struct epoll_event ev, out[8];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int p[2];
    pipe(p);
    ev.events = EPOLLIN;
    ev.data.u64 = 0x1111;
    printf("epoll: add %s", err(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev)));
    printf(", again %s\n", err(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev)));
    printf("epoll: mod unknown %s", err(epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev)));
    printf(", del unknown %s\n", err(epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL)));
    printf("epoll: add itself %s", err(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev)));
    printf(", bad op %s", err(epoll_ctl(ep, 9, p[0], &ev)));
    printf(", bad fd %s\n", err(epoll_ctl(ep, EPOLL_CTL_ADD, 999, &ev)));
    int file = open("/", O_RDONLY | O_DIRECTORY);
    printf("epoll: add a directory %s\n", err(epoll_ctl(ep, EPOLL_CTL_ADD, file, &ev)));
    close(file);
    printf("epoll: nothing ready: %d\n", wait_events(ep, 0, out, 8));
    printf("epoll: timeout 30 ms: %d\n", wait_events(ep, 30, out, 8));

    write(p[1], "x", 1);
    int n = wait_events(ep, 0, out, 8);
    printf("epoll: level: %d event(s) %#x data %#llx\n", n, out[0].events, (unsigned long long)out[0].data.u64);
    n = wait_events(ep, 0, out, 8);
    printf("epoll: level again: %d\n", n);

    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = 0x2222;
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    printf("epoll: edge: %d", wait_events(ep, 0, out, 8));
    printf(", again %d", wait_events(ep, 0, out, 8));
    write(p[1], "y", 1);
    printf(", after a new write %d", wait_events(ep, 0, out, 8));
    printf(", again %d\n", wait_events(ep, 0, out, 8));

    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = 0x3333;
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    printf("epoll: oneshot: %d", wait_events(ep, 0, out, 8));
    printf(", again %d", wait_events(ep, 0, out, 8));
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    printf(", re-armed %d\n", wait_events(ep, 0, out, 8));

    char buf[8];
    read(p[0], buf, sizeof buf);
    ev.events = EPOLLOUT;
    ev.data.u64 = 0x4444;
    epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL);
    epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev);
    n = wait_events(ep, 0, out, 8);
    printf("epoll: write end: %d event(s) %#x data %#llx\n", n, out[0].events, (unsigned long long)out[0].data.u64);
    epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL);

    /* The writer closes: the read end reports EPOLLIN|EPOLLHUP. */
    ev.events = EPOLLIN;
    ev.data.u64 = 0x5555;
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    close(p[1]);
    n = wait_events(ep, 0, out, 8);
    printf("epoll: writer gone: %d event(s) %#x\n", n, out[0].events);
    /* Closing the watched descriptor takes it out of the list. */
    close(p[0]);
    printf("epoll: after close: %d\n", wait_events(ep, 0, out, 8));

    /* An eventfd, and a blocking wait another process ends. */
    int efd = eventfd(0, 0);
    ev.events = EPOLLIN;
    ev.data.u64 = 0x6666;
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    pid_t child = fork();
    if (child == 0) {
        usleep(50000);
        uint64_t one = 1;
        write(efd, &one, 8);
        _exit(0);
    }
    n = wait_events(ep, 5000, out, 8);
    printf("epoll: woken by the child: %d event(s) %#x data %#llx\n", n, out[0].events,
           (unsigned long long)out[0].data.u64);
    waitpid(child, NULL, 0);

    /* An epoll inside an epoll; and a loop refused. */
    int outer = epoll_create1(0);
    ev.events = EPOLLIN;
    ev.data.u64 = 0x7777;
    printf("epoll: nest %s", err(epoll_ctl(outer, EPOLL_CTL_ADD, ep, &ev)));
    printf(", loop %s\n", err(epoll_ctl(ep, EPOLL_CTL_ADD, outer, &ev)));
    n = wait_events(outer, 0, out, 8);
    printf("epoll: outer sees the inner ready: %d event(s) %#x data %#llx\n", n, out[0].events,
           (unsigned long long)out[0].data.u64);
    struct pollfd pf = {ep, POLLIN, 0};
    n = poll(&pf, 1, 0);
    printf("epoll: poll on the epoll fd: %d revents %#x\n", n, pf.revents);
    uint64_t v;
    read(efd, &v, 8);
    printf("epoll: drained: inner %d", wait_events(ep, 0, out, 8));
    printf(", outer %d\n", wait_events(outer, 0, out, 8));
    printf("epoll: maxevents 0 %s", err(epoll_wait(ep, out, 0, 0)));
    printf(", on an eventfd %s\n", err(epoll_wait(efd, out, 1, 0)));
    close(outer);
    close(efd);
    close(ep);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    eventfds();
    epolls();
    printf("events: done\n");
    return 0;
}
