/* Prints, then writes through a null pointer: killed by SIGSEGV on the host and on
 * Evergreen alike, after its output got out. */
#include <stdio.h>

int main(void) {
    printf("about to fault\n");
    fflush(stdout);
    volatile int *bad = (volatile int *)0;
    *bad = 42;
    printf("still here?\n");
    return 0;
}
