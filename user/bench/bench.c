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
 * Each benchmark runs in a child process of its own (a crash there is reported as a failure
 * and the next one runs). As pid 1 it powers the machine off at the end with reboot(RB_POWER_OFF): on Linux init
 * must not exit (the kernel would panic); Evergreen powers off either way.
 *
 * Build: musl-gcc -static -O2 -o bench bench.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* From <linux/futex.h>, which musl-gcc does not ship. */
#define FUTEX_WAIT 0
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

static void getppid_loop(const char *name)
{
	long n = iterations(30000);
	double start = now_ns();
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	report(name, start, n);
}

/* In a child, like every other benchmark: what an ordinary process pays. */
static void bench_getppid(void)
{
	getppid_loop("getppid");
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

/*
 * Fresh anonymous memory, written once per page; one op is one page. mmap and munmap are
 * timed too: a kernel that maps eagerly does at mmap the work another does at the first
 * write, and both must be counted to compare them.
 */
static void bench_page_fault(void)
{
	const long pages = 1024;
	const long page = 4096;
	long rounds = iterations(20);
	double start = now_ns();
	for (long r = 0; r < rounds; r++) {
		volatile char *p = mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			failed("page_fault", errno);
			return;
		}
		for (long i = 0; i < pages; i++)
			p[i * page] = 1;
		munmap((void *)p, pages * page);
	}
	report("page_fault", start, pages * rounds);
}

static void bench_fork_exit_wait(void)
{
	long n = iterations(500);
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

/*
 * Threads are started with raw clone(), the way pthread_create does it but on a stack of
 * our own (plain read-write mmap) and without TLS: a thread body may only make system calls
 * through syscall(), whose errno write lands in the parent's TLS, which it never reads while
 * a thread runs. Joining waits for the kernel to clear the thread's id word at exit
 * (CLONE_CHILD_CLEARTID) and wake it with FUTEX_WAKE, as pthread_join does.
 */
#define THREAD_FLAGS                                                                       \
	(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | \
	 CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID)
#define THREAD_STACK (64 * 1024)

struct thread {
	char *stack;
	volatile pid_t tid;
};

static long futex(volatile void *word, int op, int value)
{
	return syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

/* Starts `body(arg)` in a thread; returns 0 or an errno value. */
static int thread_start(struct thread *t, int (*body)(void *), void *arg)
{
	if (!t->stack) {
		t->stack = mmap(NULL, THREAD_STACK, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (t->stack == MAP_FAILED) {
			t->stack = NULL;
			return errno;
		}
	}
	pid_t *tid = (pid_t *)&t->tid;
	if (clone(body, t->stack + THREAD_STACK, THREAD_FLAGS, arg, tid, NULL, tid) < 0)
		return errno;
	return 0;
}

/* Waits until the thread has exited (its id word cleared). */
static void thread_join(struct thread *t)
{
	pid_t tid;
	while ((tid = t->tid) != 0)
		futex(&t->tid, FUTEX_WAIT, tid);
}

static int nothing(void *arg)
{
	(void)arg;
	return 0;
}

static void bench_thread_create_join(void)
{
	struct thread t = {0};
	long n = iterations(2000);
	double start = now_ns();
	for (long i = 0; i < n; i++) {
		int err = thread_start(&t, nothing, NULL);
		if (err) {
			failed("thread_create_join", err);
			return;
		}
		thread_join(&t);
	}
	report("thread_create_join", start, n);
}

static void *nothing_pthread(void *arg)
{
	return arg;
}

/* The same through musl's pthreads, which map each thread's stack and guard page. */
static void bench_pthread_create_join(void)
{
	long n = iterations(1000);
	double start = now_ns();
	for (long i = 0; i < n; i++) {
		pthread_t t;
		int err = pthread_create(&t, NULL, nothing_pthread, NULL);
		if (err == 0)
			err = pthread_join(t, NULL);
		if (err) {
			failed("pthread_create_join", err);
			return;
		}
	}
	report("pthread_create_join", start, n);
}

/* The futex word: 1 while it is the partner thread's turn, 0 while it is main's. */
static atomic_int turn;
static long rounds;

static int partner(void *arg)
{
	(void)arg;
	for (long i = 0; i < rounds; i++) {
		while (atomic_load(&turn) == 0)
			futex(&turn, FUTEX_WAIT_PRIVATE, 0);
		atomic_store(&turn, 0);
		futex(&turn, FUTEX_WAKE_PRIVATE, 1);
	}
	return 0;
}

/* Two threads hand the turn back and forth; one op is a round trip (two hand-overs). */
static void bench_futex_pingpong(void)
{
	struct thread t = {0};
	rounds = iterations(20000);
	atomic_store(&turn, 0);
	int err = thread_start(&t, partner, NULL);
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
		/* The partner waits for turns that will not come: this process's exit ends it. */
		failed("futex_pingpong", err);
		return;
	}
	report("futex_pingpong", start, rounds);
	thread_join(&t);
}

/*
 * The shell and file benchmarks use busybox, which the runner puts at /boot/busybox
 * (Evergreen: a boot module) or /bin/busybox (Linux: the initramfs), and a directory of its
 * applet links made here. Both systems run the same busybox binary.
 */
static const char *busybox_path(void)
{
	static const char *paths[] = {"/boot/busybox", "/bin/busybox"};
	for (unsigned i = 0; i < sizeof paths / sizeof *paths; i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

static int applet_links(void)
{
	const char *bb = busybox_path();
	if (!bb)
		return ENOENT;
	mkdir("/tmp", 01777);
	mkdir("/tmp/bench-bin", 0755);
	const char *applets[] = {"sh", "true", "cat"};
	for (unsigned i = 0; i < 3; i++) {
		char link[64];
		snprintf(link, sizeof link, "/tmp/bench-bin/%s", applets[i]);
		if (symlink(bb, link) != 0 && errno != EEXIST)
			return errno;
	}
	return 0;
}

/* A shell loop running /bin/true (here a busybox link) N times: ns per spawned program. */
static void bench_shell_spawn_true(void)
{
	int err = applet_links();
	if (err) {
		failed("shell_spawn_true", err);
		return;
	}
	long n = iterations(1000);
	char script[256];
	snprintf(script, sizeof script,
		 "i=0; while [ $i -lt %ld ]; do /tmp/bench-bin/true; i=$((i+1)); done", n);
	char *argv[] = {"sh", "-c", script, NULL};
	char *envp[] = {"PATH=/tmp/bench-bin", NULL};
	double start = now_ns();
	int status;
	pid_t child = fork();
	if (child == 0) {
		execve("/tmp/bench-bin/sh", argv, envp);
		_exit(127);
	}
	if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		failed("shell_spawn_true", child < 0 ? errno : ECHILD);
		return;
	}
	report("shell_spawn_true", start, n);
}

/* Create, write 100 bytes to, read back and delete N small files in /tmp: ns per file. */
static void bench_small_files(void)
{
	long n = iterations(10000);
	char data[100], back[100];
	memset(data, 'x', sizeof data);
	mkdir("/tmp", 01777);
	if (mkdir("/tmp/bench-files", 0755) != 0 && errno != EEXIST) {
		failed("tmpfs_small_files", errno);
		return;
	}
	char name[64];
	double start = now_ns();
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof name, "/tmp/bench-files/f%ld", i);
		int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, data, sizeof data) != sizeof data) {
			failed("tmpfs_small_files", errno);
			return;
		}
		close(fd);
	}
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof name, "/tmp/bench-files/f%ld", i);
		int fd = open(name, O_RDONLY);
		if (fd < 0 || read(fd, back, sizeof back) != sizeof back) {
			failed("tmpfs_small_files", errno);
			return;
		}
		close(fd);
	}
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof name, "/tmp/bench-files/f%ld", i);
		if (unlink(name) != 0) {
			failed("tmpfs_small_files", errno);
			return;
		}
	}
	report("tmpfs_small_files", start, n);
	rmdir("/tmp/bench-files");
}

