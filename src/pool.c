/*
 * pool.c — pools, the fork guard, error strings and scratch buffers.
 *
 * A pool is the accounting domain of frames: every object belongs to one
 * and adds its resident and dirty pages to the pool's counters.  The frame
 * budget, reclaim and swap of self-paging attach here.  A pool is
 * reference counted: the creator holds one reference and every object one
 * more, so vmo_pool_destroy() with live objects only drops the creator's
 * reference and the pool goes away with its last object.
 *
 * Fork guard: pthread_atfork() bumps vmo__fork_gen in the child.  Handles
 * remember the generation of their pool; in a child every call on an
 * inherited handle fails with -ECHILD and destroy calls do nothing, because
 * the child has none of the parent's handler threads and none of its
 * mappings (they are MADV_DONTFORK), and locks may have been held by
 * threads that do not exist in the child.
 *
 * Self-paging (budget, watermarks, swap) is configured here and run by
 * reclaim.c and swap.c.
 *
 * Locks: the pool's counters are atomics; pool->lock guards the object
 * ring and the reclaimer (reclaim.c) and is taken last in the lock order.
 */
#include "vmo_internal.h"

#include <stdlib.h>
#include <string.h>

unsigned vmo__fork_gen;

static void atfork_child(void)
{
	__atomic_fetch_add(&vmo__fork_gen, 1, __ATOMIC_RELEASE);
	vmo__space_atfork_child();
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void fork_init(void)
{
	pthread_atfork(NULL, NULL, atfork_child);
}

void vmo__fork_guard_init(void)
{
	pthread_once(&fork_once, fork_init);
}

/* An options struct may be larger than ours (a newer caller) only if the
 * fields we do not know are zero. */
static bool tail_is_zero(const void *p, size_t have, size_t known)
{
	const unsigned char *b = p;
	for (size_t i = known; i < have; i++)
		if (b[i])
			return false;
	return true;
}

/* Check the self-paging options and fill in the pool's page counts. */
static int budget_setup(vmo_pool_t *p, const vmo_pool_options_t *o)
{
	uint64_t b = o->budget_bytes, lo = o->low_watermark_bytes,
		 hi = o->high_watermark_bytes;
	if (b % PS || lo % PS || hi % PS || o->swap_bytes % PS)
		return -EINVAL;
	if (!b && (lo || hi))
		return -EINVAL;
	/* One instruction may need several pages mapped at once (a string
	 * move across page boundaries of two mappings needs four); with
	 * fewer frames than that, filling one page evicts another it needs
	 * and the instruction never completes. */
	if (b && b < VMO_MIN_BUDGET)
		return -EINVAL;
	if ((o->swap_path != NULL) != (o->swap_bytes != 0))
		return -EINVAL;
	b /= PS;
	/* A narrow band keeps the cache close to the budget (a band of two
	 * 2 MiB fills cost evict-zipf 8 % more misses); a sequential scan's
	 * big fills then overshoot it now and then and reclaim directly. */
	uint64_t max_fill = b ? MAX(MIN(b / 8, (uint64_t)512), 1) : UINT64_MAX;
	uint64_t gap = b >= 4 ? MAX(b / 64, 1) : 0;
	/* a watermark given alone moves the default of the other so the
	 * pair stays ordered */
	/* and the defaults never reclaim below the minimum budget: an
	 * instruction may need that many pages at once */
	uint64_t min = b ? VMO_MIN_BUDGET / PS : 0;
	uint64_t high = hi ? hi / PS : MAX(MAX(b - gap, lo / PS), min);
	uint64_t low = lo ? lo / PS
			  : MIN(MAX(high > gap ? high - gap : high, min), high);
	if (low > high || high > b)
		return -EINVAL;
	p->budget = b;
	p->high = b ? high : UINT64_MAX;
	p->low = low;
	/* one fill may take a small part of the budget at most, so a tiny
	 * budget still works (a fault-around cluster shrinks to 1 page) */
	p->max_fill = max_fill;
	return 0;
}

int vmo_pool_create(const vmo_pool_options_t *opts, vmo_pool_t **out)
{
	if (!out)
		return -EINVAL;
	vmo_pool_options_t o;
	memset(&o, 0, sizeof o);
	if (opts) {
		if (opts->size < offsetof(vmo_pool_options_t, flags) +
					 sizeof opts->flags)
			return -EINVAL;
		if (opts->size > sizeof *opts &&
		    !tail_is_zero(opts, opts->size, sizeof *opts))
			return -EINVAL;
		memcpy(&o, opts, MIN(opts->size, sizeof o));
		if (o.flags)
			return -EINVAL;
	}
	vmo__fork_guard_init();
	vmo_pool_t *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	int r = budget_setup(p, &o);
	if (!r && o.swap_path)
		r = vmo__swap_open(o.swap_path, o.swap_bytes, &p->swap);
	if (r) {
		free(p);
		return r;
	}
	p->gen = __atomic_load_n(&vmo__fork_gen, __ATOMIC_ACQUIRE);
	p->refs = 1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->cow_lock, NULL);
	pthread_cond_init(&p->cv, NULL);
	pthread_cond_init(&p->done_cv, NULL);
	if (p->budget && (r = vmo__reclaim_start(p)) != 0) {
		vmo__swap_close(p->swap);
		pthread_cond_destroy(&p->done_cv);
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->cow_lock);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return r;
	}
	*out = p;
	return 0;
}

