/* Robustness, not a differential test (random syscalls could harm a real host): makes
 * system calls with random numbers and arguments — wild pointers, huge lengths, negative
 * numbers — in child processes, which the parent kills and restarts. The kernel must
 * answer every call with a result or an errno, never panic or hang, and give back all the
 * memory once the children are gone (the kernel checks that after the program ends).
 *
 * Each child makes up to CHILD_CALLS calls, reporting its count through a pipe, and may
 * crash itself (a wild munmap, sigreturn, arch_prctl...) or block (read, pause, futex): the
 * parent waits a random 10-200 ms, then kills it with SIGKILL if it still runs, and starts
 * the next one until the calls reach the total: argv[1], or 100000. Calls that would make
 * more processes, replace the program, signal other processes, reboot or change the
 * console's log level are left out; each child's standard streams are a pseudo-terminal of
 * its own. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_CALLS 3000
/* Where a child reports how many calls it made (a high fd random calls rarely hit). */
#define REPORT_FD 999

static uint64_t state = 0x853c49e6748fea9bULL;

static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

/* An argument: small numbers, wild pointers, kernel addresses, all ones, or random bits. */
static long arg(void) {
    switch (next() % 6) {
    case 0: return (long)(next() % 8);
    case 1: return (long)(next() & 0x00007fffffffffffULL);
    case 2: return (long)(0xffff800000000000ULL | next());
    case 3: return -1;
    case 4: return (long)(next() % 4096);
    default: return (long)next();
    }
}

static int excluded(long nr) {
    switch (nr) {
    case SYS_fork: case SYS_vfork: case SYS_clone: case SYS_clone3: case SYS_execve:
    case SYS_execveat: case SYS_kill: case SYS_tkill: case SYS_tgkill: case SYS_reboot:
    case SYS_rt_sigqueueinfo: case SYS_rt_tgsigqueueinfo: case SYS_pidfd_send_signal:
    case SYS_ptrace: case SYS_process_vm_writev: case SYS_io_uring_enter:
    /* The console's log level is the machine's, and the runner reads the console. */
    case SYS_syslog:
        return 1;
    }
    return 0;
}

static void report(long calls) {
    (void)write(REPORT_FD, &calls, sizeof calls);
}

/* A child's standard input, output and error: a pseudo-terminal of its own (the master at
 * fd 3), so the terminal calls it makes at random — settings, flow control, job control —
 * reach a real terminal but not the console the parent reports on. /dev/null if there is
 * no pseudo-terminal. */
static void own_terminal(void) {
    int fd = -1;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master >= 0 && unlockpt(master) == 0 && ptsname(master))
        fd = open(ptsname(master), O_RDWR | O_NOCTTY);
    if (fd < 0)
        fd = open("/dev/null", O_RDWR);
    for (int target = 0; target < 3; target++)
        dup2(fd, target);
    if (master >= 0)
        dup2(master, 3);
}

static void child(void) {
    long calls = 0;
    own_terminal();
    for (int i = 0; i < CHILD_CALLS; i++) {
        long nr = (long)(next() % 460);
        if (excluded(nr))
            continue;
        /* Writes go to stdout only if they are small and to a real buffer. */
        if (nr == SYS_write || nr == SYS_writev || nr == SYS_pwrite64 || nr == SYS_pwritev)
            syscall(nr, 1000 + (long)(next() % 8), arg(), arg(), arg(), arg(), arg());
        else
            syscall(nr, arg(), arg(), arg(), arg(), arg(), arg());
        calls++;
        if (calls % 64 == 0)
            report(calls);
    }
    report(calls);
    _exit(0);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    /* Run as init, nobody has mounted devpts (the children's terminals) yet. */
    if (getpid() == 1)
        mount("devpts", "/dev/pts", "devpts", 0, NULL);
    long target = argc > 1 ? atol(argv[1]) : 100000;
    long total = 0, children = 0, finished = 0, crashed = 0, killed = 0;
    double started = now(), last_progress = started;
    while (total < target) {
        uint64_t seed = next();
        int fds[2];
        if (pipe(fds) != 0) {
            perror("fuzz: pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fuzz: fork");
            return 1;
        }
        if (pid == 0) {
            close(fds[0]);
            dup2(fds[1], REPORT_FD);
            close(fds[1]);
            state = seed | 1;
            child();
        }
        close(fds[1]);
        children++;
        /* Give it 5-50 ms, then kill it. */
        double deadline = now() + 0.005 + (double)(next() % 45) / 1000.0;
        int status = 0;
        pid_t done = 0;
        while ((done = waitpid(pid, &status, WNOHANG)) == 0 && now() < deadline) {
            struct timespec tick = {0, 2 * 1000 * 1000};
            nanosleep(&tick, NULL);
        }
        if (done == 0) {
            kill(pid, SIGKILL);
            done = waitpid(pid, &status, 0);
            killed++;
        } else if (WIFEXITED(status)) {
            finished++;
        } else {
            crashed++;
        }
        if (done != pid) {
            printf("fuzz: waitpid gave %d for child %d\n", (int)done, (int)pid);
            return 1;
        }
        long count = 0, calls = 0;
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        while (read(fds[0], &count, sizeof count) == sizeof count)
            calls = count;
        close(fds[0]);
        total += calls;
        if (now() - last_progress >= 5) {
            printf("fuzz: %ld of %ld calls, %ld children\n", total, target, children);
            last_progress = now();
        }
    }
    printf("fuzz: %ld random system calls in %ld children: %ld finished, %ld crashed, %ld killed "
           "and restarted (%.1f s)\n",
           total, children, finished, crashed, killed, now() - started);
    printf("fuzz: done, the kernel lives\n");
    return 0;
}
