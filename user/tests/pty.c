/* Pseudo-terminals and the line discipline, compared with the host: a pair from
 * posix_openpt, canonical input with echo, erase, kill, word erase and end of file; raw mode
 * with VMIN/VTIME; output processing (ONLCR) on and off; FIONREAD; ^C, ^\ and ^Z reaching
 * the foreground process group of a session whose controlling terminal is the slave (and
 * wait statuses saying so; ^Z through a handler, since that group is orphaned); SIGHUP to
 * the foreground group when the session leader ends; job control ioctls; hang-up when the master closes and EIO on
 * the master once the slave is gone. Prints only what any Linux prints the same. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void show(const char *label, const char *buf, long n) {
    printf("%s: ", label);
    if (n < 0) {
        printf("%s\n", strerror(errno));
        return;
    }
    putchar('"');
    for (long i = 0; i < n; i++) {
        unsigned char c = buf[i];
        if (c == '\n')
            printf("\\n");
        else if (c == '\r')
            printf("\\r");
        else if (c == '\b')
            printf("\\b");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    printf("\" (%ld)\n", n);
}

/* Everything readable on fd within a short wait. */
static long drain(int fd, char *buf, size_t size) {
    long total = 0;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0 || !(p.revents & POLLIN))
            break;
        long n = read(fd, buf + total, size - total);
        if (n <= 0)
            break;
        total += n;
    }
    return total;
}

static int hup_fd = -1;
static void on_hup(int sig) {
    (void)sig;
    write(hup_fd, "h", 1);
    _exit(0);
}

static void on_tstp(int sig) {
    (void)sig;
    _exit(42);
}

