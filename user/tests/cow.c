/* Copy-on-write fork and shared memory, compared with the host: after fork each side sees
 * only its own writes, in many pages and on both sides; the kernel writes into a page shared
 * since fork (read() from a pipe) and reads from one (write()); a fork of a fork; a
 * MAP_SHARED|MAP_ANONYMOUS page stays one page across fork, MAP_PRIVATE does not; a page
 * made read-only with mprotect stays so (SIGSEGV, caught); munmap in a child leaves the
 * parent's pages alone; a fork while another thread of the parent keeps writing (its writes
 * must not reach the child: the parent's TLBs are flushed on every CPU); many short-lived
 * children. Prints only what is the same on any Linux. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
#define PAGES 16

static unsigned char buffer[PAGES * PAGE];

/* A checksum of the buffer: what each side reports instead of the bytes. */
static unsigned long sum(const unsigned char *p, size_t n) {
    unsigned long s = 0;
    for (size_t i = 0; i < n; i++) s = s * 31 + p[i];
    return s;
}

static void fill(unsigned char *p, size_t n, unsigned char seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}

static int wait_for(pid_t p) {
    int st;
    if (waitpid(p, &st, 0) != p) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -2;
}

/* Child and parent both write after fork, in every page; each sees its own bytes. */
static void both_write(void) {
    fill(buffer, sizeof buffer, 1);
    unsigned long before = sum(buffer, sizeof buffer);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        int same = sum(buffer, sizeof buffer) == before;
        for (int i = 0; i < PAGES; i++) buffer[i * PAGE + 100] = 0xc0 + i;
        int ok = 1;
        for (int i = 0; i < PAGES; i++) ok &= buffer[i * PAGE + 100] == 0xc0 + i;
        printf("child: saw the parent's bytes %d, its own writes %d, sum %lx\n", same, ok,
               sum(buffer, sizeof buffer));
        fflush(stdout);
        _exit(0);
    }
    /* The parent writes too, in other places of the same pages, while the child runs. */
    for (int i = 0; i < PAGES; i += 2) buffer[i * PAGE + 200] = 0x11;
    int st = wait_for(p);
    int untouched = 1;
    for (int i = 0; i < PAGES; i++) untouched &= buffer[i * PAGE + 100] == (unsigned char)(1 + (i * PAGE + 100) * 7);
    int mine = 1;
    for (int i = 0; i < PAGES; i += 2) mine &= buffer[i * PAGE + 200] == 0x11;
    printf("parent: child status %d, child's writes invisible %d, own writes kept %d\n", st,
           untouched, mine);
    fill(buffer, sizeof buffer, 1);
    printf("parent: sum back to the start %d\n", sum(buffer, sizeof buffer) == before);
}

/* Heap and stack pages are copy-on-write too. */
static void heap_and_stack(void) {
    unsigned char *heap = malloc(3 * PAGE);
    volatile unsigned char stack[2 * PAGE];
    memset(heap, 'h', 3 * PAGE);
    for (int i = 0; i < 2 * PAGE; i++) stack[i] = 's';
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        memset(heap, 'H', 3 * PAGE);
        for (int i = 0; i < 2 * PAGE; i++) stack[i] = 'S';
        _exit(heap[PAGE] == 'H' && stack[PAGE] == 'S' ? 0 : 1);
    }
    int st = wait_for(p);
    int heap_ok = 1, stack_ok = 1;
    for (int i = 0; i < 3 * PAGE; i++) heap_ok &= heap[i] == 'h';
    for (int i = 0; i < 2 * PAGE; i++) stack_ok &= stack[i] == 's';
    printf("heap and stack: child %d, parent's heap intact %d, stack intact %d\n", st, heap_ok,
           stack_ok);
    free(heap);
}

/* The kernel writes into a copy-on-write page (read from a pipe) and reads from one (write
 * to a pipe), in the child and in the parent. */
