/* Processes and signals, compared with the host: fork and wait statuses, copy-on-write
 * isolation, vfork + exec, execve of a #! script, signal handlers with siginfo, masks and
 * sigpending, sigreturn restoring registers, SA_RESTART against EINTR, sigaltstack, a
 * PROT_NONE touch caught by a SIGSEGV handler, brk, pipes (partial reads, SIGPIPE/EPIPE),
 * process groups and sessions, getrandom. Prints only what is the same on any Linux. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void status_line(const char *what, int st) {
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: signal %d%s\n", what, WTERMSIG(st), WCOREDUMP(st) ? " (core)" : "");
    else
        printf("%s: other %#x\n", what, st);
}

static void fork_statuses(void) {
    int codes[] = {0, 1, 42, 255};
    for (int i = 0; i < 4; i++) {
        pid_t p = fork();
        if (p == 0) _exit(codes[i]);
        int st;
        pid_t w = waitpid(p, &st, 0);
        printf("wait same pid %d, ", w == p);
        status_line("child", st);
    }
    pid_t p = fork();
    if (p == 0) { raise(SIGTERM); _exit(0); }
    int st;
    waitpid(p, &st, 0);
    status_line("raised SIGTERM", st);
    p = fork();
    if (p == 0) { volatile int *null = (volatile int *)(uintptr_t)(getppid() & 0); *null = 1; _exit(0); }
    waitpid(p, &st, 0);
    status_line("null write", st);
    pid_t none = wait(&st);
    printf("no children: %d %s\n", (int)none, strerror(errno));
    p = fork();
    if (p == 0) _exit(3);
    siginfo_t info;
    memset(&info, 0, sizeof info);
    waitid(P_PID, p, &info, WEXITED);
    printf("waitid: signo %d code %d status %d pid ok %d\n", info.si_signo, info.si_code,
           info.si_status, info.si_pid == p);
    p = fork();
    if (p == 0) { pause(); _exit(0); }
    printf("WNOHANG while running: %d\n", (int)waitpid(p, &st, WNOHANG));
    kill(p, SIGKILL);
    waitpid(p, &st, 0);
    status_line("killed", st);
}

static void cow(void) {
    static int global = 1;
    int *heap = malloc(sizeof *heap);
    *heap = 10;
    char *anon = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(anon, "parent");
    pid_t p = fork();
    if (p == 0) {
        global = 2; *heap = 20; strcpy(anon, "child");
        printf("child sees %d %d %s\n", global, *heap, anon);
        fflush(stdout);
        _exit(0);
    }
    waitpid(p, 0, 0);
    printf("parent keeps %d %d %s\n", global, *heap, anon);
}

static void vfork_exec(const char *self) {
    pid_t p = vfork();
    if (p == 0) {
        execl(self, self, "exit-with", "9", (char *)0);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    status_line("vfork+exec", st);
    p = vfork();
    if (p == 0) {
        execl("/nonexistent/prog", "x", (char *)0);
        _exit(errno == ENOENT ? 66 : 67);
    }
    waitpid(p, &st, 0);
    status_line("vfork+exec missing", st);
    const char *script = "/tmp/processes-script";
    FILE *f = fopen(script, "w");
    fprintf(f, "#!%s exit-with\n", self);
    fclose(f);
    chmod(script, 0755);
    p = fork();
    if (p == 0) { execl(script, script, (char *)0); _exit(127); }
    waitpid(p, &st, 0);
    status_line("#! script (argc 3: interpreter, its argument, the script)", st);
    unlink(script);
}

static volatile sig_atomic_t got, got_code, got_value;
static void on_usr1(int sig, siginfo_t *info, void *uc) {
    (void)uc;
    got = sig;
    got_code = info->si_code;
    got_value = info->si_pid == getpid();
}
static void on_alarm(int sig) { got = sig; }

static void signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, 0);
    kill(getpid(), SIGUSR1);
    printf("handler: sig %d code %d from self %d\n", got, got_code, got_value);
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, 0);
    got = 0;
    kill(getpid(), SIGUSR1);
    sigpending(&pending);
    printf("blocked: delivered %d pending %d\n", got, sigismember(&pending, SIGUSR1));
    sigprocmask(SIG_UNBLOCK, &set, 0);
    printf("unblocked: delivered %d\n", got);
    /* A long computation across a handler: sigreturn restores every register. */
    volatile double x = 1.0;
    long acc = 0;
    for (int i = 0; i < 200000; i++) {
        acc += i ^ (acc >> 3);
        x *= 1.0000001;
        if (i == 100000) kill(getpid(), SIGUSR1);
    }
    printf("registers survive: %ld %.6f\n", acc, x);
    /* SA_RESTART: a read interrupted by an alarm goes on; without it, EINTR. */
    for (int restart = 0; restart < 2; restart++) {
        int fds[2];
        pipe(fds);
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm;
        sa.sa_flags = restart ? SA_RESTART : 0;
        sigaction(SIGALRM, &sa, 0);
        pid_t writer = fork();
        if (writer == 0) {
            usleep(300000);
            write(fds[1], "x", 1);
            _exit(0);
        }
        struct itimerval it = {{0, 0}, {0, 50000}};
        setitimer(ITIMER_REAL, &it, 0);
        char c;
        got = 0;
        ssize_t n = read(fds[0], &c, 1);
        int err = errno;
        printf("SA_RESTART=%d: read %zd %s, handler ran %d\n", restart, n,
               n < 0 ? strerror(err) : "ok", got == SIGALRM);
        waitpid(writer, 0, 0);
        close(fds[0]);
        close(fds[1]);
    }
    /* Ignored and default dispositions. */
    signal(SIGUSR2, SIG_IGN);
    kill(getpid(), SIGUSR2);
    printf("ignored SIGUSR2: still here\n");
    signal(SIGCHLD, SIG_DFL);
}

