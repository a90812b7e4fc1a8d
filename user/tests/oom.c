/* Running out of memory kills the program that ran out, never the kernel (guest only: on
 * the host this would push the machine into its OOM killer). A child reserves more memory
 * than the machine has (MAP_NORESERVE, so the mapping itself is allowed, as on Linux) and
 * touches it page by page; it must end with SIGKILL, as Linux's OOM killer ends it. Then
 * the next child still gets memory and runs normally, and so does the parent. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024UL * 1024)

static int run(void (*body)(void)) {
    pid_t child = fork();
    if (child == 0) {
        body();
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    return status;
}

static void eat(void) {
    size_t len = 4096 * MIB;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        perror("oom: mmap");
        _exit(2);
    }
    for (size_t i = 0; i < len; i += 4096)
        p[i] = 1;
    _exit(3); /* never: the machine has less memory */
}

static void modest(void) {
    size_t len = 32 * MIB;
    unsigned char *p = malloc(len);
    if (!p)
        _exit(4);
    memset(p, 7, len);
    unsigned long sum = 0;
    for (size_t i = 0; i < len; i += 4096)
        sum += p[i];
    _exit(sum == 7 * (len / 4096) ? 0 : 5);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int round = 1; round <= 2; round++) {
        int status = run(eat);
        if (WIFSIGNALED(status))
            printf("oom: round %d: the hog was killed by signal %d\n", round, WTERMSIG(status));
        else
            printf("oom: round %d: the hog exited %d\n", round, WEXITSTATUS(status));
        status = run(modest);
        printf("oom: round %d: the next child exited %d\n", round,
               WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
    printf("oom: the kernel lives\n");
    return 0;
}