void vmo__pool_get(vmo_pool_t *pool)
{
	__atomic_fetch_add(&pool->refs, 1, __ATOMIC_RELAXED);
}

void vmo__pool_put(vmo_pool_t *pool)
{
	if (__atomic_sub_fetch(&pool->refs, 1, __ATOMIC_ACQ_REL))
		return;
	/* no object is left, so no sweep runs: the reclaimer is idle */
	vmo__reclaim_stop(pool);
	vmo__swap_close(pool->swap);
	pthread_cond_destroy(&pool->done_cv);
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->cow_lock);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}

void vmo_pool_destroy(vmo_pool_t *pool)
{
	if (!pool || vmo__stale(pool->gen))
		return;
	vmo__pool_put(pool);
}

int vmo_pool_stats(vmo_pool_t *pool, vmo_pool_stats_t *st)
{
	if (!pool || !st || st->size < 8)
		return -EINVAL;
	if (vmo__stale(pool->gen))
		return -ECHILD;
	vmo_pool_stats_t s;
	memset(&s, 0, sizeof s);
	s.size = (uint32_t)MIN((size_t)st->size, sizeof s);
	s.version = VMO_POOL_STATS_VERSION;
	s.objects = ATOMIC_LOAD(&pool->objects);
	s.resident_pages = ATOMIC_LOAD(&pool->resident_pages);
	s.dirty_pages = ATOMIC_LOAD(&pool->dirty_pages);
	s.writeback_errors = ATOMIC_LOAD(&pool->writeback_errors);
	s.budget_pages = pool->budget;
	s.swapped_pages = ATOMIC_LOAD(&pool->swapped_pages);
	s.swap_slots = vmo__swap_slots(pool->swap);
	s.swap_slots_used = vmo__swap_used(pool->swap);
	s.pages_filled = ATOMIC_LOAD(&pool->st_filled);
	s.evictions = ATOMIC_LOAD(&pool->st_evictions);
	s.writebacks = ATOMIC_LOAD(&pool->st_writebacks);
	s.swap_outs = ATOMIC_LOAD(&pool->st_swap_outs);
	s.swap_ins = ATOMIC_LOAD(&pool->st_swap_ins);
	s.refaults = ATOMIC_LOAD(&pool->st_refaults);
	s.over_budget_events = ATOMIC_LOAD(&pool->st_over_budget);
	s.swap_full_events = ATOMIC_LOAD(&pool->st_swap_full);
	s.ref_clears = ATOMIC_LOAD(&pool->st_ref_clears);
	s.reclaim_runs = ATOMIC_LOAD(&pool->st_reclaim_runs);
	s.direct_reclaims = ATOMIC_LOAD(&pool->st_direct);
	s.hidden_nodes = ATOMIC_LOAD(&pool->hidden_nodes);
	s.hidden_pages = ATOMIC_LOAD(&pool->hidden_pages);
	s.cow_preserved = ATOMIC_LOAD(&pool->st_preserved);
	s.cow_copies = ATOMIC_LOAD(&pool->st_cow_copies);
	s.cow_dropped = ATOMIC_LOAD(&pool->st_dropped);
	s.cow_invalidated = ATOMIC_LOAD(&pool->st_invalidated);
	s.cow_merged = ATOMIC_LOAD(&pool->st_merged);
	memcpy(st, &s, s.size);
	return 0;
}

/* -------------------------------------------------------------- handles */

/*
 * The objects handed to users, so that the calls that promise an error for
 * a destroyed object (vmo_clone, the copies) can tell without touching
 * freed memory.  An open-addressing set of pointers with tombstones,
 * under one mutex; it grows at half full.  A freed address that malloc
 * gives to a new object is that object's handle: the check cannot see
 * through reuse, only tell a live handle from one that is gone.
 */
#define H_EMPTY ((uintptr_t)0)
#define H_TOMB ((uintptr_t)1)
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t *handles;
static size_t handles_cap, handles_used; /* used: live + tombstones */

