/* File system semantics compared with the host, in a fresh directory under /tmp: rename and
 * renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE) with their errors, hard links and their
 * counts, symbolic links (dangling, loops, O_NOFOLLOW, O_CREAT|O_EXCL through one), open's
 * flags and errors, directories (rmdir of a non-empty one, unlink of a directory), names and
 * paths that are too long, O_APPEND from two processes, an offset shared across fork,
 * getdents64 of a large directory with unlinks while it is read, ftruncate, fallocate, chmod
 * and utimensat. Prints only what is the same on any Linux file system. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *err(long rc) { return rc < 0 ? strerror(errno) : "ok"; }

static void put(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, text, strlen(text));
    close(fd);
}

static const char *get(const char *path) {
    static char buf[256];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return strerror(errno);
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n < 0 ? 0 : n] = 0;
    return buf;
}

static long rename2(const char *a, const char *b, unsigned flags) {
    return syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, flags);
}

static void renames(void) {
    put("a", "A");
    put("b", "B");
    mkdir("d", 0755);
    mkdir("e", 0755);
    mkdir("full", 0755);
    put("full/x", "x");
    printf("rename file over file: %s", err(rename("a", "b")));
    printf(", b=%s\n", get("b"));
    printf("a after: %s\n", get("a"));
    printf("rename file over dir: %s\n", err(rename("b", "d")));
    printf("rename dir over file: %s\n", err(rename("d", "b")));
    printf("rename dir over non-empty dir: %s\n", err(rename("d", "full")));
    printf("rename dir over empty dir: %s\n", err(rename("d", "e")));
    printf("d after: %s\n", err(access("d", F_OK)));
    printf("rename dir into itself: %s\n", err(rename("e", "e/sub")));
    printf("rename to itself: %s\n", err(rename("b", "b")));
    printf("rename missing: %s\n", err(rename("nothing", "x")));
    printf("rename file/: %s\n", err(rename("b/", "c")));
    put("c", "C");
    printf("noreplace over existing: %s\n", err(rename2("b", "c", 1)));
    printf("noreplace to new: %s\n", err(rename2("b", "n", 1)));
    printf("exchange: %s", err(rename2("n", "c", 2)));
    printf(", n=%s", get("n"));
    printf(" c=%s\n", get("c"));
    printf("exchange with missing: %s\n", err(rename2("n", "missing", 2)));
    printf("exchange and noreplace: %s\n", err(rename2("n", "c", 3)));
    printf("exchange file and dir: %s\n", err(rename2("n", "e", 2)));
    struct stat st;
    printf("e is now: %s\n", stat("e", &st) == 0 && S_ISREG(st.st_mode) ? "file" : "dir");
}

static void links(void) {
    put("l1", "linked");
    printf("link: %s\n", err(link("l1", "l2")));
    struct stat st;
    stat("l1", &st);
    printf("nlink after link: %lu\n", (unsigned long)st.st_nlink);
    printf("link over existing: %s\n", err(link("l1", "l2")));
    printf("link a directory: %s\n", err(link("full", "full2")));
    printf("link missing: %s\n", err(link("nothing", "l3")));
    unlink("l1");
    stat("l2", &st);
    printf("nlink after unlink: %lu", (unsigned long)st.st_nlink);
    printf(", l2=%s\n", get("l2"));
    int fd = open("l2", O_RDONLY);
    unlink("l2");
    fstat(fd, &st);
    char buf[16] = {0};
    long n = read(fd, buf, sizeof buf - 1);
    printf("open after last unlink: nlink %lu, read %ld '%s'\n", (unsigned long)st.st_nlink, n,
           buf);
    close(fd);
}

static void symlinks(void) {
    printf("symlink dangling: %s\n", err(symlink("target", "s1")));
    printf("open through dangling: %s\n", err(open("s1", O_RDONLY)));
    int fd = open("s1", O_WRONLY | O_CREAT | O_EXCL, 0644);
    printf("O_CREAT|O_EXCL through dangling: %s\n", err(fd));
    fd = open("s1", O_WRONLY | O_CREAT, 0644);
    printf("O_CREAT through dangling: %s", err(fd));
    printf(", target exists: %s\n", err(access("target", F_OK)));
    close(fd);
    printf("O_NOFOLLOW: %s\n", err(open("s1", O_RDONLY | O_NOFOLLOW)));
    printf("O_NOFOLLOW|O_PATH: %s\n", err(open("s1", O_RDONLY | O_NOFOLLOW | O_PATH)));
    symlink("loop2", "loop1");
    symlink("loop1", "loop2");
    printf("loop: %s\n", err(open("loop1", O_RDONLY)));
    char buf[64] = {0};
    printf("readlink: %ld '%s'\n", (long)readlink("s1", buf, sizeof buf), buf);
    printf("readlink of a file: %s\n", err(readlink("c", buf, sizeof buf)));
    struct stat st;
    lstat("s1", &st);
    printf("lstat: link %d size %ld\n", S_ISLNK(st.st_mode), (long)st.st_size);
    symlink("full", "sdir");
    printf("sdir/x: %s\n", get("sdir/x"));
    printf("unlink sdir/: %s\n", err(unlink("sdir/")));
    printf("rmdir sdir: %s\n", err(rmdir("sdir")));
    printf("unlink sdir: %s\n", err(unlink("sdir")));
}

static void opens(void) {
    printf("O_DIRECTORY on a file: %s\n", err(open("c", O_RDONLY | O_DIRECTORY)));
    printf("O_CREAT|O_EXCL existing: %s\n", err(open("c", O_RDWR | O_CREAT | O_EXCL, 0644)));
    int fd = open("c", O_RDWR | O_TRUNC);
    struct stat st;
    fstat(fd, &st);
    printf("O_TRUNC: size %ld\n", (long)st.st_size);
    close(fd);
    printf("open a directory to write: %s\n", err(open("full", O_WRONLY)));
    printf("open missing: %s\n", err(open("nothing", O_RDONLY)));
    printf("create in missing dir: %s\n", err(open("no/such", O_RDWR | O_CREAT, 0644)));
    printf("file as a directory: %s\n", err(open("c/x", O_RDONLY)));
    printf("mkdir existing: %s\n", err(mkdir("full", 0755)));
    printf("rmdir non-empty: %s\n", err(rmdir("full")));
    printf("unlink a directory: %s\n", err(unlink("full")));
    printf("rmdir a file: %s\n", err(rmdir("c")));
    printf("rmdir .: %s\n", err(rmdir(".")));
    char name[300];
    memset(name, 'n', 256);
    name[256] = 0;
    printf("256-byte name: %s\n", err(open(name, O_RDWR | O_CREAT, 0644)));
    char *path = malloc(5000);
    memset(path, 'p', 4999);
    for (int i = 100; i < 4999; i += 100)
        path[i] = '/';
    path[4999] = 0;
    printf("5000-byte path: %s\n", err(open(path, O_RDONLY)));
    free(path);
    printf("empty path: %s\n", err(open("", O_RDONLY)));
}

static void appends(void) {
    int fd = open("log", O_WRONLY | O_CREAT | O_APPEND, 0644);
    pid_t child = fork();
    if (child == 0) {
        int mine = open("log", O_WRONLY | O_APPEND);
        for (int i = 0; i < 200; i++)
            write(mine, "child line\n", 11);
        _exit(0);
    }
    for (int i = 0; i < 200; i++)
        write(fd, "parent line\n", 12);
    waitpid(child, NULL, 0);
    close(fd);
    struct stat st;
    stat("log", &st);
    printf("O_APPEND from two processes: size %ld (expect %d)\n", (long)st.st_size,
           200 * 11 + 200 * 12);
    FILE *f = fopen("log", "r");
    char line[64];
    int parent = 0, kid = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strcmp(line, "parent line\n"))
            parent++;
        else if (!strcmp(line, "child line\n"))
            kid++;
        else
            bad++;
    }
    fclose(f);
    printf("lines: parent %d child %d torn %d\n", parent, kid, bad);

    fd = open("shared", O_RDWR | O_CREAT | O_TRUNC, 0644);
    child = fork();
    if (child == 0) {
        write(fd, "from the child ", 15);
        _exit(0);
    }
    waitpid(child, NULL, 0);
    printf("offset after the child wrote: %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    write(fd, "then the parent", 15);
    close(fd);
    printf("shared: %s\n", get("shared"));
}

static void big_directory(void) {
    mkdir("big", 0755);
    char name[300];
    for (int i = 0; i < 600; i++) {
        snprintf(name, sizeof name, "big/f%03d", i);
        put(name, "");
    }
    int fd = open("big", O_RDONLY | O_DIRECTORY);
    static int seen[600];
    char buf[1024];
    long n;
    int reads = 0, removed = 0;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long at = 0; at < n;) {
            struct dirent64 *d = (void *)(buf + at);
            int i;
            if (sscanf(d->d_name, "f%d", &i) == 1)
                seen[i]++;
            at += d->d_reclen;
        }
        /* After each read, remove the files with an odd number not seen yet. */
        if (reads++ < 5) {
            for (int i = 1; i < 600; i += 2) {
                snprintf(name, sizeof name, "big/f%03d", i);
                if (!seen[i] && unlink(name) == 0)
                    removed++;
            }
        }
    }
    close(fd);
    int twice = 0, missing = 0;
    for (int i = 0; i < 600; i++) {
        char path[64];
        snprintf(path, sizeof path, "big/f%03d", i);
        int exists = access(path, F_OK) == 0;
        if (seen[i] > 1)
            twice++;
        if (exists && !seen[i])
            missing++;
    }
    printf("getdents64 with unlinks: duplicates %d, survivors not seen %d, removed some %d\n",
           twice, missing, removed > 0);
    /* As rm -rf does: unlink every name as soon as it is read; nothing may be skipped. */
    int left = 0;
    for (int i = 0; i < 600; i++) {
        snprintf(name, sizeof name, "big/f%03d", i);
        left += access(name, F_OK) == 0;
    }
    fd = open("big", O_RDONLY | O_DIRECTORY);
    int deleted = 0;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long at = 0; at < n;) {
            struct dirent64 *d = (void *)(buf + at);
            if (d->d_name[0] != '.') {
                snprintf(name, sizeof name, "big/%s", d->d_name);
                deleted += unlink(name) == 0;
            }
            at += d->d_reclen;
        }
    }
    close(fd);
    printf("delete while reading: %s, rmdir %s\n", deleted == left ? "all deleted" : "some skipped",
           err(rmdir("big")));
}

