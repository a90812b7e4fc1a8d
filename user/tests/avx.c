/* AVX state per thread (user/tests/avx.c): CPUID and XCR0 say the OS saves the YMM
 * registers; values held in all sixteen YMM registers survive syscalls, sched_yield, another
 * thread and another process using their own values, and signal handlers that clobber them
 * (the xsave signal frame: its magic, its contents, changes a handler makes to it, and a
 * legacy frame without the magic, which resets the upper halves as Linux does).
 * Output and status are compared with the host's. */
#include <cpuid.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOAD_ALL \
    "vmovdqu 0(%[in]), %%ymm0\n"\
    "vmovdqu 32(%[in]), %%ymm1\n"\
    "vmovdqu 64(%[in]), %%ymm2\n"\
    "vmovdqu 96(%[in]), %%ymm3\n"\
    "vmovdqu 128(%[in]), %%ymm4\n"\
    "vmovdqu 160(%[in]), %%ymm5\n"\
    "vmovdqu 192(%[in]), %%ymm6\n"\
    "vmovdqu 224(%[in]), %%ymm7\n"\
    "vmovdqu 256(%[in]), %%ymm8\n"\
    "vmovdqu 288(%[in]), %%ymm9\n"\
    "vmovdqu 320(%[in]), %%ymm10\n"\
    "vmovdqu 352(%[in]), %%ymm11\n"\
    "vmovdqu 384(%[in]), %%ymm12\n"\
    "vmovdqu 416(%[in]), %%ymm13\n"\
    "vmovdqu 448(%[in]), %%ymm14\n"\
    "vmovdqu 480(%[in]), %%ymm15\n"
#define STORE_ALL \
    "vmovdqu %%ymm0, 0(%[out])\n"\
    "vmovdqu %%ymm1, 32(%[out])\n"\
    "vmovdqu %%ymm2, 64(%[out])\n"\
    "vmovdqu %%ymm3, 96(%[out])\n"\
    "vmovdqu %%ymm4, 128(%[out])\n"\
    "vmovdqu %%ymm5, 160(%[out])\n"\
    "vmovdqu %%ymm6, 192(%[out])\n"\
    "vmovdqu %%ymm7, 224(%[out])\n"\
    "vmovdqu %%ymm8, 256(%[out])\n"\
    "vmovdqu %%ymm9, 288(%[out])\n"\
    "vmovdqu %%ymm10, 320(%[out])\n"\
    "vmovdqu %%ymm11, 352(%[out])\n"\
    "vmovdqu %%ymm12, 384(%[out])\n"\
    "vmovdqu %%ymm13, 416(%[out])\n"\
    "vmovdqu %%ymm14, 448(%[out])\n"\
    "vmovdqu %%ymm15, 480(%[out])\n"
#define ADD_ALL \
    "vpaddd %%ymm14, %%ymm0, %%ymm0\n"\
    "vpaddd %%ymm14, %%ymm1, %%ymm1\n"\
    "vpaddd %%ymm14, %%ymm2, %%ymm2\n"\
    "vpaddd %%ymm14, %%ymm3, %%ymm3\n"\
    "vpaddd %%ymm14, %%ymm4, %%ymm4\n"\
    "vpaddd %%ymm14, %%ymm5, %%ymm5\n"\
    "vpaddd %%ymm14, %%ymm6, %%ymm6\n"\
    "vpaddd %%ymm14, %%ymm7, %%ymm7\n"\
    "vpaddd %%ymm14, %%ymm8, %%ymm8\n"\
    "vpaddd %%ymm14, %%ymm9, %%ymm9\n"\
    "vpaddd %%ymm14, %%ymm10, %%ymm10\n"\
    "vpaddd %%ymm14, %%ymm11, %%ymm11\n"\
    "vpaddd %%ymm14, %%ymm12, %%ymm12\n"\
    "vpaddd %%ymm14, %%ymm13, %%ymm13\n"
#define CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

typedef struct { uint8_t b[16][32]; } ymm_set;

static void pattern(ymm_set *s, unsigned seed) {
    for (int r = 0; r < 16; r++)
        for (int j = 0; j < 32; j++) s->b[r][j] = (uint8_t)(seed * 37 + r * 32 + j * 7 + 1);
    /* ymm14 is the increment: every dword 1 */
    for (int j = 0; j < 32; j++) s->b[14][j] = (j % 4 == 0);
}

