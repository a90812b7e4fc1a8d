/* eventfd and epoll, compared with the host: eventfd's counter (sum on write, whole or one
 * per read in semaphore mode, EAGAIN when empty or full, EINVAL for short buffers and
 * UINT64_MAX) and its readiness in poll; epoll's interest list (ADD/MOD/DEL errors, EPERM for
 * regular files, EINVAL for itself, ELOOP for a cycle), level-triggered, edge-triggered and
 * one-shot reports on pipes and eventfds, EPOLLOUT and EPOLLHUP, a closed descriptor leaving
 * the list, timeouts, a blocking wait woken by another process, and an epoll inside an
 * epoll; timerfd's expirations counted across reads, its settings, absolute CLOCK_REALTIME
 * times, and timers in poll and (edge-triggered) epoll; signalfd reading blocked signals
 * (several per read, from poll, epoll and a blocking read another process ends). Prints only what is the same on any
 * Linux. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
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

static void timers(void) {
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    uint64_t n = 0;
    printf("timerfd: create %s, disarmed read %s\n", t >= 0 ? "ok" : "failed", err(read(t, &n, 8)));
    struct itimerspec cur;
    timerfd_gettime(t, &cur);
    printf("timerfd: disarmed gettime %ld %ld\n", (long)cur.it_value.tv_sec, (long)cur.it_value.tv_nsec);
    struct itimerspec set = {{0, 10000000}, {0, 20000000}};
    printf("timerfd: settime %s\n", err(timerfd_settime(t, 0, &set, NULL)));
    timerfd_gettime(t, &cur);
    printf("timerfd: armed: interval %ld ns, first expiry within 20 ms %d\n", cur.it_interval.tv_nsec,
           cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 20000000);
    fcntl(t, F_SETFL, 0);
    long r = read(t, &n, 8);
    printf("timerfd: blocking read %ld, at least one expiration %d\n", r, n >= 1);
    usleep(55000);
    read(t, &n, 8);
    printf("timerfd: after 55 ms, at least 4 more %d\n", n >= 4);
    struct itimerspec old, off = {{0, 0}, {0, 0}};
    timerfd_settime(t, 0, &off, &old);
    printf("timerfd: disarm: old interval %ld ns\n", old.it_interval.tv_nsec);
    fcntl(t, F_SETFL, O_NONBLOCK);
    printf("timerfd: disarmed again, read %s\n", err(read(t, &n, 8)));
    close(t);

    /* An absolute CLOCK_REALTIME time, seen by poll. */
    t = timerfd_create(CLOCK_REALTIME, 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct itimerspec at = {{0, 0}, {now.tv_sec, now.tv_nsec}};
    at.it_value.tv_nsec += 30000000;
    if (at.it_value.tv_nsec >= 1000000000) {
        at.it_value.tv_sec++;
        at.it_value.tv_nsec -= 1000000000;
    }
    timerfd_settime(t, TFD_TIMER_ABSTIME, &at, NULL);
    struct pollfd p = {t, POLLIN, 0};
    int ready = poll(&p, 1, 2000);
    read(t, &n, 8);
    printf("timerfd: absolute realtime: poll %d revents %#x, read %llu\n", ready, p.revents,
           (unsigned long long)n);
    close(t);

    /* A one-shot timer in an edge-triggered epoll. */
    t = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
    int ep = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN | EPOLLET, {.u64 = 0x8888}}, out[2];
    epoll_ctl(ep, EPOLL_CTL_ADD, t, &ev);
    struct itimerspec once = {{0, 0}, {0, 20000000}};
    timerfd_settime(t, 0, &once, NULL);
    int e1 = epoll_wait(ep, out, 2, 2000);
    int e2 = epoll_wait(ep, out, 2, 0);
    read(t, &n, 8);
    printf("timerfd: epoll edge: %d then %d, data %#llx, read %llu\n", e1, e2,
           (unsigned long long)out[0].data.u64, (unsigned long long)n);
    close(ep);

    printf("timerfd: bad clock %s", err(timerfd_create(99, 0)));
    printf(", bad flags %s", err(timerfd_create(CLOCK_MONOTONIC, 0x40000)));
    printf(", bad settime flags %s", err(timerfd_settime(t, 0x100, &once, NULL)));
    struct itimerspec neg = {{0, 0}, {0, -1}};
    printf(", negative %s", err(timerfd_settime(t, 0, &neg, NULL)));
    int pp[2];
    pipe(pp);
    printf(", on a pipe %s\n", err(timerfd_gettime(pp[0], &cur)));
    close(pp[0]);
    close(pp[1]);
    close(t);
}

static void signalfds(void) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    struct signalfd_siginfo info[4];
    printf("signalfd: create %s, nothing pending: %s\n", sfd >= 0 ? "ok" : "failed",
           err(read(sfd, info, sizeof info)));
    kill(getpid(), SIGUSR2);
    kill(getpid(), SIGUSR1);
    struct pollfd p = {sfd, POLLIN, 0};
    int n = poll(&p, 1, 0);
    printf("signalfd: poll %d revents %#x\n", n, p.revents);
    printf("signalfd: short buffer %s\n", err(read(sfd, info, 100)));
    long r = read(sfd, info, sizeof info);
    printf("signalfd: read %ld bytes: signals %u %u\n", r, info[0].ssi_signo, r >= 256 ? info[1].ssi_signo : 0);
    printf("signalfd: drained: %s\n", err(read(sfd, info, sizeof info)));

    int ep = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN, {.u64 = 0x9999}}, out[2];
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        usleep(50000);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    n = epoll_wait(ep, out, 2, 5000);
    waitpid(child, NULL, 0);
    r = read(sfd, info, sizeof info);
    printf("signalfd: epoll woke %d data %#llx, read %ld bytes signal %u\n", n,
           (unsigned long long)out[0].data.u64, r, info[0].ssi_signo);
    close(ep);

    sigset_t only2;
    sigemptyset(&only2);
    sigaddset(&only2, SIGUSR2);
    printf("signalfd: new mask returns the same fd: %d\n", signalfd(sfd, &only2, 0) == sfd);
    int efd = eventfd(0, 0);
    printf("signalfd: on an eventfd %s\n", err(signalfd(efd, &only2, 0)));
    close(efd);
    fcntl(sfd, F_SETFL, 0);
    child = fork();
    if (child == 0) {
        usleep(50000);
        kill(parent, SIGUSR1); /* not in the mask any more: stays pending */
        kill(parent, SIGUSR2);
        _exit(0);
    }
    r = read(sfd, info, sizeof info);
    waitpid(child, NULL, 0);
    printf("signalfd: blocking read %ld bytes signal %u\n", r, info[0].ssi_signo);
    sigset_t pending;
    sigpending(&pending);
    printf("signalfd: SIGUSR1 still pending %d\n", sigismember(&pending, SIGUSR1));
    close(sfd);
    struct timespec none = {0, 0};
    sigtimedwait(&mask, NULL, &none);
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    eventfds();
    epolls();
    timers();
    signalfds();
    printf("events: done\n");
    return 0;
}
