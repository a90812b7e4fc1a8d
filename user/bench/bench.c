/*
 * bench: micro-benchmarks of the system calls a Unix program leans on, run as init on
 * Evergreen and on Linux in the same QEMU machine (`cargo run -- bench user|linux`).
 *
 * Output, one line each:
 *   bench: start
 *   bench: NAME VALUE ns/op        a figure (mean over its iterations)
 *   bench: NAME failed ERRNO-TEXT  a step that could not run; the others still do
 *   bench: done
 *
 * Iteration counts are multiplied by BENCH_SCALE (default 1; a decimal such as 0.1 makes a
 * quick run), taken from the environment or from an argument `BENCH_SCALE=N`: Evergreen
 * gives init a fixed environment, so the runner passes it as an argument on both systems.
 * `bench exit` exits at once: vfork_exec_wait executes itself that way (through argv[0]:
 * there is no /proc/self/exe to rely on).
 *
 * As pid 1 it powers the machine off at the end with reboot(RB_POWER_OFF): on Linux init
 * must not exit (the kernel would panic); Evergreen powers off either way.
 *
 * Build: musl-gcc -static -O2 -o bench bench.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* From <linux/futex.h>, which musl-gcc does not ship. */
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

static double scale = 1.0;
static char *self_path;
static char **self_envp;

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* `base` iterations scaled by BENCH_SCALE, at least one. */
static long iterations(long base)
{
	long n = (long)(base * scale);
	return n < 1 ? 1 : n;
}

static void report(const char *name, double start_ns, long ops)
{
	printf("bench: %s %.1f ns/op\n", name, (now_ns() - start_ns) / (double)ops);
	fflush(stdout);
}

/* Reports a failed step with errno `err` (a positive errno value). */
static void failed(const char *name, int err)
{
	printf("bench: %s failed %s\n", name, strerror(err));
	fflush(stdout);
}

static void bench_getppid(void)
{
	long n = iterations(200000);
	double start = now_ns();
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	report("getppid", start, n);
}

/* 1-byte ping-pong with a forked child over two pipes; one op is a round trip. */
static void bench_pipe_rtt(void)
{
	int there[2], back[2];
	long n = iterations(20000);
	if (pipe(there) != 0 || pipe(back) != 0) {
		failed("pipe_rtt", errno);
		return;
	}
	pid_t child = fork();
	if (child < 0) {
		failed("pipe_rtt", errno);
		return;
	}
	if (child == 0) {
		char c;
		close(there[1]);
		close(back[0]);
		while (read(there[0], &c, 1) == 1)
			if (write(back[1], &c, 1) != 1)
				break;
		_exit(0);
	}
	close(there[0]);
	close(back[1]);
	int err = 0;
	char c = 'x';
	double start = now_ns();
	for (long i = 0; i < n && !err; i++) {
		if (write(there[1], &c, 1) != 1 || read(back[0], &c, 1) != 1)
			err = errno ? errno : EIO;
	}
	if (!err)
		report("pipe_rtt", start, n);
	close(there[1]);
	close(back[0]);
	waitpid(child, NULL, 0);
	if (err)
		failed("pipe_rtt", err);
}

/* First touch of each page of fresh anonymous mappings; one op is one page. */
static void bench_page_fault(void)
{
	const long pages = 1024;
	const long page = 4096;
	long rounds = iterations(10);
	double spent = 0;
	for (long r = 0; r < rounds; r++) {
		volatile char *p = mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			failed("page_fault", errno);
			return;
		}
		double start = now_ns();
		for (long i = 0; i < pages; i++)
			p[i * page] = 1;
		spent += now_ns() - start;
		munmap((void *)p, pages * page);
	}
	printf("bench: page_fault %.1f ns/op\n", spent / (double)(pages * rounds));
	fflush(stdout);
}

static void bench_fork_exit_wait(void)
{
	long n = iterations(300);
	double start = now_ns();
	for (long i = 0; i < n; i++) {
		pid_t child = fork();
		if (child < 0) {
			failed("fork_exit_wait", errno);
			return;
		}
		if (child == 0)
			_exit(0);
		if (waitpid(child, NULL, 0) != child) {
			failed("fork_exit_wait", errno);
			return;
		}
	}
	report("fork_exit_wait", start, n);
}