/* What `rounds` additions of ymm14 make of `in`. */
static void expect_added(const ymm_set *in, ymm_set *want, unsigned rounds) {
    *want = *in;
    for (int r = 0; r < 14; r++)
        for (int d = 0; d < 8; d++) {
            uint32_t v;
            memcpy(&v, &want->b[r][d * 4], 4);
            v += rounds;
            memcpy(&want->b[r][d * 4], &v, 4);
        }
}

/* Loads `in` into ymm0-15, then `rounds` times: add ymm14 to ymm0-13, syscall `nr` (no
 * arguments: sched_yield or getpid); stores the registers into `out`. */
static void ymm_syscalls(const ymm_set *in, ymm_set *out, long nr, unsigned rounds) {
    long count = rounds;
    __asm__ volatile(
        LOAD_ALL
        "1:\n"
        ADD_ALL
        "mov %[nr], %%rax\n"
        "syscall\n"
        "dec %[count]\n"
        "jnz 1b\n"
        STORE_ALL
        "vzeroupper\n"
        : [count] "+r"(count)
        : [in] "r"(in), [out] "r"(out), [nr] "r"(nr)
        : "rax", "rcx", "r11", "memory", CLOBBERS);
}

static int check(const char *what, unsigned seed, long nr, unsigned rounds) {
    ymm_set in, out, want;
    pattern(&in, seed);
    memset(&out, 0, sizeof out);
    ymm_syscalls(&in, &out, nr, rounds);
    expect_added(&in, &want, rounds);
    int ok = memcmp(&out, &want, sizeof out) == 0;
    if (what) printf("%s: %s\n", what, ok ? "ok" : "CORRUPTED");
    return ok;
}

static void *thread_main(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    int ok = 1;
    for (int i = 0; i < 20; i++) ok &= check(NULL, seed + i, 24 /* sched_yield */, 50);
    return (void *)(uintptr_t)ok;
}

/* Signals: the handler checks the frame and clobbers every YMM register. */
static volatile int handled;
static volatile int frame_ok;
static volatile int edit_frame;    /* 1: set ymm15's upper half in the frame to 0xab */
static volatile int drop_magic;    /* 1: clear magic1 (a legacy frame) */
static volatile int null_fpstate;  /* 1: set the frame's fpstate pointer to NULL */
static ymm_set held;               /* what main holds when the signal comes */

static void handler(int sig, siginfo_t *info, void *ucv) {
    (void)sig;
    (void)info;
    ucontext_t *uc = ucv;
    uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs;
    uint32_t magic1, xstate_size, magic2 = 0;
    uint64_t xfeatures;
    memcpy(&magic1, fp + 464, 4);
    memcpy(&xfeatures, fp + 472, 8);
    memcpy(&xstate_size, fp + 480, 4);
    if (magic1 == 0x46505853) memcpy(&magic2, fp + xstate_size, 4);
    int ok = (uc->uc_flags & 1) && ((uintptr_t)fp % 64 == 0) && magic1 == 0x46505853 &&
             (xfeatures & 7) == 7 && magic2 == 0x46505845;
    /* The saved upper half of ymm3 (YMM_Hi128 at 576 in the standard form) is main's. */
    ok = ok && memcmp(fp + 576 + 3 * 16, &held.b[3][16], 16) == 0;
    /* and its lower half (XMM3 at 160) */
    ok = ok && memcmp(fp + 160 + 3 * 16, &held.b[3][0], 16) == 0;
    frame_ok = ok;
    if (edit_frame) memset(fp + 576 + 15 * 16, 0xab, 16);
    if (drop_magic) memset(fp + 464, 0, 4);
    if (null_fpstate) uc->uc_mcontext.fpregs = NULL; /* sigreturn resets the FPU state */
    __asm__ volatile("vpcmpeqd %%ymm0, %%ymm0, %%ymm0\n"
                     "vmovdqa %%ymm0, %%ymm1\n vmovdqa %%ymm0, %%ymm3\n"
                     "vmovdqa %%ymm0, %%ymm7\n vmovdqa %%ymm0, %%ymm15\n"
                     "vpaddd %%ymm0, %%ymm0, %%ymm9\n" ::: CLOBBERS);
    handled = 1;
}

