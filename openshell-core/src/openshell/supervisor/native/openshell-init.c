/* openshell-init: pid 1 of a sandbox's PID namespace, as a small program.
 *
 * It does exactly what sandbox_ns.INIT_CODE (the Python init) does, in ~100 KiB of
 * memory instead of a ~4 MiB interpreter (one per sandbox): see that code's comments
 * for why each step is there. Usage (started by sandbox_ns.SandboxNamespaces.start):
 *
 *     openshell-init KEEP_FD READY_FD [CGROUP_PROCS_FILE...]
 *
 * 1. Title: the argv area becomes "openshell-init" (the last byte not NUL, as
 *    setproctitle does) and comm "openshell-init": /proc/1/cmdline, readable by every
 *    sandbox process, names no host path.
 * 2. Joins each cgroup.procs file, then makes its cgroup namespace (their root).
 * 3. A mount namespace of its own whose root is an empty read-only tmpfs
 *    (pivot_root, old root detached): /proc/1/mountinfo lists no host mount.
 * 4. Writes "1" on READY_FD; exiting without it means it failed (exit status 2-7).
 * 5. Reaps every child; exits when KEEP_FD is readable (EOF: the supervisor is gone).
 *
 * SIGCHLD is blocked and read from a signalfd. Every other signal keeps its default
 * disposition, which the kernel drops for a namespace's init when it comes from
 * inside the namespace: a sandbox process cannot stop it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define TITLE "openshell-init"

static int parse_fd(const char *s) {
    if (*s < '0' || *s > '9')
        return -1; /* digits only: no sign, no space */
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > INT_MAX)
        return -1;
    return (int)v;
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void reap(void) {
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    int keep = parse_fd(argv[1]), ready = parse_fd(argv[2]);
    if (keep < 0 || ready < 0 || keep == ready)
        return 2;

    /* Copy the cgroup paths out of the argv area before it is overwritten. */
    int ngroups = argc - 3;
    char **procs = calloc((size_t)(ngroups > 0 ? ngroups : 1), sizeof(char *));
    if (procs == NULL)
        return 2;
    for (int i = 0; i < ngroups; i++) {
        procs[i] = strdup(argv[3 + i]);
        if (procs[i] == NULL)
            return 2;
    }

    /* 1. The argv strings are contiguous: argv[0] to the NUL of the last one. */
    char *area = argv[0];
    size_t size = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) + 1 - area);
    if (size >= 2) {
        size_t n = strlen(TITLE) < size - 1 ? strlen(TITLE) : size - 1;
        memset(area, '.', size);
        memcpy(area, TITLE, n);
        area[n] = '\0';
    }
    prctl(PR_SET_NAME, TITLE, 0, 0, 0);

    /* 2. */
    for (int i = 0; i < ngroups; i++) {
        int fd = open(procs[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return 2;
        if (write_all(fd, "0", 1) != 0) {
            close(fd);
            return 2;
        }
        if (close(fd) != 0)
            return 2;
        free(procs[i]);
    }
    free(procs);
    if (unshare(CLONE_NEWCGROUP) != 0)
        return 3;

    /* 3. */
    if (unshare(CLONE_NEWNS) != 0)
        return 4;
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return 5;
    if (mount(TITLE, "/dev", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555") != 0)
        return 6;
    if (chdir("/dev") != 0 || syscall(SYS_pivot_root, ".", ".") != 0 || umount2(".", MNT_DETACH) != 0)
        return 7;
    if (chdir("/") != 0)
        return 7;

    /* 5's signal set-up before 4: no SIGCHLD may be missed once children exist. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, NULL) != 0)
        return 2;
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        return 2;

    /* 4. */
    if (write_all(ready, "1", 1) != 0)
        return 2;
    close(ready);

    /* 5. */
    struct pollfd fds[2] = {{.fd = keep, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    for (;;) {
        reap();
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        if (fds[0].revents != 0)
            _exit(0);
        struct signalfd_siginfo info[8];
        while (read(sfd, info, sizeof(info)) > 0)
            ;
    }
}
