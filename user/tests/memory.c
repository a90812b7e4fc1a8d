/* Anonymous memory paged in on demand, compared with the host: a large private mapping
 * whose pages read as zeros until touched and keep what is written; the kernel writing into
 * untouched pages (read from a pipe); MADV_DONTNEED dropping private pages (and keeping
 * MAP_SHARED ones); mremap moving a mapping with its contents and leaving nothing behind,
 * and a moved MAP_SHARED mapping still shared with a child; PROT_NONE and PROT_READ pages
 * never touched faulting with SEGV_ACCERR; fork of untouched pages; a PROT_NONE
 * MAP_NORESERVE reservation larger than the machine, used piece by piece as glibc's malloc
 * does. Prints only what is the same on any Linux. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define MIB (1024UL * 1024)

static sigjmp_buf probe_jump;
static volatile int probe_code;

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)sig;
    (void)context;
    probe_code = info->si_code;
    siglongjmp(probe_jump, 1);
}

/* Reads (or writes) one byte at p: the byte read, or -1 and the SIGSEGV si_code. */
static int probe(volatile unsigned char *p, int write, int *code) {
    *code = 0;
    if (sigsetjmp(probe_jump, 1)) {
        *code = probe_code;
        return -1;
    }
    if (write) {
        *p = 0x5a;
        return 0x5a;
    }
    return *p;
}

static const char *code_name(int code) {
    return code == SEGV_MAPERR ? "SEGV_MAPERR" : code == SEGV_ACCERR ? "SEGV_ACCERR" : "none";
}

static void large_private(void) {
    size_t len = 256 * MIB;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("large: mmap failed: %s\n", strerror(errno));
        return;
    }
    unsigned long zeros = 0;
    for (size_t off = PAGE / 2; off < len; off += 97 * PAGE)
        zeros += p[off] == 0;
    for (size_t off = 0; off < len; off += 64 * PAGE)
        p[off + (off / PAGE) % PAGE] = (unsigned char)(off / PAGE);
    unsigned long ok = 0, total = 0;
    for (size_t off = 0; off < len; off += 64 * PAGE, total++)
        ok += p[off + (off / PAGE) % PAGE] == (unsigned char)(off / PAGE);
    printf("large: %lu untouched samples read zero, %lu of %lu written pages kept their byte\n",
           zeros, ok, total);

    /* The kernel writes into pages nobody touched yet. */
    int fds[2];
    if (pipe(fds) == 0) {
        char msg[] = "through the kernel";
        unsigned char *fresh = p + 3 * PAGE + PAGE - 4; /* straddles two untouched pages */
        ssize_t w = write(fds[1], msg, sizeof msg);
        ssize_t r = read(fds[0], fresh, sizeof msg);
        printf("large: pipe wrote %zd, read %zd into untouched pages: %s\n", w, r,
               memcmp(fresh, msg, sizeof msg) == 0 ? "same bytes" : "different bytes");
        close(fds[0]);
        close(fds[1]);
    }

    /* MADV_DONTNEED: the range reads zeros again, the rest is kept. */
    p[10 * PAGE] = 1;
    p[20 * PAGE] = 2;
    int rc = madvise(p + 8 * PAGE, 8 * PAGE, MADV_DONTNEED);
    printf("large: madvise(DONTNEED) = %d, inside reads %d, outside reads %d\n", rc,
           p[10 * PAGE], p[20 * PAGE]);
    printf("large: munmap = %d\n", munmap(p, len));
}

