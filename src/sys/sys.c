/*
 * sys.c — the system layer: memfds, full-length pread/pwrite, PAGEMAP_SCAN,
 * clocks.
 *
 * Everything here is a thin, stateless wrapper that turns errno into a
 * negative return value, so the rest of the library reads as logic.  The
 * only state is the process-wide /proc/self/pagemap descriptor, opened once
 * on first use (pthread_once) and kept for the life of the process.
 * userfaultfd calls live in fault.c / space.c next to the logic that needs
 * their subtle return conventions (partial progress, EEXIST races).
 */
#include "../vmo_internal.h"
#include "uapi.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

int vmo__sys_memfd(uint64_t size)
{
	int fd = memfd_create("libvmo", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) != 0) {
		int e = -errno;
		close(fd);
		return e == -EINVAL ? -EFBIG : e;
	}
	return fd;
}

static pthread_once_t pagemap_once = PTHREAD_ONCE_INIT;
static int pagemap_fd = -1;

static void pagemap_open(void)
{
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

int vmo__sys_pagemap_fd(void)
{
	pthread_once(&pagemap_once, pagemap_open);
	return pagemap_fd;
}

int vmo__sys_scan_written(uintptr_t start, uintptr_t end,
			  void (*cb)(void *arg, uintptr_t s, uintptr_t e),
			  void *arg)
{
	int fd = vmo__sys_pagemap_fd();
	if (fd < 0)
		return -ENOSYS;
	struct page_region vec[64];
	while (start < end) {
		struct pm_scan_arg a;
		memset(&a, 0, sizeof a);
		a.size = sizeof a;
		a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
		a.start = start;
		a.end = end;
		a.vec = (uint64_t)(uintptr_t)vec;
		a.vec_len = 64;
		a.category_mask = PAGE_IS_WRITTEN;
		a.return_mask = PAGE_IS_WRITTEN;
		long n = ioctl(fd, PAGEMAP_SCAN, &a);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (long i = 0; i < n; i++)
			cb(arg, (uintptr_t)vec[i].start, (uintptr_t)vec[i].end);
		if (a.walk_end <= start) /* no progress: cannot happen */
			return -EIO;
		start = (uintptr_t)a.walk_end;
	}
	return 0;
}

int vmo__sys_pread_full(int fd, void *buf, size_t len, uint64_t off,
			size_t *got)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			*got = done;
			return -errno;
		}
		if (r == 0)
			break; /* end of file */
		done += (size_t)r;
	}
	*got = done;
	return 0;
}

int vmo__sys_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}

uint64_t vmo__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

unsigned vmo__log2_bucket(uint64_t ns)
{
	if (ns < 2)
		return 0;
	unsigned b = 63u - (unsigned)__builtin_clzll(ns);
	return b < VMO_LAT_BUCKETS ? b : VMO_LAT_BUCKETS - 1;
}

/*
 * Zap the page-table entries of n ranges (MADV_DONTNEED), with one system
 * call where the kernel allows process_madvise() on the calling process
 * (Linux 6.13 lifted the advice restrictions for the caller itself;
 * PIDFD_SELF, which saves opening a pidfd that a fork() would leave
 * pointing at the parent, came later): the whole batch then shares one TLB
 * flush.  Otherwise one madvise per range.
 */
#ifndef UIO_MAXIOV
#define UIO_MAXIOV 1024
#endif
#ifndef PIDFD_SELF_THREAD_GROUP
#define PIDFD_SELF_THREAD_GROUP (-10001) /* uapi/linux/pidfd.h, 6.14 */
#endif
static int pmadv_ok = 1; /* 1 untested/usable, 0 unsupported */

void vmo__sys_zap(const struct iovec *iov, size_t n)
{
	size_t done = 0;
	while (done < n && __atomic_load_n(&pmadv_ok, __ATOMIC_RELAXED)) {
		size_t k = MIN(n - done, (size_t)UIO_MAXIOV);
		long r = syscall(SYS_process_madvise, PIDFD_SELF_THREAD_GROUP,
				 iov + done, k, MADV_DONTNEED, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			__atomic_store_n(&pmadv_ok, 0, __ATOMIC_RELAXED);
			break;
		}
		/* a short count leaves the rest to the loop below */
		uint64_t left = (uint64_t)r;
		while (done < n && left >= iov[done].iov_len)
			left -= iov[done++].iov_len;
		if (left || (done < n && r == 0))
			break;
	}
	for (; done < n; done++)
		madvise(iov[done].iov_base, iov[done].iov_len, MADV_DONTNEED);
}
