// libpfm4 (Debian: libpfm4-dev, no pkg-config file).
// The kernel header goes first: libpfm's private copy of perf_event.h is guarded on
// _LINUX_PERF_EVENT_H, so Swift sees one perf_event_attr shared with CLinux.
#include <linux/perf_event.h>
#include <perfmon/pfmlib_perf_event.h>
