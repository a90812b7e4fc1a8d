/* One CPU fault or bad pointer per run, chosen by argv[1]; on Linux and on Evergreen the
 * program must end the same way (the signal's status, or EFAULT for a bad pointer passed to
 * the kernel). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    printf("fault: %s\n", what);
    fflush(stdout);
    volatile int zero = 0;
    if (!strcmp(what, "ud2")) {
        __asm__ volatile("ud2");
    } else if (!strcmp(what, "divide")) {
        unsigned lo = 1, hi = 0, divisor = (unsigned)zero;
        __asm__ volatile("divl %2" : "+a"(lo), "+d"(hi) : "r"(divisor));
        printf("%u\n", lo);
    } else if (!strcmp(what, "int3")) {
        __asm__ volatile("int3");
    } else if (!strcmp(what, "kernel-read")) {
        printf("%d\n", *(volatile int *)0xffffffff80000000UL);
    } else if (!strcmp(what, "kernel-write-arg")) {
        long n = write(1, (const void *)0xffffffff80000000UL, 8);
        printf("write of a kernel address: %ld, %s\n", n, n < 0 ? strerror(errno) : "no error");
        n = write(1, (const void *)0x1000, 8);
        printf("write of an unmapped address: %ld, %s\n", n, n < 0 ? strerror(errno) : "no error");
        return 0;
    }
    printf("still running\n");
    return 1;
}
