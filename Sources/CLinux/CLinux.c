#ifndef _GNU_SOURCE
#error "CLinux must be built with _GNU_SOURCE"
#endif
#include "CLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <linux/mman.h>
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

int clinux_pin_thread_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

int clinux_allowed_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -errno;
    return CPU_COUNT(&set);
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