static void master_says(int m, const char *text) { write(m, text, strlen(text)); }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    char buf[512];
    /* Run as init, nobody has mounted devpts yet. */
    if (getpid() == 1 && mount("devpts", "/dev/pts", "devpts", 0, NULL) < 0)
        printf("mount devpts: %s\n", strerror(errno));
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    printf("openpt: %s\n", m >= 0 ? "ok" : strerror(errno));
    printf("grantpt: %d unlockpt: %d\n", grantpt(m), unlockpt(m));
    char *name = ptsname(m);
    unsigned n_pt = 99;
    ioctl(m, TIOCGPTN, &n_pt);
    char expect[64];
    snprintf(expect, sizeof expect, "/dev/pts/%u", n_pt);
    printf("ptsname matches TIOCGPTN: %d\n", name && strcmp(name, expect) == 0);
    int s = open(name, O_RDWR | O_NOCTTY);
    printf("open slave: %s\n", s >= 0 ? "ok" : strerror(errno));
    printf("isatty master %d slave %d\n", isatty(m), isatty(s));

    struct termios t;
    tcgetattr(s, &t);
    printf("default: icanon %d echo %d isig %d icrnl %d onlcr %d vmin %d veof %d\n",
           !!(t.c_lflag & ICANON), !!(t.c_lflag & ECHO), !!(t.c_lflag & ISIG),
           !!(t.c_iflag & ICRNL), !!(t.c_oflag & ONLCR), t.c_cc[VMIN], t.c_cc[VEOF]);

    /* Canonical input: a line at a time, echoed with ONLCR. */
    master_says(m, "hello\r");
    long n = read(s, buf, sizeof buf);
    show("slave reads", buf, n);
    show("master sees echo", buf, drain(m, buf, sizeof buf));
    int avail = -1;
    master_says(m, "abc");
    usleep(100000);
    ioctl(s, FIONREAD, &avail);
    printf("FIONREAD of an unfinished line: %d\n", avail);
    master_says(m, "\n");
    usleep(100000);
    ioctl(s, FIONREAD, &avail);
    printf("FIONREAD of a finished line: %d\n", avail);
    show("slave reads", buf, read(s, buf, sizeof buf));
    drain(m, buf, sizeof buf);

    /* Editing: erase (DEL), kill (^U), word erase (^W), a literal (^V). */
    master_says(m, "abx\x7f" "c\n");
    show("erase", buf, read(s, buf, sizeof buf));
    show("erase echo", buf, drain(m, buf, sizeof buf));
    master_says(m, "junk\x15ok\n");
    show("kill", buf, read(s, buf, sizeof buf));
    drain(m, buf, sizeof buf);
    master_says(m, "one two\x17three\n");
    show("word erase", buf, read(s, buf, sizeof buf));
    drain(m, buf, sizeof buf);
    master_says(m, "a\x16\x03" "b\n");
    show("literal ^C", buf, read(s, buf, sizeof buf));
    drain(m, buf, sizeof buf);
    /* A short read leaves the rest of the line. */
    master_says(m, "abcdef\n");
    show("short read", buf, read(s, buf, 3));
    show("rest", buf, read(s, buf, sizeof buf));
    drain(m, buf, sizeof buf);
    /* End of file: ^D ends a line without a newline, and alone reads as 0. */
    master_says(m, "par\x04");
    show("^D after text", buf, read(s, buf, sizeof buf));
    master_says(m, "\x04");
    show("^D alone", buf, read(s, buf, sizeof buf));
    drain(m, buf, sizeof buf);

    /* Echo off. */
    t.c_lflag &= ~ECHO;
    tcsetattr(s, TCSANOW, &t);
    master_says(m, "secret\n");
    show("no echo: slave reads", buf, read(s, buf, sizeof buf));
    show("no echo: master sees", buf, drain(m, buf, sizeof buf));

    /* Output processing. */
    write(s, "x\ny\n", 4);
    show("onlcr output", buf, drain(m, buf, sizeof buf));
    struct termios raw = t;
    cfmakeraw(&raw);
    tcsetattr(s, TCSANOW, &raw);
    write(s, "x\ny\n", 4);
    show("raw output", buf, drain(m, buf, sizeof buf));

    /* Raw input: bytes as they come, no echo, no signals. */
    master_says(m, "q\r\x03z");
    usleep(100000);
    show("raw input", buf, read(s, buf, sizeof buf));
    show("raw echo", buf, drain(m, buf, sizeof buf));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    tcsetattr(s, TCSANOW, &raw);
    show("VMIN 0 VTIME 0 with nothing", buf, read(s, buf, sizeof buf));
    struct pollfd ps = {s, POLLIN, 0};
    printf("poll with nothing to read: %d\n", poll(&ps, 1, 50));
    master_says(m, "p");
    usleep(100000);
    int ready = poll(&ps, 1, 50);
    printf("poll with a byte: %d revents %#x\n", ready, ps.revents);
    show("that byte", buf, read(s, buf, sizeof buf));
    raw.c_cc[VTIME] = 2;
    tcsetattr(s, TCSANOW, &raw);
    show("VMIN 0 VTIME 2 with nothing", buf, read(s, buf, sizeof buf));
    raw.c_cc[VMIN] = 4;
    raw.c_cc[VTIME] = 0;
    tcsetattr(s, TCSANOW, &raw);
    master_says(m, "12");
    if (fork() == 0) {
        usleep(200000);
        master_says(m, "34");
        _exit(0);
    }
    show("VMIN 4", buf, read(s, buf, sizeof buf));
    wait(NULL);
    /* Flush discards unread input. */
    master_says(m, "gone");
    usleep(100000);
    tcflush(s, TCIFLUSH);
    raw.c_cc[VMIN] = 0;
    tcsetattr(s, TCSANOW, &raw);
    show("after TCIFLUSH", buf, read(s, buf, sizeof buf));

    /* Back to canonical with echo and signals: a session on the slave gets ^C, ^\ and ^Z,
     * echoed as ^X. */
    t.c_lflag |= ECHO;
    tcsetattr(s, TCSANOW, &t);
    int sigs[] = {SIGINT, SIGQUIT, SIGTSTP};
    const char *keys[] = {"\x03", "\x1c", "\x1a"};
    for (int i = 0; i < 3; i++) {
        int ready[2];
        pipe(ready);
        pid_t child = fork();
        if (child == 0) {
            setsid();
            int fd = open(name, O_RDWR);
            ioctl(fd, TIOCSCTTY, 0);
            pid_t fg = -1, sid = -1;
            ioctl(fd, TIOCGPGRP, &fg);
            ioctl(fd, TIOCGSID, &sid);
            char ok = (fg == getpgrp() && sid == getsid(0) && tcgetpgrp(fd) == getpid()) ? 'y' : 'n';
            /* The signal's default action, whatever was inherited (a shell's background
             * job starts with SIGINT and SIGQUIT ignored). */
            signal(sigs[i], SIG_DFL);
            /* Default ^Z would be discarded here (this process group is orphaned: its
             * parent is in another session), so a handler catches it. */
            if (sigs[i] == SIGTSTP)
                signal(SIGTSTP, on_tstp);
            write(ready[1], &ok, 1);
            for (;;)
                pause();
        }
        char ok = '?';
        read(ready[0], &ok, 1);
        usleep(100000);
        master_says(m, keys[i]);
        int status = 0;
        waitpid(child, &status, WUNTRACED);
        printf("session %d: ctty ioctls %c, ", i, ok);
        if (WIFSIGNALED(status))
            printf("killed by %s\n", WTERMSIG(status) == sigs[i] ? "the right signal" : "another signal");
        else if (WIFEXITED(status))
            printf("exited %d\n", WEXITSTATUS(status));
        else
            printf("status %#x\n", status);
        show("echo of the key", buf, drain(m, buf, sizeof buf));
        close(ready[0]);
        close(ready[1]);
    }
    /* A session leader ends: its terminal's foreground group gets SIGHUP. */
    {
        int report[2];
        pipe(report);
        pid_t leader = fork();
        if (leader == 0) {
            setsid();
            int fd = open(name, O_RDWR);
            ioctl(fd, TIOCSCTTY, 0);
            if (fork() == 0) {
                signal(SIGHUP, on_hup);
                hup_fd = report[1];
                write(report[1], "r", 1);
                for (;;)
                    pause();
            }
            char c;
            read(report[0], &c, 1);
            _exit(0);
        }
        waitpid(leader, NULL, 0);
        char got[4] = {0};
        struct pollfd p = {report[0], POLLIN, 0};
        poll(&p, 1, 2000);
        read(report[0], got, 1);
        printf("after the session leader ended, its group got: %s\n",
               got[0] == 'h' ? "SIGHUP" : "nothing");
        close(report[0]);
        close(report[1]);
    }
    /* Not the controlling terminal of this process: job-control ioctls say so. */
    pid_t pg;
    printf("TIOCGPGRP without ctty: %s\n", ioctl(s, TIOCGPGRP, &pg) < 0 ? strerror(errno) : "ok");
    printf("TIOCSPGRP without ctty: %s\n", ioctl(s, TIOCSPGRP, &pg) < 0 ? strerror(errno) : "ok");
    printf("ioctl on a pipe: %s\n", ({
               int p[2];
               pipe(p);
               ioctl(p[0], TCGETS, &t) < 0 ? strerror(errno) : "ok";
           }));
    struct winsize w = {30, 100, 0, 0}, w2 = {0};
    ioctl(m, TIOCSWINSZ, &w);
    ioctl(s, TIOCGWINSZ, &w2);
    printf("window size through the master: %dx%d\n", w2.ws_col, w2.ws_row);

    /* The master closes: the slave reads end of file. */
    close(m);
    show("slave after master closed", buf, read(s, buf, sizeof buf));
    close(s);

    /* The slave closes: the master reads EIO. */
    m = posix_openpt(O_RDWR | O_NOCTTY);
    unlockpt(m);
    s = open(ptsname(m), O_RDWR | O_NOCTTY);
    write(s, "bye", 3);
    close(s);
    show("master reads what was left", buf, read(m, buf, sizeof buf));
    show("master after slave closed", buf, read(m, buf, sizeof buf));
    close(m);
    /* A locked slave cannot be opened. */
    m = posix_openpt(O_RDWR | O_NOCTTY);
    int fd = open(ptsname(m), O_RDWR | O_NOCTTY);
    printf("open of a locked slave: %s\n", fd >= 0 ? "ok" : strerror(errno));
    close(m);
    return 0;
}