/* 256 MiB (scaled) written into `cat` and read back out of it: ns per MiB. */
static void bench_pipe_cat(void)
{
	int err = applet_links();
	if (err) {
		failed("pipe_cat_mib", err);
		return;
	}
	long mib = iterations(256);
	int in[2], out[2];
	if (pipe(in) != 0 || pipe(out) != 0) {
		failed("pipe_cat_mib", errno);
		return;
	}
	double start = now_ns();
	pid_t cat = fork();
	if (cat == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[0]), close(in[1]), close(out[0]), close(out[1]);
		char *argv[] = {"cat", NULL};
		char *envp[] = {NULL};
		execve("/tmp/bench-bin/cat", argv, envp);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	pid_t writer = fork();
	if (writer == 0) {
		static char chunk[65536];
		close(out[0]);
		for (long i = 0; i < mib * 16; i++)
			if (write(in[1], chunk, sizeof chunk) != sizeof chunk)
				_exit(1);
		_exit(0);
	}
	close(in[1]);
	static char sink[65536];
	long total = 0, got;
	while ((got = read(out[0], sink, sizeof sink)) > 0)
		total += got;
	close(out[0]);
	int status;
	waitpid(writer, &status, 0);
	waitpid(cat, &status, 0);
	if (total != mib << 20) {
		failed("pipe_cat_mib", EIO);
		return;
	}
	report("pipe_cat_mib", start, mib);
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

/*
 * Runs one benchmark in a child process, so that one the kernel gets wrong (a crash, a
 * corrupted address space) cannot take the others with it.
 */
static void isolated(const char *name, void (*bench)(void))
{
	int status;
	pid_t child = fork();
	if (child < 0) {
		bench();
		return;
	}
	if (child == 0) {
		bench();
		fflush(stdout);
		_exit(0);
	}
	if (waitpid(child, &status, 0) != child) {
		/* Not the benchmark's failure: its figure (if any) is already out. */
		printf("bench: wait_status failed %s (wait4 for the %s process)\n",
		       strerror(errno), name);
		fflush(stdout);
		return;
	}
	if (WIFSIGNALED(status)) {
		printf("bench: %s failed killed by signal %d (%s)\n", name, WTERMSIG(status),
		       strsignal(WTERMSIG(status)));
		fflush(stdout);
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
	/* The same loop in this process (init when it is pid 1), for comparison. */
	getppid_loop("getppid_main");
	isolated("getppid", bench_getppid);
	isolated("pipe_rtt", bench_pipe_rtt);
	isolated("page_fault", bench_page_fault);
	isolated("fork_exit_wait", bench_fork_exit_wait);
	isolated("vfork_exec_wait", bench_vfork_exec_wait);
	isolated("thread_create_join", bench_thread_create_join);
	isolated("futex_pingpong", bench_futex_pingpong);
	isolated("pthread_create_join", bench_pthread_create_join);
	isolated("shell_spawn_true", bench_shell_spawn_true);
	isolated("tmpfs_small_files", bench_small_files);
	isolated("pipe_cat_mib", bench_pipe_cat);
	printf("bench: done\n");
	fflush(stdout);
	if (getpid() == 1) {
		reboot(RB_POWER_OFF);
		failed("reboot", errno);
	}
	return 0;
}