static void bench_vfork_exec_wait(void)
{
	long n = iterations(100);
	char *argv[] = {self_path, "exit", NULL};
	double start = now_ns();
	for (long i = 0; i < n; i++) {
		int status;
		pid_t child = vfork();
		if (child < 0) {
			failed("vfork_exec_wait", errno);
			return;
		}
		if (child == 0) {
			execve(self_path, argv, self_envp);
			_exit(127);
		}
		if (waitpid(child, &status, 0) != child) {
			failed("vfork_exec_wait", errno);
			return;
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			/* 127: execve failed in the child, whose errno is gone. */
			failed("vfork_exec_wait", ENOEXEC);
			return;
		}
	}
	report("vfork_exec_wait", start, n);
}

static void *nothing(void *arg)
{
	return arg;
}

static void bench_thread_create_join(void)
{
	long n = iterations(1000);
	double start = now_ns();
	for (long i = 0; i < n; i++) {
		pthread_t t;
		int err = pthread_create(&t, NULL, nothing, NULL);
		if (err == 0)
			err = pthread_join(t, NULL);
		if (err) {
			failed("thread_create_join", err);
			return;
		}
	}
	report("thread_create_join", start, n);
}

/* The futex word: 1 while it is the partner thread's turn, 0 while it is main's. */
static atomic_int turn;
static long rounds;

static long futex(atomic_int *word, int op, int value)
{
	return syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

static void *partner(void *arg)
{
	for (long i = 0; i < rounds; i++) {
		while (atomic_load(&turn) == 0)
			futex(&turn, FUTEX_WAIT_PRIVATE, 0);
		atomic_store(&turn, 0);
		futex(&turn, FUTEX_WAKE_PRIVATE, 1);
	}
	return arg;
}

/* Two threads hand the turn back and forth; one op is a round trip (two hand-overs). */
static void bench_futex_pingpong(void)
{
	pthread_t t;
	rounds = iterations(10000);
	atomic_store(&turn, 0);
	int err = pthread_create(&t, NULL, partner, NULL);
	if (err) {
		failed("futex_pingpong", err);
		return;
	}
	double start = now_ns();
	for (long i = 0; i < rounds; i++) {
		atomic_store(&turn, 1);
		if (futex(&turn, FUTEX_WAKE_PRIVATE, 1) < 0) {
			err = errno;
			break;
		}
		while (atomic_load(&turn) == 1)
			if (futex(&turn, FUTEX_WAIT_PRIVATE, 1) < 0 && errno != EAGAIN &&
			    errno != EINTR) {
				err = errno;
				break;
			}
		if (err)
			break;
	}
	if (err) {
		/* The partner waits for turns that will not come: leave it, exit ends it. */
		failed("futex_pingpong", err);
		return;
	}
	report("futex_pingpong", start, rounds);
	pthread_join(t, NULL);
}

/* BENCH_SCALE from an argument `BENCH_SCALE=N`, else from the environment. */
static void read_scale(int argc, char **argv)
{
	const char *text = getenv("BENCH_SCALE");
	for (int i = 1; i < argc; i++)
		if (strncmp(argv[i], "BENCH_SCALE=", 12) == 0)
			text = argv[i] + 12;
	if (text) {
		double s = strtod(text, NULL);
		if (s > 0)
			scale = s;
	}
}

int main(int argc, char **argv, char **envp)
{
	if (argc > 1 && strcmp(argv[1], "exit") == 0)
		return 0;
	self_path = argv[0];
	self_envp = envp;
	read_scale(argc, argv);
	printf("bench: start\n");
	fflush(stdout);
	bench_getppid();
	bench_pipe_rtt();
	bench_page_fault();
	bench_fork_exit_wait();
	bench_vfork_exec_wait();
	bench_thread_create_join();
	bench_futex_pingpong();
	printf("bench: done\n");
	fflush(stdout);
	if (getpid() == 1) {
		reboot(RB_POWER_OFF);
		failed("reboot", errno);
	}
	return 0;
}
