/* mmap of files compared with the host, in a fresh directory under /tmp: a mapping sees the
 * file's bytes and later write()s; MAP_PRIVATE writes are copied (the file and other mappings
 * do not see them); MAP_SHARED writes reach read() and a second mapping, and a child after
 * fork; msync and its errors; mincore; offsets; the zeros past the end of the file in its
 * last page; mmap's errors (EACCES, EBADF, ENODEV, EINVAL), and mprotect's EACCES for a
 * shared mapping of a file not open for writing. Prints only what any Linux file system
 * shows the same way. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096

static const char *result(void *p) { return p == MAP_FAILED ? strerror(errno) : "ok"; }

static const char *err(long rc) { return rc < 0 ? strerror(errno) : "ok"; }

static void pread_show(int fd, long at, int n, const char *what) {
    char buf[64] = {0};
    long got = pread(fd, buf, n, at);
    printf("%s: read %ld \"%.*s\"\n", what, got, (int)(got < 0 ? 0 : got), buf);
}

static void contents(void) {
    int fd = open("data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    char block[3 * PAGE];
    for (int i = 0; i < 3 * PAGE; i++)
        block[i] = 'a' + (i / PAGE);
    write(fd, block, sizeof block);
    write(fd, "tail", 4);
    char *p = mmap(NULL, 4 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    printf("map private read-only: %s\n", result(p));
    if (p == MAP_FAILED)
        return;
    printf("bytes: %c %c %c %.4s, past the end: %d %d\n", p[0], p[PAGE], p[2 * PAGE + 5],
           p + 3 * PAGE, p[3 * PAGE + 4], p[4 * PAGE - 1]);
    pwrite(fd, "XY", 2, PAGE + 1);
    printf("after pwrite: %.4s\n", p + PAGE);
    char *q = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 2 * PAGE);
    printf("map at offset 2 pages: %s, %c\n", result(q), q == MAP_FAILED ? '-' : q[0]);
    unsigned char vec[4] = {9, 9, 9, 9};
    printf("mincore of the file mapping: %s", err(mincore(p, 4 * PAGE, vec)));
    printf(", %d %d %d %d\n", vec[0], vec[1], vec[2], vec[3]);
    char *anon = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    anon[PAGE] = 1;
    printf("mincore of anonymous memory, second page touched: %s", err(mincore(anon, 2 * PAGE, vec)));
    printf(", %d %d\n", vec[0], vec[1]);
    munmap(anon, 2 * PAGE);
    printf("mincore unmapped: %s\n", err(mincore(anon, PAGE, vec)));
    printf("mincore unaligned: %s\n", err(mincore(p + 1, PAGE, vec)));
    munmap(q, PAGE);
    munmap(p, 4 * PAGE);
    close(fd);
}

static void private_copy(void) {
    int fd = open("data", O_RDWR);
    char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *other = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    printf("map private writable: %s\n", result(p));
    if (p == MAP_FAILED || other == MAP_FAILED)
        return;
    memcpy(p, "private", 7);
    printf("private mapping: %.7s, other mapping: %.7s\n", p, other);
    pread_show(fd, 0, 7, "file after a private write");
    pwrite(fd, "written", 7, 0);
    printf("after pwrite: private %.7s, other %.7s\n", p, other);
    munmap(p, PAGE);
    munmap(other, PAGE);
    close(fd);
}

static void shared_write(void) {
    int fd = open("data", O_RDWR);
    char *p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *q = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
    printf("map shared writable: %s\n", result(p));
    if (p == MAP_FAILED || q == MAP_FAILED)
        return;
    memcpy(p + 10, "shared", 6);
    memcpy(p + PAGE + 100, "second", 6);
    pread_show(fd, 10, 6, "read after a shared write");
    pread_show(fd, PAGE + 100, 6, "read of page 2");
    printf("other shared mapping: %.6s\n", q + 10);
    printf("msync MS_SYNC: %s\n", err(msync(p, 2 * PAGE, MS_SYNC)));
    printf("msync MS_ASYNC: %s\n", err(msync(p, PAGE, MS_ASYNC)));
    printf("msync unaligned: %s\n", err(msync(p + 1, PAGE, MS_SYNC)));
    printf("msync both flags: %s\n", err(msync(p, PAGE, MS_SYNC | MS_ASYNC)));
    pid_t child = fork();
    if (child == 0) {
        memcpy(p + 20, "child", 5);
        _exit(0);
    }
    waitpid(child, NULL, 0);
    pread_show(fd, 20, 5, "read after the child's write");
    munmap(p, 2 * PAGE);
    printf("msync unmapped: %s\n", err(msync(p, PAGE, MS_SYNC)));
    /* The file outlives its name and descriptor while mapped. */
    close(fd);
    unlink("data");
    printf("mapping after unlink and close: %.6s\n", q + 10);
    munmap(q, 2 * PAGE);
}

static void errors(void) {
    int fd = open("ro", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(fd, "read only", 9);
    close(fd);
    fd = open("ro", O_RDONLY);
    void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("shared writable of O_RDONLY: %s\n", result(p));
    p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
    printf("shared read-only of O_RDONLY: %s\n", result(p));
    if (p != MAP_FAILED) {
        printf("mprotect it writable: %s\n", err(mprotect(p, PAGE, PROT_READ | PROT_WRITE)));
        printf("mprotect it executable: %s\n", err(mprotect(p, PAGE, PROT_READ | PROT_EXEC)));
        munmap(p, PAGE);
    }
    p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    printf("private writable of O_RDONLY: %s\n", result(p));
    if (p != MAP_FAILED) {
        printf("mprotect that writable: %s\n", err(mprotect(p, PAGE, PROT_READ | PROT_WRITE)));
        ((char *)p)[0] = 'R';
        munmap(p, PAGE);
    }
    p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 1);
    printf("unaligned offset: %s\n", result(p));
    p = mmap(NULL, 0, PROT_READ, MAP_SHARED, fd, 0);
    printf("zero length: %s\n", result(p));
    p = mmap(NULL, PAGE, PROT_READ, 0, fd, 0);
    printf("neither private nor shared: %s\n", result(p));
    close(fd);
    int wo = open("ro", O_WRONLY);
    p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, wo, 0);
    printf("O_WRONLY: %s\n", result(p));
    close(wo);
    p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, 999, 0);
    printf("bad fd: %s\n", result(p));
    p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, -1, 0);
    printf("fd -1: %s\n", result(p));
    int pipefd[2];
    pipe(pipefd);
    p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, pipefd[0], 0);
    printf("pipe: %s\n", result(p));
    close(pipefd[0]);
    close(pipefd[1]);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, dir, 0);
    printf("directory: %s\n", result(p));
    close(dir);
    int zero = open("/dev/zero", O_RDWR);
    char *z = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, zero, 0);
    printf("/dev/zero: %s, %d\n", result(z), z == MAP_FAILED ? -1 : z[100]);
    close(zero);
}

int main(void) {
    char dir[] = "/tmp/mmap-file.XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("mkdtemp");
        return 1;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    contents();
    private_copy();
    shared_write();
    errors();
    unlink("ro");
    chdir("/");
    rmdir(dir);
    return 0;
}