static void kernel_access(void) {
    int down[2], up[2];
    if (pipe(down) || pipe(up)) { perror("pipe"); exit(1); }
    memset(buffer, 'p', 3 * PAGE);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        close(down[1]);
        close(up[0]);
        /* Straddles a page boundary, into pages the child has not touched since fork. */
        size_t got = 0;
        while (got < 6000) {
            ssize_t n = read(down[0], buffer + PAGE - 1000 + got, 6000 - got);
            if (n <= 0) { printf("child: read failed: %s\n", n ? strerror(errno) : "EOF"); _exit(1); }
            got += n;
        }
        int ok = 1;
        for (int i = 0; i < 6000; i++) ok &= buffer[PAGE - 1000 + i] == (unsigned char)('A' + i % 26);
        printf("child: read 6000 bytes into shared pages: %d\n", ok);
        /* And sends a page it has not written at all (still shared with the parent). */
        ssize_t w = write(up[1], buffer + 2 * PAGE + 1000, 100);
        printf("child: wrote %zd bytes from a shared page\n", w);
        fflush(stdout);
        _exit(ok ? 0 : 1);
    }
    close(down[0]);
    close(up[1]);
    unsigned char data[6000];
    for (int i = 0; i < 6000; i++) data[i] = 'A' + i % 26;
    ssize_t w = write(down[1], data, sizeof data);
    close(down[1]);
    /* The parent's pages: a read of the child's bytes into its own shared page. */
    ssize_t n = read(up[0], buffer + 2 * PAGE, 100);
    int st = wait_for(p);
    int intact = 1;
    for (int i = 0; i < 2 * PAGE; i++) intact &= buffer[i] == 'p';
    int got = n == 100;
    for (int i = 0; i < 100; i++) got &= buffer[2 * PAGE + i] == 'p';
    printf("parent: wrote %zd, child %d, own pages intact %d, read back %d\n", w, st, intact,
           got);
    close(up[0]);
}

/* A fork of a fork: three generations write the same page, each keeps its own value. */
static void grandchild(void) {
    static volatile int value = 1;
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        value = 2;
        pid_t q = fork();
        if (q == 0) {
            int saw = value;
            value = 3;
            printf("grandchild: saw %d, now %d\n", saw, value);
            fflush(stdout);
            _exit(0);
        }
        int st = wait_for(q);
        printf("child: grandchild %d, value still %d\n", st, value);
        fflush(stdout);
        _exit(value);
    }
    int st = wait_for(p);
    printf("parent: child exited %d, value still %d\n", st, value);
}

/* MAP_SHARED anonymous memory stays one page across fork; MAP_PRIVATE does not. */
static void shared_and_private(void) {
    int *shared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int *private = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED || private == MAP_FAILED) { perror("mmap"); exit(1); }
    shared[0] = 10;
    shared[PAGE / sizeof(int)] = 20;
    private[0] = 30;
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        int saw = shared[0];
        shared[0] = 11;
        shared[PAGE / sizeof(int)] += 1;
        private[0] = 31;
        /* A grandchild writes the shared page too. */
        pid_t q = fork();
        if (q == 0) { shared[1] = 99; _exit(0); }
        wait_for(q);
        _exit(saw == 10 ? 0 : 1);
    }
    int st = wait_for(p);
    printf("shared: child %d, parent sees %d %d %d, private %d\n", st, shared[0],
           shared[PAGE / sizeof(int)], shared[1], private[0]);
    /* The parent writes after the fork too: a second child sees it. */
    shared[0] = 12;
    p = fork();
    if (p == 0) _exit(shared[0]);
    printf("shared: second child saw %d\n", wait_for(p));
    munmap(shared, 2 * PAGE);
    munmap(private, PAGE);
}

static sigjmp_buf jump;
static volatile void *fault_address;

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)sig;
    (void)context;
    fault_address = info->si_addr;
    siglongjmp(jump, 1);
}

/* mprotect(PROT_READ) on a page shared since fork: a write is a SIGSEGV, caught; the
 * parent's page is untouched and still writable. */