static char altstack[65536];
static volatile uintptr_t handler_sp;
static void on_segv_alt(int sig) {
    int here;
    (void)sig;
    handler_sp = (uintptr_t)&here;
}

static sigjmp_buf jump;
static volatile void *fault_addr;
static volatile int fault_code;
static void on_segv(int sig, siginfo_t *info, void *uc) {
    (void)sig; (void)uc;
    fault_addr = info->si_addr;
    fault_code = info->si_code;
    siglongjmp(jump, 1);
}

static void memory(void) {
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv_alt;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, 0);
    raise(SIGUSR2);
    printf("SA_ONSTACK handler on the alternate stack: %d\n",
           handler_sp >= (uintptr_t)altstack && handler_sp < (uintptr_t)altstack + sizeof altstack);
    stack_t old;
    sigaltstack(0, &old);
    printf("sigaltstack reads back: %d flags %d\n", old.ss_sp == altstack, old.ss_flags);

    char *page = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(page, 7, 3 * 4096);
    mprotect(page + 4096, 4096, PROT_NONE);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, 0);
    if (sigsetjmp(jump, 1) == 0) {
        volatile char c = page[4096 + 5];
        (void)c;
        printf("PROT_NONE read did not fault\n");
    } else {
        printf("PROT_NONE read: SIGSEGV at offset %ld code %d\n",
               (long)((char *)fault_addr - page), fault_code);
    }
    mprotect(page + 4096, 4096, PROT_READ);
    printf("after mprotect READ: %d\n", page[4096 + 5]);
    if (sigsetjmp(jump, 1) == 0) {
        page[4096] = 1;
        printf("read-only write did not fault\n");
    } else {
        printf("read-only write: SIGSEGV at offset %ld code %d\n",
               (long)((char *)fault_addr - page), fault_code);
    }
    munmap(page, 3 * 4096);
    if (sigsetjmp(jump, 1) == 0) {
        volatile char c = page[0];
        (void)c;
        printf("unmapped read did not fault\n");
    } else {
        printf("unmapped read: code %d\n", fault_code);
    }
    signal(SIGSEGV, SIG_DFL);
    printf("munmap of nothing: %d\n", munmap(page, 4096));
    printf("mmap bad flags: %s\n",
           mmap(0, 4096, PROT_READ, MAP_ANONYMOUS, -1, 0) == MAP_FAILED ? strerror(errno) : "ok");

    /* musl's sbrk only reads the break: use the system call. */
    char *start = (char *)syscall(SYS_brk, 0);
    char *end = (char *)syscall(SYS_brk, start + (1 << 20));
    printf("brk grew by 1 MiB: %d\n", end == start + (1 << 20));
    memset(start, 1, 1 << 20);
    printf("brk shrinks back: %d\n", (char *)syscall(SYS_brk, start) == start);
}

