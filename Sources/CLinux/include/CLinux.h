// CLinux: what Swift cannot call on Linux. Each wrapper is prefixed `clinux_`.
// Variadic calls (syscall, prctl), function-like macros (_IO ioctls) and _GNU_SOURCE
// declarations that the Glibc module hides.
#ifndef CLINUX_H
#define CLINUX_H

#include <linux/perf_event.h>
#include <stdint.h>
#include <sys/types.h>

// ---- perf_event_open(2) ----
int clinux_perf_event_open(struct perf_event_attr *attr, pid_t pid, int cpu, int group_fd, unsigned long flags);
int clinux_perf_enable(int fd, int whole_group);   // PERF_EVENT_IOC_ENABLE [| PERF_IOC_FLAG_GROUP]
int clinux_perf_disable(int fd, int whole_group);  // PERF_EVENT_IOC_DISABLE
int clinux_perf_reset(int fd, int whole_group);    // PERF_EVENT_IOC_RESET
int clinux_perf_id(int fd, uint64_t *id);          // PERF_EVENT_IOC_ID

// ---- threads and CPUs ----
pid_t clinux_gettid(void);
/// The harness's op-thread number of the calling thread (thread-local): 1 … N for the jobs of a run
/// with several, 0 for any other thread.
void clinux_set_job(int job);
int clinux_job(void);
/// Pins the calling thread to one CPU. Returns 0 or -errno.
int clinux_pin_thread_to_cpu(int cpu);
/// Pins the calling thread to the `count` CPUs of `cpus` (sched_setaffinity). Returns 0 or -errno.
int clinux_pin_thread_to_cpus(const int *cpus, int count);
/// The CPUs the calling thread may run on (sched_getaffinity), at most `max` of them into `out`:
/// their number, or -errno.
int clinux_allowed_cpus(int *out, int max);
/// Number of CPUs the calling thread may run on (sched_getaffinity). -errno on failure.
int clinux_allowed_cpu_count(void);
/// The CPU the calling thread runs on now (sched_getcpu; glibc reads it from rseq or the vDSO), or 0
/// when it cannot be told.
int clinux_current_cpu(void);

// ---- memory ----
/// MAP_HUGE_2MB from <linux/mman.h> (21 << MAP_HUGE_SHIFT).
int clinux_map_huge_2mb(void);
/// MADV_POPULATE_WRITE (Linux 5.14): populate writable, returning an error instead of SIGBUS.
int clinux_madv_populate_write(void);
/// MADV_COLLAPSE (Linux 6.1), missing from Debian 12's headers.
int clinux_madv_collapse(void);
/// Names an anonymous mapping (prctl PR_SET_VMA_ANON_NAME, Linux 5.17). VMAs with different names
/// never merge, so /proc/self/smaps reports one Region per entry. Returns 0 or -errno.
int clinux_name_anon_mapping(void *addr, size_t len, const char *name);

// ---- TLB shootdowns ----
/// membarrier(2): `cmd` and `flags` as the syscall takes them. Returns its result, or -errno.
int clinux_membarrier(int cmd, unsigned int flags);
/// MEMBARRIER_CMD_QUERY, MEMBARRIER_CMD_PRIVATE_EXPEDITED and its registration from <linux/membarrier.h>.
int clinux_membarrier_cmd_query(void);
int clinux_membarrier_cmd_private_expedited(void);
int clinux_membarrier_cmd_register_private_expedited(void);

// ---- caches ----
/// The kernel's prefetchw(): asks for the cache line at `p` for writing, ahead of atomics on it.
static inline void clinux_prefetchw(const void *p) { __builtin_prefetch(p, 1, 3); }

// ---- thread sanitizer ----
/// The thread sanitizer runtime's range annotations (<sanitizer/tsan_interface.h>): a read or a write
/// of `size` bytes at `addr`, checked like an instrumented access. Only a build with
/// `-sanitize=thread` has them; the Swift code calls them only when built with `HMM_LAB_TSAN`.
void __tsan_read_range(void *addr, unsigned long size);
void __tsan_write_range(void *addr, unsigned long size);

// ---- lib/test_hmm.c's device files (/dev/hmm_dmirrorN), uapi of lib/test_hmm_uapi.h ----
struct clinux_dmirror_cmd {
    uint64_t addr;
    uint64_t ptr;
    uint64_t npages;
    uint64_t cpages;
    uint64_t faults;
};
enum clinux_dmirror_op {
    CLINUX_DMIRROR_READ = 0, CLINUX_DMIRROR_WRITE = 1, CLINUX_DMIRROR_MIGRATE_TO_DEV = 2, CLINUX_DMIRROR_MIGRATE_TO_SYS = 3,
    CLINUX_DMIRROR_SNAPSHOT = 4, CLINUX_DMIRROR_EXCLUSIVE = 5, CLINUX_DMIRROR_CHECK_EXCLUSIVE = 6, CLINUX_DMIRROR_RELEASE = 7,
    CLINUX_DMIRROR_FLAGS = 8,
};
// ioctl(fd, _IOWR('H', nr, struct hmm_dmirror_cmd), cmd): 0, or -errno.
int clinux_dmirror_ioctl(int fd, unsigned int nr, struct clinux_dmirror_cmd *cmd);
// vmsplice(2) of one range into a pipe (the pipe then holds a reference on each page): bytes or -errno.
long clinux_vmsplice(int pipe_fd, void *addr, size_t len);
// fcntl(fd, F_SETPIPE_SZ, bytes): the new size or -errno.
int clinux_set_pipe_size(int fd, int bytes);
// madvise(MADV_PAGEOUT) value.
int clinux_madv_pageout(void);

// A load the compiler keeps: a CPU read of one byte (a read fault where the page is not mapped).
static inline uint8_t clinux_read_byte(const void *p) { return *(const volatile uint8_t *)p; }
// Forks a child that shares this process's private writable memory only in [keep, keep + keep_len)
// (every other private writable mapping is MADV_DONTFORK for the moment of the fork, then MADV_DOFORK
// again), so the parent's own heap and stack are not copy-on-write afterwards. The child sleeps
// until killed. Returns its pid, or -errno. Simplification: a mapping that was MADV_DONTFORK before
// the call is MADV_DOFORK after it (the kernel engine's process has none).
int clinux_fork_sharing_only(void *keep, size_t keep_len);

#endif
