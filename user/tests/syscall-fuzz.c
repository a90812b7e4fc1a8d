/* Robustness, not a differential test (random syscalls could harm a real host): makes
 * thousands of system calls with random arguments — wild pointers, huge lengths, negative
 * numbers — and prints how many it made. The kernel must answer every one with a result or
 * an errno, without panicking or hanging. Calls that would end the program or change its
 * own memory map or thread pointer are left out; blocking calls get no timeouts. */
#include <stdio.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/syscall.h>

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
    case SYS_exit: case SYS_exit_group: case SYS_arch_prctl: case SYS_mmap: case SYS_munmap:
    case SYS_mprotect: case SYS_mremap: case SYS_brk: case SYS_madvise:
    case SYS_nanosleep: case SYS_clock_nanosleep: case SYS_poll: case SYS_ppoll:
    case SYS_select: case SYS_pselect6: case SYS_pause: case SYS_rt_sigsuspend:
    case SYS_rt_sigtimedwait: case SYS_futex: case SYS_wait4: case SYS_waitid:
    case SYS_read: case SYS_readv: case SYS_pread64: case SYS_preadv: case SYS_preadv2:
    case SYS_epoll_wait: case SYS_epoll_pwait: case SYS_epoll_pwait2: case SYS_accept:
    case SYS_accept4: case SYS_recvfrom: case SYS_recvmsg: case SYS_msgrcv: case SYS_semop:
    case SYS_semtimedop: case SYS_kill: case SYS_tkill: case SYS_tgkill: case SYS_reboot:
    case SYS_fork: case SYS_vfork: case SYS_clone: case SYS_clone3: case SYS_execve:
    case SYS_execveat: case SYS_rt_sigreturn: case SYS_set_tid_address: case SYS_shmat:
    case SYS_io_uring_enter: case SYS_remap_file_pages:
        return 1;
    }
    return 0;
}

int main(void) {
    long calls = 0;
    for (int i = 0; i < 20000; i++) {
        long nr = (long)(next() % 460);
        if (excluded(nr))
            continue;
        /* Writes go to stdout only if they are small and to a real buffer. */
        if (nr == SYS_write || nr == SYS_writev || nr == SYS_pwrite64 || nr == SYS_pwritev)
            syscall(nr, 1000 + (long)(next() % 8), arg(), arg(), arg(), arg(), arg());
        else
            syscall(nr, arg(), arg(), arg(), arg(), arg(), arg());
        calls++;
    }
    printf("survived %ld random system calls\n", calls);
    return 0;
}