static void pipes(void) {
    int fds[2];
    pipe(fds);
    write(fds[1], "hello world", 11);
    char buf[64];
    printf("partial read: %zd\n", read(fds[0], buf, 5));
    printf("rest: %zd\n", read(fds[0], buf, sizeof buf));
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    ssize_t n = read(fds[0], buf, 1);
    int err = errno;
    printf("empty nonblocking: %zd %s\n", n, strerror(err));
    close(fds[1]);
    printf("writer gone: %zd\n", read(fds[0], buf, 1));
    close(fds[0]);
    pipe(fds);
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    n = write(fds[1], "x", 1);
    err = errno;
    printf("no reader, SIGPIPE ignored: %zd %s\n", n, strerror(err));
    signal(SIGPIPE, SIG_DFL);
    pid_t p = fork();
    if (p == 0) { write(fds[1], "x", 1); _exit(0); }
    int st;
    waitpid(p, &st, 0);
    status_line("no reader, SIGPIPE default", st);
    close(fds[1]);

    /* A child writes 1 MB in large writes while the parent reads in small pieces: the
     * writer fills the pipe and sleeps, each read wakes it (with two CPUs, a lost wake-up
     * hangs here). */
    pipe(fds);
    p = fork();
    if (p == 0) {
        close(fds[0]);
        static char chunk[10000];
        for (int i = 0; i < 100; i++) {
            memset(chunk, 'a' + i % 26, sizeof chunk);
            if (write(fds[1], chunk, sizeof chunk) != sizeof chunk) _exit(1);
        }
        _exit(0);
    }
    close(fds[1]);
    long total = 0, sum = 0;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) {
        total += n;
        for (ssize_t i = 0; i < n; i++) sum += buf[i];
    }
    close(fds[0]);
    waitpid(p, &st, 0);
    printf("1 MB through a pipe: %ld bytes, sum %ld, end %zd\n", total, sum, n);
    status_line("writer", st);
}

static void ids(void) {
    pid_t p = fork();
    if (p == 0) {
        printf("child: pgid is parent's %d\n", getpgid(0) == getpgid(getppid()));
        setpgid(0, 0);
        printf("child: own group %d\n", getpgid(0) == getpid());
        pid_t s = setsid();
        int err = errno;
        printf("setsid as group leader: %d %s\n", (int)s, strerror(err));
        fflush(stdout);
        pid_t g = fork();
        if (g == 0) {
            int made = setsid() == getpid();
            printf("grandchild: setsid %d, sid %d\n", made, getsid(0) == getpid());
            fflush(stdout);
            _exit(0);
        }
        waitpid(g, 0, 0);
        _exit(0);
    }
    waitpid(p, 0, 0);
    mode_t first = umask(077);
    printf("umask: %o then %o\n", first, umask(022));
    unsigned char r[32];
    printf("getrandom: %zd\n", getrandom(r, sizeof r, 0));
    ssize_t bad = getrandom(r, 1, 0x1000);
    int err = errno;
    printf("getrandom bad flags: %zd %s\n", bad, strerror(err));
}

/* The main stack grows past what was mapped at exec: 4 MB of recursion, and a kernel
 * write (read from a pipe) into a stack buffer 2 MB down that nothing touched before. */
static unsigned long deep(int n) {
    volatile char frame[1024];
    frame[0] = (char)n;
    if (n == 0)
        return frame[0];
    return deep(n - 1) + frame[0] + 1;
}

static void __attribute__((noinline)) read_far_down(void) {
    char buffer[2 << 20];
    int fds[2];
    pipe(fds);
    write(fds[1], "deep", 4);
    ssize_t n = read(fds[0], buffer, 4);
    printf("read into an untouched stack buffer 2 MB down: %zd %.4s\n", n, buffer);
    close(fds[0]);
    close(fds[1]);
}

static void stack_growth(void) {
    printf("4 MB of recursion: %lu\n", deep(4000));
    read_far_down();
}

/* sigtimedwait ends when a blocked signal arrives from another process, not at its timeout;
 * with nothing pending it times out with EAGAIN. */
static void timed_wait(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        usleep(50000);
        kill(parent, SIGUSR2);
        _exit(0);
    }
    struct timespec a, b, timeout = {5, 0};
    clock_gettime(CLOCK_MONOTONIC, &a);
    int sig = sigtimedwait(&set, NULL, &timeout);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    waitpid(child, NULL, 0);
    struct timespec short_wait = {0, 20000000};
    int none = sigtimedwait(&set, NULL, &short_wait);
    printf("sigtimedwait: got %d, before the 5 s timeout %s; nothing pending: %d %s\n", sig,
           ms < 2500 ? "yes" : "no", none, none < 0 ? strerror(errno) : "");
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exit-with") == 0)
        return argc > 2 && argv[2][0] >= '0' && argv[2][0] <= '9' ? atoi(argv[2]) : 100 + argc;
    setvbuf(stdout, 0, _IONBF, 0);
    fork_statuses();
    cow();
    vfork_exec("/proc/self/exe");
    signals();
    memory();
    pipes();
    ids();
    stack_growth();
    timed_wait();
    return 0;
}
