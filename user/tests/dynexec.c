/* execve of dynamically linked programs whose interpreter (PT_INTERP) is missing, a
 * directory, not executable, too short, not an ELF file, for another machine, or an ET_EXEC
 * program (which Linux runs as the interpreter); and an empty PT_INTERP: the errno Linux
 * gives each, or the run, compared with the host; and the auxiliary vector the program
 * itself started with. The programs are made here: an ELF header, a
 * PT_INTERP and a PT_LOAD whose code would exit with status 42. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* mov edi, 42; mov eax, 231 (exit_group); syscall */
static const unsigned char code[] = {0xbf, 42, 0, 0, 0, 0xb8, 231, 0, 0, 0, 0x0f, 0x05};

static void make_program(const char *path, const char *interp, int type) {
    unsigned char image[4096] = {0};
    Elf64_Ehdr *eh = (Elf64_Ehdr *)image;
    Elf64_Phdr *ph = (Elf64_Phdr *)(image + sizeof *eh);
    size_t interp_at = sizeof *eh + 2 * sizeof *ph, code_at = 512;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = type;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = 0x400000 + code_at;
    eh->e_phoff = sizeof *eh;
    eh->e_ehsize = sizeof *eh;
    eh->e_phentsize = sizeof *ph;
    eh->e_phnum = 2;
    ph[0].p_type = PT_INTERP;
    ph[0].p_offset = interp_at;
    ph[0].p_filesz = ph[0].p_memsz = strlen(interp) + 1;
    ph[0].p_flags = PF_R;
    ph[1].p_type = PT_LOAD;
    ph[1].p_vaddr = ph[1].p_paddr = 0x400000;
    ph[1].p_filesz = ph[1].p_memsz = sizeof image;
    ph[1].p_flags = PF_R | PF_X;
    ph[1].p_align = 4096;
    strcpy((char *)image + interp_at, interp);
    memcpy(image + code_at, code, sizeof code);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    write(fd, image, sizeof image);
    close(fd);
}

static void try_exec(const char *what, const char *interp) {
    make_program("prog", interp, ET_EXEC);
    pid_t child = fork();
    if (child == 0) {
        char *argv[] = {"prog", NULL};
        execve("./prog", argv, (char *[]){NULL});
        printf("%s: errno %d (%s)\n", what, errno, strerror(errno));
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        printf("%s: ran, status %d\n", what, WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", what, WTERMSIG(status));
}

extern char _start[];

/* What the auxiliary vector tells the program itself (the same whether it is linked
 * statically or dynamically, except AT_BASE, the interpreter's address). */
static void auxv(void) {
    printf("AT_PAGESZ %lu\n", getauxval(AT_PAGESZ));
    printf("AT_ENTRY is _start: %d\n", getauxval(AT_ENTRY) == (unsigned long)_start);
    printf("AT_BASE set: %d\n", getauxval(AT_BASE) != 0);
    Elf64_Phdr *ph = (Elf64_Phdr *)getauxval(AT_PHDR);
    int load = 0;
    for (unsigned long i = 0; ph && i < getauxval(AT_PHNUM); i++)
        load += ph[i].p_type == PT_LOAD;
    printf("AT_PHENT %lu, PT_LOAD headers at AT_PHDR: %d\n", getauxval(AT_PHENT), load > 0);
    printf("AT_HWCAP has the FPU bit: %lu\n", getauxval(AT_HWCAP) & 1);
    printf("AT_SECURE %lu, AT_RANDOM set: %d\n", getauxval(AT_SECURE), getauxval(AT_RANDOM) != 0);
}

static void put(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    write(fd, text, strlen(text));
    close(fd);
    chmod(path, mode);
}

int main(void) {
    char dir[] = "/tmp/dynexec.XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("mkdtemp");
        return 1;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    auxv();
    try_exec("missing interpreter", "/nonexistent/ld.so");
    try_exec("interpreter is a directory", "/tmp");
    put("text", "just text, long enough to hold an ELF header and more of it\n", 0755);
    try_exec("interpreter is a short text file", "text");
    put("long", "a text file long enough to hold an ELF header, and longer than that: "
                "its first bytes are no ELF magic, which is what is checked\n", 0755);
    try_exec("interpreter is a long text file", "long");
    make_program("arm", "/nonexistent/ld.so", ET_DYN);
    int fd = open("arm", O_WRONLY);
    pwrite(fd, "\xb7\x00", 2, 18); /* e_machine = EM_AARCH64 */
    close(fd);
    try_exec("interpreter for another machine", "arm");

    put("noexec", "not executable\n", 0644);
    try_exec("interpreter not executable", "noexec");
    make_program("exec-interp", "/nonexistent/ld.so", ET_EXEC);
    try_exec("interpreter is ET_EXEC", "exec-interp");
    try_exec("empty interpreter path", "");
    unlink("prog");
    unlink("text");
    unlink("long");
    unlink("arm");
    unlink("noexec");
    unlink("exec-interp");
    chdir("/");
    rmdir(dir);
    return 0;
}