static size_t h_slot(uintptr_t p, size_t cap)
{
	return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

static void h_put(uintptr_t *tab, size_t cap, uintptr_t p)
{
	size_t i = h_slot(p, cap);
	while (tab[i] != H_EMPTY && tab[i] != H_TOMB)
		i = (i + 1) & (cap - 1);
	tab[i] = p;
}

void vmo__handle_add(vmo_t *o)
{
	pthread_mutex_lock(&handles_lock);
	if ((handles_used + 1) * 2 > handles_cap) {
		size_t nc = handles_cap ? handles_cap * 2 : 256;
		uintptr_t *t = calloc(nc, sizeof *t);
		if (t) {
			size_t live = 0;
			for (size_t i = 0; i < handles_cap; i++)
				if (handles[i] != H_EMPTY && handles[i] != H_TOMB) {
					h_put(t, nc, handles[i]);
					live++;
				}
			free(handles);
			handles = t;
			handles_cap = nc;
			handles_used = live;
		}
	}
	/* (out of memory with a full table: the handle goes unregistered
	 * and the checking calls refuse it with -EBADF; nothing breaks) */
	if ((handles_used + 1) * 2 <= handles_cap) {
		h_put(handles, handles_cap, (uintptr_t)o);
		handles_used++;
	}
	pthread_mutex_unlock(&handles_lock);
}

void vmo__handle_del(vmo_t *o)
{
	pthread_mutex_lock(&handles_lock);
	if (handles_cap) {
		size_t i = h_slot((uintptr_t)o, handles_cap);
		while (handles[i] != H_EMPTY) {
			if (handles[i] == (uintptr_t)o) {
				handles[i] = H_TOMB;
				break;
			}
			i = (i + 1) & (handles_cap - 1);
		}
	}
	pthread_mutex_unlock(&handles_lock);
}

bool vmo__handle_live(const vmo_t *o)
{
	bool found = false;
	pthread_mutex_lock(&handles_lock);
	if (handles_cap) {
		size_t i = h_slot((uintptr_t)o, handles_cap);
		while (handles[i] != H_EMPTY && !found) {
			found = handles[i] == (uintptr_t)o;
			i = (i + 1) & (handles_cap - 1);
		}
	}
	pthread_mutex_unlock(&handles_lock);
	return found;
}

/* ------------------------------------------------------------- strerror */

const char *vmo_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case VMO_EUSERMODE:
		return "userfaultfd is user-mode only (the process lacks "
		       "CAP_SYS_PTRACE and vm.unprivileged_userfaultfd is 0): "
		       "system calls that touch absent pages of libvmo "
		       "mappings fail with EFAULT; touch the pages first";
	case -EINVAL:
		return "invalid argument (misaligned, zero length, unknown "
		       "flag or bad option)";
	case -ERANGE:
		return "range outside the object";
	case -EACCES:
		return "access denied: the object cannot be written";
	case -ENOENT:
		return "range not mapped by this space";
	case -EEXIST:
		return "range overlaps an existing mapping";
	case -EIO:
		return "pager I/O error";
	case -ENOMEM:
		return "out of memory or address space";
	case -EFBIG:
		return "object too large";
	case -ENODEV:
		return "descriptor is not a regular file or memfd";
	case -EBADF:
		return "bad file descriptor, or a handle to an object that was "
		       "destroyed";
	case -ECHILD:
		return "handle created before fork(): unusable in the child";
	case -ENOTSUP:
		return "kernel lacks a required userfaultfd feature";
	case -ENOSYS:
		return "userfaultfd not available";
	case -EPERM:
		return "userfaultfd not permitted";
	case -EBADMSG:
		return "image corrupt: a checksum does not match, the file is "
		       "truncated, or a parent image is not the one it names";
	case -ENOBUFS:
		return "array too small for the result";
	case -ENOSPC:
		return "no space left on the device";
	case -ENODATA:
		return "data dropped: a weak clone's page that its source "
		       "wrote";
	default:
		break;
	}
	if (err < 0 && err > -4096) {
		/* strerror() is not thread-safe and strerror_r's buffer would
		 * have to outlive the call; give a generic text instead. */
		return "system error (negative errno value)";
	}
	return "unknown error";
}

/* -------------------------------------------------------------- scratch */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

struct scratch {
	size_t len[VMO__SCRATCH_SLOTS];
	void *buf[VMO__SCRATCH_SLOTS];
};

static void scratch_free(void *p)
{
	struct scratch *s = p;
	for (int i = 0; i < VMO__SCRATCH_SLOTS; i++)
		free(s->buf[i]);
	free(s);
}

static void scratch_init(void)
{
	pthread_key_create(&scratch_key, scratch_free);
}

void *vmo__scratch(int slot, size_t len)
{
	pthread_once(&scratch_once, scratch_init);
	struct scratch *s = pthread_getspecific(scratch_key);
	if (!s) {
		s = calloc(1, sizeof *s);
		if (!s)
			return NULL;
		if (pthread_setspecific(scratch_key, s)) {
			free(s);
			return NULL;
		}
	}
	if (s->len[slot] < len) {
		void *nb = NULL;
		if (posix_memalign(&nb, PS, len))
			return NULL;
		free(s->buf[slot]);
		s->buf[slot] = nb;
		s->len[slot] = len;
	}
	return s->buf[slot];
}