/* Holds `held` in ymm0-15 and spins until the handler has run (a pending signal is
 * delivered on an interrupt's return, or on the syscall's if `nr` is kill's); stores them. */
static void ymm_wait_signal(ymm_set *out, long kill_pid) {
    long spins = 4000000000L;
    __asm__ volatile(
        LOAD_ALL
        "test %[pid], %[pid]\n"
        "jz 1f\n"
        "mov $62, %%eax\n"        /* kill(pid, SIGUSR1) */
        "mov %[pid], %%rdi\n"
        "mov $10, %%esi\n"
        "syscall\n"
        "1:\n"
        "cmpl $0, %[handled]\n"
        "jnz 2f\n"
        "dec %[spins]\n"
        "jnz 1b\n"
        "2:\n"
        STORE_ALL
        "vzeroupper\n"
        : [spins] "+r"(spins), [handled] "+m"(handled)
        : [in] "r"(&held), [out] "r"(out), [pid] "r"(kill_pid)
        : "rax", "rcx", "rdx", "rsi", "rdi", "r11", "memory", CLOBBERS);
}

static void signal_case(const char *name, int use_alarm, int edit, int legacy, int null_fp) {
    ymm_set out;
    pattern(&held, 100 + use_alarm * 2 + edit + legacy * 4 + null_fp * 8);
    null_fpstate = null_fp;
    handled = 0;
    frame_ok = 0;
    edit_frame = edit;
    drop_magic = legacy;
    if (use_alarm) {
        struct itimerval t = {{0, 0}, {0, 20000}};
        setitimer(ITIMER_REAL, &t, NULL);
        ymm_wait_signal(&out, 0);
    } else {
        ymm_wait_signal(&out, getpid());
    }
    ymm_set want = held;
    if (edit) memset(&want.b[15][16], 0xab, 16);
    if (legacy)
        for (int r = 0; r < 16; r++) memset(&want.b[r][16], 0, 16);
    if (null_fp) memset(&want, 0, sizeof want);
    printf("%s: handler %d, frame %s, registers after %s\n", name, handled,
           frame_ok ? "ok" : "BAD", memcmp(&out, &want, sizeof out) == 0 ? "ok" : "CORRUPTED");
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    printf("cpuid: avx %d, osxsave %d\n", avx, osxsave);
    if (!osxsave || !avx) return 1;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    printf("xcr0: x87 %d, sse %d, avx %d\n", lo & 1, (lo >> 1) & 1, (lo >> 2) & 1);
    printf("AT_MINSIGSTKSZ >= 1024: %d\n", getauxval(51) >= 1024);

    check("ymm across getpid", 1, 39, 100);
    check("ymm across sched_yield", 2, 24, 100);

    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, thread_main, (void *)(uintptr_t)(10 + 100 * i));
    int ok = 1;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        ok &= (int)(uintptr_t)r;
    }
    printf("two threads, own ymm values: %s\n", ok ? "ok" : "CORRUPTED");

    pid_t child = fork();
    if (child == 0) {
        int ok = 1;
        for (int i = 0; i < 20; i++) ok &= check(NULL, 50 + i, 24, 50);
        _exit(ok ? 7 : 1);
    }
    ok = 1;
    for (int i = 0; i < 20; i++) ok &= check(NULL, 80 + i, 24, 50);
    int status;
    waitpid(child, &status, 0);
    printf("parent and child, own ymm values: parent %s, child exit %d\n",
           ok ? "ok" : "CORRUPTED", WIFEXITED(status) ? WEXITSTATUS(status) : -1);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    signal_case("SIGUSR1 from kill", 0, 0, 0, 0);
    signal_case("SIGALRM while spinning", 1, 0, 0, 0);
    signal_case("SIGUSR1, handler edits ymm15 in the frame", 0, 1, 0, 0);
    signal_case("SIGUSR1, handler makes the frame legacy", 0, 0, 1, 0);
    unsigned mxcsr = 0x7f80; /* round toward zero: not the initial state */
    __asm__ volatile("ldmxcsr %0" ::"m"(mxcsr));
    signal_case("SIGUSR1, handler sets fpstate to NULL", 0, 0, 0, 1);
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    printf("MXCSR after the NULL-fpstate sigreturn: %#x\n", mxcsr);
    return 0;
}