static void moves(void) {
    size_t len = 16 * PAGE;
    /* One page more than is moved: it stays behind, so growing must move. */
    unsigned char *p = mmap(NULL, len + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *blocker = p + len;
    for (size_t i = 0; i < len; i += 2 * PAGE)
        p[i + 7] = (unsigned char)(i / PAGE + 1);
    unsigned char *q = mremap(p, len, 64 * PAGE, MREMAP_MAYMOVE);
    if (p == MAP_FAILED || q == MAP_FAILED) {
        printf("move: mremap failed: %s\n", strerror(errno));
        return;
    }
    unsigned long kept = 0;
    for (size_t i = 0; i < len; i += 2 * PAGE)
        kept += q[i + 7] == (unsigned char)(i / PAGE + 1);
    int code;
    int old = probe(p, 0, &code);
    printf("move: moved %s, %lu of 8 bytes kept, odd pages %d, new tail %d, old address %d (%s)\n",
           q != p ? "yes" : "no", kept, q[PAGE + 7], q[40 * PAGE], old, code_name(code));
    munmap(q, 64 * PAGE);
    munmap(blocker, PAGE);

    /* MAP_SHARED: moved, still shared with a child. */
    unsigned char *s = mmap(NULL, 5 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    s[5] = 42;
    unsigned char *t = mremap(s, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE);
    if (t == MAP_FAILED) {
        printf("move: shared mremap failed: %s\n", strerror(errno));
        return;
    }
    pid_t child = fork();
    if (child == 0) {
        t[PAGE] = 7;
        _exit(t[5]);
    }
    int status = 0;
    waitpid(child, &status, 0);
    printf("move: shared moved %s, child saw %d, parent sees the child's write %d\n",
           t != s ? "yes" : "no", WEXITSTATUS(status), t[PAGE]);

    int rc = madvise(t, 2 * PAGE, MADV_DONTNEED);
    printf("move: madvise(DONTNEED) on shared = %d, keeps %d and %d\n", rc, t[5], t[PAGE]);
}

static void protections(void) {
    int code;
    unsigned char *none = mmap(NULL, 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int r = probe(none + 100, 0, &code);
    printf("prot: PROT_NONE read %d (%s)\n", r, code_name(code));
    unsigned char *ro = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    r = probe(ro + PAGE, 1, &code);
    printf("prot: PROT_READ write %d (%s)", r, code_name(code));
    r = probe(ro + 5, 0, &code);
    printf(", read %d\n", r);
    printf("prot: mprotect = %d\n", mprotect(none, PAGE, PROT_READ | PROT_WRITE));
    r = probe(none + 100, 1, &code);
    printf("prot: after mprotect write %d (%s)", r, code_name(code));
    r = probe(none + PAGE, 0, &code);
    printf(", the other page %d (%s)\n", r, code_name(code));
    /* A PROT_NONE page is still a mapping: MAP_FIXED_NOREPLACE refuses it. */
    unsigned char *guard = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *over = mmap(guard, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("prot: MAP_FIXED_NOREPLACE over PROT_NONE: %s\n",
           over == MAP_FAILED ? strerror(errno) : "mapped");
    munmap(guard, PAGE);
    munmap(none, 2 * PAGE);
    munmap(ro, 2 * PAGE);
}

static void forks(void) {
    size_t len = 64 * PAGE;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p[0] = 1;
    pid_t child = fork();
    if (child == 0) {
        p[0] = 9;
        p[30 * PAGE] = 8; /* untouched before the fork */
        _exit(p[0] + p[30 * PAGE]);
    }
    int status = 0;
    waitpid(child, &status, 0);
    p[31 * PAGE] = 3;
    printf("fork: child exited %d, parent keeps %d, %d, %d\n", WEXITSTATUS(status), p[0],
           p[30 * PAGE], p[31 * PAGE]);
    munmap(p, len);
}

static void reservation(void) {
    /* More than the guest's memory: only NORESERVE/PROT_NONE makes this fine everywhere. */
    size_t len = 1024 * MIB;
    unsigned char *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        printf("reserve: mmap failed: %s\n", strerror(errno));
        return;
    }
    int a = mprotect(p + 512 * MIB, 2 * MIB, PROT_READ | PROT_WRITE);
    memset(p + 512 * MIB, 0x11, 2 * MIB);
    unsigned long sum = 0;
    for (size_t i = 0; i < 2 * MIB; i += 1000)
        sum += p[512 * MIB + i];
    int code;
    int outside = probe(p + 600 * MIB, 0, &code);
    printf("reserve: mprotect = %d, sum %lu, outside the used piece %d (%s), munmap = %d\n", a,
           sum, outside, code_name(code), munmap(p, len));
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    setvbuf(stdout, NULL, _IONBF, 0);
    large_private();
    moves();
    protections();
    forks();
    reservation();
    printf("memory: done\n");
    return 0;
}