static void protect_after_fork(void) {
    unsigned char *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) { perror("mmap"); exit(1); }
    page[0] = 'x';
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
        if (mprotect(page, PAGE, PROT_READ)) { perror("mprotect"); _exit(1); }
        if (sigsetjmp(jump, 1) == 0) {
            page[0] = 'y';
            printf("child: write to a read-only page went through\n");
        } else {
            printf("child: SIGSEGV at the page %d, byte still %c\n",
                   fault_address == (void *)page, page[0]);
        }
        /* Writable again: the write goes to the child's own copy. */
        mprotect(page, PAGE, PROT_READ | PROT_WRITE);
        page[0] = 'z';
        printf("child: after mprotect(READ|WRITE) %c\n", page[0]);
        fflush(stdout);
        _exit(0);
    }
    int st = wait_for(p);
    page[1] = 'w';
    printf("parent: child %d, page %c%c\n", st, page[0], page[1]);
    munmap(page, PAGE);
}

/* munmap in the child leaves the parent's pages. */
static void unmap_in_child(void) {
    unsigned char *area = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) { perror("mmap"); exit(1); }
    memset(area, 'm', 4 * PAGE);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        area[0] = 'c';
        int r = munmap(area, 4 * PAGE);
        /* Memory after munmap is fresh and zeroed. */
        unsigned char *again = mmap(area, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        _exit(r == 0 && again == area && again[0] == 0 ? 0 : 1);
    }
    int st = wait_for(p);
    int ok = 1;
    for (int i = 0; i < 4 * PAGE; i++) ok &= area[i] == 'm';
    area[PAGE] = 'p';
    printf("unmap in child: child %d, parent's pages intact %d, writable %d\n", st, ok,
           area[PAGE] == 'p');
    munmap(area, 4 * PAGE);
}

static volatile long counter;
static volatile int stop;

static void *count(void *arg) {
    (void)arg;
    while (!stop) counter++;
    return NULL;
}

/* Another thread of the parent writes all along, on another CPU if there is one: after the
 * fork, none of its writes may reach the child's copy. */
static void fork_while_a_thread_writes(void) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, count, NULL)) { printf("pthread_create failed\n"); return; }
    while (counter < 1000) sched_yield();
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        long first = counter;
        for (int i = 0; i < 200; i++) sched_yield();
        _exit(counter == first ? 0 : 1);
    }
    int st = wait_for(p);
    long after = counter;
    for (int i = 0; i < 100000 && counter == after; i++) sched_yield();
    int counting = counter != after;
    stop = 1;
    pthread_join(thread, NULL);
    printf("thread: the child's counter stood still %d, the parent's kept counting %d\n",
           st == 0, counting);
}

/* Many children that write and exit: nothing leaks, and the parent's data stays. */
static void many_children(void) {
    fill(buffer, sizeof buffer, 5);
    unsigned long before = sum(buffer, sizeof buffer);
    int bad = 0;
    for (int i = 0; i < 50; i++) {
        pid_t p = fork();
        if (p == 0) {
            buffer[(i % PAGES) * PAGE] ^= 0xff;
            _exit(sum(buffer, sizeof buffer) != before ? 0 : 1);
        }
        if (wait_for(p) != 0) bad++;
        /* The parent writes a page the child shared (the same value: a copy-on-write fault). */
        ((volatile unsigned char *)buffer)[(i % PAGES) * PAGE + 1] = buffer[(i % PAGES) * PAGE + 1];
    }
    printf("many children: %d failed, parent's buffer unchanged %d\n", bad,
           sum(buffer, sizeof buffer) == before);
}

int main(void) {
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    both_write();
    heap_and_stack();
    kernel_access();
    grandchild();
    shared_and_private();
    protect_after_fork();
    unmap_in_child();
    fork_while_a_thread_writes();
    many_children();
    printf("done\n");
    return 0;
}
