/* Block device files, inside Evergreen (guest only: the host has no such disk): the scratch
 * disk's partition 2 (given as argv[1], /dev/vdb2) is written at random offsets and lengths
 * (unaligned too), made durable with fsync, read back and compared with a copy kept in
 * memory; then 8 threads each write and check their own stripe at once. The size ioctls
 * must agree with lseek. Last it prints the FNV-1a hash of what the partition must now
 * hold, which the runner compares with the disk image on the host after power-off.
 * Prints "block: ok" lines; "FAIL: ..." and exit status 1 on any mismatch. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define THREADS 8
/* <linux/fs.h>'s numbers (musl's headers do not carry the kernel's). */
#define BLKSSZGET 0x1268
#define BLKGETSIZE64 0x80081272

static uint64_t state = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static int fd;
static unsigned char *shadow;
static uint64_t size;

static void fail(const char *what) {
    printf("FAIL: %s (%s)\n", what, strerror(errno));
    exit(1);
}

struct stripe {
    int index;
    int ok;
};

static void *writer(void *arg) {
    struct stripe *s = arg;
    uint64_t len = size / THREADS, start = len * s->index;
    unsigned char block[4096], back[4096];
    s->ok = 1;
    for (uint64_t at = start; at + sizeof block <= start + len; at += sizeof block) {
        for (size_t i = 0; i < sizeof block; i++)
            block[i] = (unsigned char)(at / 4096 + i * 7 + s->index);
        if (pwrite(fd, block, sizeof block, at) != sizeof block)
            s->ok = 0;
        memcpy(shadow + at, block, sizeof block);
    }
    for (uint64_t at = start; at + sizeof back <= start + len; at += sizeof back)
        if (pread(fd, back, sizeof back, at) != sizeof back || memcmp(back, shadow + at, sizeof back))
            s->ok = 0;
    return NULL;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/dev/vdb2";
    fd = open(path, O_RDWR);
    if (fd < 0)
        fail(path);
    uint64_t bytes64 = 0;
    int sector = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes64) < 0 || ioctl(fd, BLKSSZGET, &sector) < 0)
        fail("size ioctls");
    off_t end = lseek(fd, 0, SEEK_END);
    if ((uint64_t)end != bytes64 || sector != 512)
        fail("lseek(SEEK_END) and BLKGETSIZE64 disagree");
    size = bytes64;
    printf("block: %s is %llu bytes, sectors of %d\n", path, (unsigned long long)size, sector);
    shadow = calloc(1, size);
    if (pread(fd, shadow, size, 0) != (ssize_t)size)
        fail("reading the partition");

    /* Random writes, some unaligned, some crossing sector boundaries. */
    unsigned char *buf = malloc(65536);
    for (int i = 0; i < 400; i++) {
        uint64_t len = 1 + next() % 65536;
        uint64_t at = next() % (size - len);
        if (i % 4 == 0)
            at &= ~511ull;
        for (uint64_t j = 0; j < len; j++)
            buf[j] = (unsigned char)next();
        if (pwrite(fd, buf, len, at) != (ssize_t)len)
            fail("pwrite");
        memcpy(shadow + at, buf, len);
    }
    /* Writes through the file offset too. */
    lseek(fd, 12345, SEEK_SET);
    if (write(fd, "offset write", 12) != 12)
        fail("write");
    memcpy(shadow + 12345, "offset write", 12);
    if (fsync(fd) < 0)
        fail("fsync");
    unsigned char *back = malloc(size);
    if (pread(fd, back, size, 0) != (ssize_t)size || memcmp(back, shadow, size))
        fail("read-back differs from what was written");
    printf("block: ok: 401 random writes read back the same after fsync\n");

    /* The end: a write past it is refused, one across it is cut short. */
    errno = 0;
    if (pwrite(fd, "x", 1, size) != -1 || errno != ENOSPC)
        fail("a write at the end is not ENOSPC");
    if (pwrite(fd, "ab", 2, size - 1) != 1)
        fail("a write across the end is not cut short");
    shadow[size - 1] = 'a';
    if (pread(fd, buf, 16, size) != 0)
        fail("a read at the end does not return 0");
    printf("block: ok: the end of the partition\n");

    pthread_t threads[THREADS];
    struct stripe stripes[THREADS];
    for (int t = 0; t < THREADS; t++) {
        stripes[t].index = t;
        pthread_create(&threads[t], NULL, writer, &stripes[t]);
    }
    int ok = 1;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        ok &= stripes[t].ok;
    }
    if (!ok)
        fail("a thread read back something else");
    if (fsync(fd) < 0)
        fail("fsync");
    if (pread(fd, back, size, 0) != (ssize_t)size || memcmp(back, shadow, size))
        fail("read-back after the threads differs");
    printf("block: ok: %d threads wrote and read their stripes at once\n", THREADS);

    uint64_t hash = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < size; i++) {
        hash ^= shadow[i];
        hash *= 0x100000001b3ull;
    }
    printf("block: fnv1a %016llx\n", (unsigned long long)hash);
    close(fd);
    printf("block: all checks passed\n");
    return 0;
}