static void metadata(void) {
    int fd = open("meta", O_RDWR | O_CREAT | O_TRUNC, 0600);
    write(fd, "abc", 3);
    ftruncate(fd, 10);
    char buf[16] = {1};
    pread(fd, buf, 16, 0);
    printf("ftruncate grow: %ld bytes, byte 5 = %d\n", (long)lseek(fd, 0, SEEK_END), buf[5]);
    ftruncate(fd, 2);
    printf("ftruncate shrink: %ld\n", (long)lseek(fd, 0, SEEK_END));
    printf("ftruncate negative: %s\n", err(ftruncate(fd, -1)));
    long rc = fallocate(fd, 0, 0, 8192);
    printf("fallocate: %s", err(rc));
    struct stat st;
    fstat(fd, &st);
    printf(", size %ld\n", (long)st.st_size);
    rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 100000);
    printf("fallocate keep size: %s", err(rc));
    fstat(fd, &st);
    printf(", size %ld\n", (long)st.st_size);
    fchmod(fd, 0751);
    fstat(fd, &st);
    printf("fchmod: %o\n", st.st_mode & 07777);
    chmod("meta", 04755);
    stat("meta", &st);
    printf("chmod: %o\n", st.st_mode & 07777);
    struct timespec times[2] = {{1000000000, 5}, {1234567890, 123456789}};
    rc = utimensat(AT_FDCWD, "meta", times, 0);
    printf("utimensat: %s", err(rc));
    stat("meta", &st);
    printf(", mtime %ld.%09ld\n", (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    printf("fsync: %s\n", err(fsync(fd)));
    printf("chown root: %s\n", err(chown("meta", 0, 0)));
    close(fd);
    printf("fstat closed: %s\n", err(fstat(fd, &st)));
}

/* Removes the tree at `path` (what the test made), so nothing it wrote stays behind. */
static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Devices: /dev/full and /dev/zero, and /dev/tty for a process with no controlling
 * terminal (a new session's leader). */
static void devices(void) {
    int fd = open("/dev/full", O_RDWR);
    char buf[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    long rc = write(fd, "x", 1);
    printf("write /dev/full: %s\n", err(rc));
    rc = read(fd, buf, sizeof buf);
    printf("read /dev/full: %ld bytes, first %d last %d\n", rc, buf[0], buf[7]);
    close(fd);
    fd = open("/dev/zero", O_RDONLY);
    buf[0] = 1;
    rc = read(fd, buf, 4);
    printf("read /dev/zero: %ld bytes, first %d\n", rc, buf[0]);
    close(fd);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        setsid();
        printf("open /dev/tty without a terminal: %s\n", err(open("/dev/tty", O_RDWR)));
        fflush(stdout);
        _exit(0);
    }
    waitpid(child, NULL, 0);
}

int main(void) {
    char dir[] = "/tmp/vfs-XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("vfs: a directory under /tmp");
        return 1;
    }
    renames();
    links();
    symlinks();
    opens();
    appends();
    big_directory();
    metadata();
    devices();
    chdir("/");
    remove_tree(dir);
    printf("cleaned up: %s\n", access(dir, F_OK) == 0 ? "no" : "yes");
    return 0;
}
