/* Clocks and sleeps: prints only what must hold on any correct system, so the host and
 * Evergreen print the same lines (each check says ok or what failed). */
#include <stdio.h>
#include <time.h>
#include <sys/time.h>
#include <errno.h>

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static void check(const char *what, int ok) { printf("%s: %s\n", what, ok ? "ok" : "FAILED"); }

int main(void) {
    struct timespec a, b, res, real;
    clock_gettime(CLOCK_MONOTONIC, &a);
    struct timespec nap = {0, 50 * 1000 * 1000};
    check("nanosleep returns 0", nanosleep(&nap, NULL) == 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long slept = ns(b) - ns(a);
    check("nanosleep 50 ms sleeps at least 50 ms", slept >= 50000000LL);
    check("and not for seconds", slept < 5000000000LL);
    check("clock_getres monotonic", clock_getres(CLOCK_MONOTONIC, &res) == 0 && ns(res) > 0);
    check("realtime is after 2024", clock_gettime(CLOCK_REALTIME, &real) == 0 && real.tv_sec > 1704067200);
    struct timeval tv;
    check("gettimeofday agrees", gettimeofday(&tv, NULL) == 0 && tv.tv_sec - real.tv_sec < 2);
    check("time agrees", time(NULL) - real.tv_sec < 2);
    check("a bad clock is EINVAL", clock_gettime(12345, &a) == -1 && errno == EINVAL);
    struct timespec bad = {0, 2000000000};
    check("a bad timespec is EINVAL", nanosleep(&bad, NULL) == -1 && errno == EINVAL);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += 20000000;
    if (until.tv_nsec >= 1000000000) { until.tv_sec++; until.tv_nsec -= 1000000000; }
    check("clock_nanosleep absolute", clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    check("woke after the deadline", ns(b) >= ns(until));
    return 0;
}
