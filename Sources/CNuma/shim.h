// libnuma (Debian: libnuma-dev): numa.h for topology, numaif.h for mbind/move_pages.
#include <numa.h>
#include <numaif.h>
