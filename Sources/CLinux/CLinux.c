#ifndef _GNU_SOURCE
#error "CLinux must be built with _GNU_SOURCE"
#endif
#include "CLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <linux/mman.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int clinux_perf_event_open(struct perf_event_attr *attr, pid_t pid, int cpu, int group_fd, unsigned long flags) {
    return (int)syscall(SYS_perf_event_open, attr, pid, cpu, group_fd, flags);
}

static unsigned long group_flag(int whole_group) { return whole_group ? PERF_IOC_FLAG_GROUP : 0; }

int clinux_perf_enable(int fd, int whole_group) { return ioctl(fd, PERF_EVENT_IOC_ENABLE, group_flag(whole_group)); }
int clinux_perf_disable(int fd, int whole_group) { return ioctl(fd, PERF_EVENT_IOC_DISABLE, group_flag(whole_group)); }
int clinux_perf_reset(int fd, int whole_group) { return ioctl(fd, PERF_EVENT_IOC_RESET, group_flag(whole_group)); }
int clinux_perf_id(int fd, uint64_t *id) { return ioctl(fd, PERF_EVENT_IOC_ID, id); }

pid_t clinux_gettid(void) { return (pid_t)syscall(SYS_gettid); }

static _Thread_local int current_job;
void clinux_set_job(int job) { current_job = job; }
int clinux_job(void) { return current_job; }

int clinux_pin_thread_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

int clinux_pin_thread_to_cpus(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return -EINVAL;
        CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

int clinux_allowed_cpus(int *out, int max) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -errno;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++) {
        if (CPU_ISSET(cpu, &set)) out[n++] = cpu;
    }
    return n;
}

int clinux_allowed_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -errno;
    return CPU_COUNT(&set);
}

int clinux_current_cpu(void) {
    int cpu = sched_getcpu();
    return cpu < 0 ? 0 : cpu;
}

int clinux_map_huge_2mb(void) {
#ifdef MAP_HUGE_2MB
    return MAP_HUGE_2MB;
#else
    return 21 << 26;
#endif
}

int clinux_madv_populate_write(void) {
#ifdef MADV_POPULATE_WRITE
    return MADV_POPULATE_WRITE;
#else
    return 23;
#endif
}

int clinux_madv_collapse(void) {
#ifdef MADV_COLLAPSE
    return MADV_COLLAPSE;
#else
    return 25;
#endif
}

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

int clinux_name_anon_mapping(void *addr, size_t len, const char *name) {
    return prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)addr, (unsigned long)len, (unsigned long)name) == 0 ? 0 : -errno;
}

struct clinux_dmirror_cmd_check { char size_matches[sizeof(struct clinux_dmirror_cmd) == 40 ? 1 : -1]; };

int clinux_dmirror_ioctl(int fd, unsigned int nr, struct clinux_dmirror_cmd *cmd) {
    return ioctl(fd, _IOWR('H', nr, struct clinux_dmirror_cmd), cmd) == 0 ? 0 : -errno;
}

long clinux_vmsplice(int pipe_fd, void *addr, size_t len) {
    struct iovec iov = { .iov_base = addr, .iov_len = len };
    ssize_t n = vmsplice(pipe_fd, &iov, 1, 0);
    return n >= 0 ? (long)n : -errno;
}

int clinux_set_pipe_size(int fd, int bytes) {
    int n = fcntl(fd, F_SETPIPE_SZ, bytes);
    return n >= 0 ? n : -errno;
}

int clinux_madv_pageout(void) {
#ifdef MADV_PAGEOUT
    return MADV_PAGEOUT;
#else
    return 21;
#endif
}

// The child's whole life: pause(2) forever by a raw system call (no libc, no TLS, no stack canary:
// the child has no heap, data or thread-local memory of its own).
__attribute__((no_stack_protector, noinline)) static int clinux_pause_forever(void *arg) {
    (void)arg;
    for (;;) __asm__ volatile("syscall" : : "a"(SYS_pause) : "rcx", "r11", "memory");
    return 0;
}

// The private writable mappings of this process other than [keep, keep + len) and the child's stack.
static int clinux_set_fork(void *keep, size_t len, void *stack, size_t stack_len, int advice) {
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps) return -errno;
    char line[512];
    uintptr_t k0 = (uintptr_t)keep, k1 = k0 + len, s0 = (uintptr_t)stack, s1 = s0 + stack_len;
    // Collect first: madvise changes the maps being read.
    static uintptr_t ranges[4096][2];
    int n = 0;
    while (n < 4096 && fgets(line, sizeof line, maps)) {
        unsigned long a, b;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) != 3) continue;
        if (perms[1] != 'w' || perms[3] != 'p') continue;
        if (b <= k0 || a >= k1) {
            if (!(b <= s0 || a >= s1)) continue;
            ranges[n][0] = a;
            ranges[n][1] = b;
            n++;
        }
    }
    fclose(maps);
    for (int i = 0; i < n; i++) madvise((void *)ranges[i][0], ranges[i][1] - ranges[i][0], advice);
    return 0;
}

int clinux_fork_sharing_only(void *keep, size_t keep_len) {
    size_t stack_len = 64 << 10;
    void *stack = mmap(NULL, stack_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) return -errno;
    int r = clinux_set_fork(keep, keep_len, stack, stack_len, MADV_DONTFORK);
    if (r < 0) {
        munmap(stack, stack_len);
        return r;
    }
    int pid = clone(clinux_pause_forever, (char *)stack + stack_len, SIGCHLD, NULL);
    int e = errno;
    clinux_set_fork(keep, keep_len, stack, stack_len, MADV_DOFORK);
    munmap(stack, stack_len);
    return pid >= 0 ? pid : -e;
}

int clinux_membarrier(int cmd, unsigned int flags) {
    long r = syscall(SYS_membarrier, cmd, flags, 0);
    return r < 0 ? -errno : (int)r;
}
int clinux_membarrier_cmd_query(void) { return MEMBARRIER_CMD_QUERY; }
int clinux_membarrier_cmd_private_expedited(void) { return MEMBARRIER_CMD_PRIVATE_EXPEDITED; }
int clinux_membarrier_cmd_register_private_expedited(void) { return MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED; }
