/* SMP: one CPU-bound thread per CPU, and a fifth program that must still get to run.
 *
 * Four threads spin (never blocking) until told to stop, sampling the CPU they run on with
 * getcpu. Once all four spin, the main thread forks a child that does a little work and
 * exits; the spinners stop only after the child is reaped, or after a timeout if it starved.
 * The summary line says how many distinct CPUs the spinners ran on while all of them were
 * spinning, whether each made progress, and whether the fifth program ran.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPINNERS 4

static atomic_int spinning;
static atomic_int stop;

struct spinner {
    pthread_t thread;
    unsigned long iterations;
    unsigned long cpus; /* bit per CPU seen while all spinners spun */
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *spin(void *arg) {
    struct spinner *s = arg;
    atomic_fetch_add(&spinning, 1);
    while (!atomic_load(&stop)) {
        s->iterations++;
        if (atomic_load(&spinning) == SPINNERS && (s->iterations & 0xfff) == 0) {
            unsigned cpu = 0;
            if (syscall(SYS_getcpu, &cpu, NULL, NULL) == 0 && cpu < 64) s->cpus |= 1ul << cpu;
        }
    }
    return NULL;
}

int main(void) {
    struct spinner spinners[SPINNERS] = {0};
    for (int i = 0; i < SPINNERS; i++) pthread_create(&spinners[i].thread, NULL, spin, &spinners[i]);
    double start = now();
    while (atomic_load(&spinning) < SPINNERS && now() - start < 20) sched_yield();
    /* Let them settle on their CPUs, then start the fifth program. */
    struct timespec settle = {0, 300 * 1000 * 1000};
    nanosleep(&settle, NULL);
    double forked = now();
    pid_t child = fork();
    if (child == 0) {
        volatile unsigned long sum = 0;
        for (unsigned long i = 0; i < 1000000; i++) sum += i;
        printf("fifth program: sum %lu\n", (unsigned long)sum);
        fflush(stdout);
        _exit(0);
    }
    int status = 0, ran = 0;
    while (now() - forked < 30) {
        pid_t w = waitpid(child, &status, WNOHANG);
        if (w == child) {
            ran = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            break;
        }
        struct timespec tick = {0, 10 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    double fifth = now() - forked;
    atomic_store(&stop, 1);
    unsigned long seen = 0;
    int progressed = 1;
    for (int i = 0; i < SPINNERS; i++) {
        pthread_join(spinners[i].thread, NULL);
        seen |= spinners[i].cpus;
        progressed &= spinners[i].iterations > 0;
    }
    int distinct = __builtin_popcountl(seen);
    printf("fifth program took %.2f s while %d threads spun\n", fifth, SPINNERS);
    printf("smp: %d spinners on %d distinct CPUs, each made progress %s, the fifth program ran %s\n",
           SPINNERS, distinct, progressed ? "yes" : "no", ran ? "yes" : "no");
    return ran && progressed ? 0 : 1;
}
