/*
 * swap.c — a pool's swap file and its slot allocator.
 *
 * What it owns.  One file per pool holding evicted pages of anonymous and
 * VMO_FILE_PRIVATE objects (the pages that have no pager to take them
 * back), one page per slot: slot s lives at byte s * VMO_PAGE_SIZE.  The
 * file is sparse: it is sized once, and only slots ever written take disk
 * blocks.  Which page a slot holds is recorded by the owning object's page
 * table (ptable slot arrays), not here: this module only knows which slots
 * are free.
 *
 * Allocation is next-fit over a bitmap, asking for a run of contiguous
 * slots: the evictor saves a batch of victims with one pwrite, and pages
 * evicted together in object order (a sequential scan) land in
 * consecutive slots, so a later sequential swap-in reads them back with
 * one pread.  When no run of the wanted length is left, shorter runs are
 * handed out; 0 means full (the evictor then keeps the page, see
 * vmo__obj_evict).
 *
 * Invariants: `used` is the number of set bits; a slot is set from
 * vmo__swap_alloc until vmo__swap_free.  Lock: sw->lock guards the bitmap
 * and the hint; it is a leaf lock (taken under obj->lock, nothing taken
 * under it).  I/O takes no lock: the slots being read or written belong
 * to pages their caller owns (busy states).
 */
#include "vmo_internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct vmo__swap {
	int fd;
	bool created;       /* we created the file: unlink it at the end */
	char *path;
	uint64_t nslots;
	uint64_t *bits;     /* 1 = slot in use */
	uint64_t hint;      /* next-fit start */
	uint64_t used;      /* (a) for statistics; written under lock */
	pthread_mutex_t lock;
};

int vmo__swap_open(const char *path, uint64_t bytes, struct vmo__swap **out)
{
	uint64_t n = bytes / PS;
	if (bytes % PS || n == 0)
		return -EINVAL;
	if (n > UINT32_MAX)
		return -EFBIG;
	struct vmo__swap *sw = calloc(1, sizeof *sw);
	if (!sw)
		return -ENOMEM;
	sw->nslots = n;
	sw->bits = calloc((n + 63) / 64, sizeof *sw->bits);
	sw->path = strdup(path);
	if (!sw->bits || !sw->path) {
		free(sw->bits);
		free(sw->path);
		free(sw);
		return -ENOMEM;
	}
	int fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
	if (fd >= 0) {
		sw->created = true;
	} else if (errno == EEXIST) {
		fd = open(path, O_RDWR | O_CLOEXEC);
	}
	int r = 0;
	struct stat sb;
	if (fd < 0)
		r = -errno;
	else if (fstat(fd, &sb) != 0)
		r = -errno;
	else if (!S_ISREG(sb.st_mode))
		r = -EINVAL;
	else if ((uint64_t)sb.st_size < bytes && ftruncate(fd, (off_t)bytes))
		r = -errno;
	if (r) {
		if (fd >= 0)
			close(fd);
		if (sw->created)
			unlink(path);
		free(sw->bits);
		free(sw->path);
		free(sw);
		return r;
	}
	sw->fd = fd;
	pthread_mutex_init(&sw->lock, NULL);
	*out = sw;
	return 0;
}

void vmo__swap_close(struct vmo__swap *sw)
{
	if (!sw)
		return;
	if (sw->created) {
		unlink(sw->path);
	} else {
		/* give the disk blocks back; the content is garbage now */
		fallocate(sw->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			  (off_t)(sw->nslots * PS));
	}
	close(sw->fd);
	pthread_mutex_destroy(&sw->lock);
	free(sw->bits);
	free(sw->path);
	free(sw);
}

static inline bool bit(const struct vmo__swap *sw, uint64_t i)
{
	return (sw->bits[i / 64] >> (i % 64)) & 1;
}

static inline void set_bit(struct vmo__swap *sw, uint64_t i, bool v)
{
	if (v)
		sw->bits[i / 64] |= 1ull << (i % 64);
	else
		sw->bits[i / 64] &= ~(1ull << (i % 64));
}

/* First free slot at or after i (wrapping once), or nslots. */
static uint64_t next_free(const struct vmo__swap *sw, uint64_t i)
{
	uint64_t nw = (sw->nslots + 63) / 64;
	if (i >= sw->nslots)
		i = 0;
	uint64_t w = i / 64;
	uint64_t mask = ~((1ull << (i % 64)) - 1); /* bits >= i within w */
	for (uint64_t k = 0; k <= nw; k++) {
		uint64_t avail = ~sw->bits[w] & mask;
		if (avail) {
			uint64_t j = w * 64 + (uint64_t)__builtin_ctzll(avail);
			if (j < sw->nslots)
				return j;
		}
		mask = ~0ull;
		w = (w + 1) % nw;
	}
	return sw->nslots;
}

uint32_t vmo__swap_alloc(struct vmo__swap *sw, uint32_t n, uint32_t *first)
{
	if (n == 0)
		return 0;
	pthread_mutex_lock(&sw->lock);
	uint32_t got = 0;
	if (sw->used < sw->nslots) {
		uint64_t start = next_free(sw, sw->hint);
		/* Look a little for a run as long as wanted; a free slot is
		 * better than a long search. */
		uint64_t best = start, best_len = 0, s = start;
		for (int tries = 0; tries < 8 && s < sw->nslots; tries++) {
			uint64_t e = s;
			while (e < sw->nslots && e - s < n && !bit(sw, e))
				e++;
			if (e - s > best_len) {
				best = s;
				best_len = e - s;
			}
			if (best_len == n || e >= sw->nslots)
				break;
			s = next_free(sw, e);
			if (s <= best)
				break; /* wrapped */
		}
		for (uint64_t i = best; i < best + best_len; i++)
			set_bit(sw, i, true);
		got = (uint32_t)best_len;
		*first = (uint32_t)best;
		__atomic_store_n(&sw->used, sw->used + got, __ATOMIC_RELAXED);
		sw->hint = best + best_len;
	}
	pthread_mutex_unlock(&sw->lock);
	return got;
}

void vmo__swap_free(struct vmo__swap *sw, uint32_t slot)
{
	pthread_mutex_lock(&sw->lock);
	if (slot < sw->nslots && bit(sw, slot)) {
		set_bit(sw, slot, false);
		__atomic_store_n(&sw->used, sw->used - 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&sw->lock);
}

int vmo__swap_write(struct vmo__swap *sw, uint32_t slot, const void *buf,
		    uint32_t n)
{
	return vmo__sys_pwrite_full(sw->fd, buf, (size_t)n * PS,
				    (uint64_t)slot * PS);
}

int vmo__swap_read(struct vmo__swap *sw, uint32_t slot, void *buf, uint32_t n)
{
	size_t got = 0;
	int r = vmo__sys_pread_full(sw->fd, buf, (size_t)n * PS,
				    (uint64_t)slot * PS, &got);
	if (r == 0 && got < (size_t)n * PS)
		r = -EIO; /* the file was truncated under us */
	return r;
}

uint64_t vmo__swap_slots(const struct vmo__swap *sw)
{
	return sw ? sw->nslots : 0;
}

uint64_t vmo__swap_used(const struct vmo__swap *sw)
{
	return sw ? __atomic_load_n(&sw->used, __ATOMIC_RELAXED) : 0;
}
