/* The first user program: writes through stdio (writev), allocates, and exits with a status.
 * Runs unchanged on the host Linux and on Evergreen; the system test compares the two. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv, char **envp) {
    printf("hello from user space\n");
    printf("argc=%d argv0=%s\n", argc, argv[0]);
    for (int i = 1; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    int envs = 0;
    for (char **e = envp; *e; e++)
        envs++;
    printf("envc=%d\n", envs);
    char *big = malloc(1 << 20);
    memset(big, 'x', 1 << 20);
    long sum = 0;
    for (int i = 0; i < (1 << 20); i += 4096)
        sum += big[i];
    printf("malloc'd 1 MiB, sum %ld\n", sum);
    free(big);
    fflush(stdout);
    return 7;
}
