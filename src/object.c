/*
 * object.c — memory objects: their frames, page table and state machine,
 * and the explicit calls (read, write, commit, decommit, sync).
 *
 * What it owns.  An object is a sized container of pages.  Its frames live
 * in a memfd: page k of the object is page k of the memfd, so a frame
 * filled once is seen by every mapping of the object in every space, and
 * fallocate(PUNCH_HOLE) releases it everywhere at once.  The page table
 * (ptable.c) holds one state byte per page; the state machine is
 *
 *     ABSENT --claim--> FILLING --fill_done(ok)--> RESIDENT [+DIRTY]
 *        ^                 |                         |    ^
 *        |        fill_done(failed)          sync    |    | done
 *        +-----------------+                         v    |
 *        +------------- decommit ------------- WRITEBACK -+
 *
 * Self-paging adds EVICTING (busy: an evictor zaps, saves and releases
 * the page) and SWAPPED (the content is in a swap slot; a claim fills it
 * from there): see the eviction section below and docs/design.md.
 *
 * FILLING and WRITEBACK are busy states: the thread that set them owns the
 * page and runs the pager with no lock held; others wait on obj->cv.  A
 * FILLING page is invisible (nobody maps or reads it), so the pager's read
 * runs exactly once per fill however many threads want the page.  A
 * WRITEBACK page stays readable and mappable; writers wait.
 *
 * Dirty tracking.  vmo_write marks pages DIRTY directly.  Writes through
 * mappings of write-back objects are logged by the kernel (userfaultfd
 * WP_ASYNC: a written page loses its write-protect bit) and harvested into
 * DIRTY by PAGEMAP_SCAN, which also re-protects them, at vmo_sync, unmap
 * and decommit.  Without WP_ASYNC every resident page of an object that
 * had a writable mapping since the last sync counts as dirty.
 *
 * Locks.  obj->lock guards the page table, the counters and the list of
 * mappings; it is taken after space->lock and before pool->lock.  It is
 * never held across pager I/O or across copies to or from caller memory
 * (which may fault into a libvmo mapping and need a handler thread that
 * wants this lock); preads and pwrites of the memfd into library scratch
 * buffers are done under it, which is what makes vmo_read atomic with
 * respect to decommit.
 */
#include "vmo_internal.h"
#include "sys/uapi.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Explicit calls work in chunks of this many bytes of scratch buffer. */
#define IO_CHUNK (256u * 1024u)
/* Runs filled or written back at once by explicit calls. */
#define RUN_PAGES 512u

static inline bool st_resident(uint16_t b)
{
	return vmo__pg_mappable(b);
}

/*
 * Set the state byte of pg and keep counters in step.  obj->lock held.
 * Swap slots follow the byte: a page that is dirtied, or leaves the SLOT
 * flag behind, gives its slot back here and nowhere else.
 */
int vmo__pg_set(vmo_t *o, uint64_t pg, uint16_t old, uint16_t nv)
{
	/* The slot's copy of a dirtied page is stale: free it, but only once
	 * the content is in memory for good.  A FILLING page may be
	 * harvested dirty before its filler has read the slot (its entry
	 * reads as written); fill_done frees the slot then. */
	if ((nv & PG_SLOT) && (nv & PG_DIRTY) && vmo__pg_counts_resident(nv) &&
	    PG_STATE(nv) != PG_FILLING)
		nv &= (uint16_t)~PG_SLOT;
	/* a page out of the memfd has no page-table entry anywhere */
	if (!vmo__pg_counts_resident(nv))
		nv &= (uint16_t)~PG_WPOFF;
	/* a poison marker stays until the page shows something again */
	bool unpoison = false;
	if (old & PG_POISONED) {
		if (PG_STATE(nv) != PG_ABSENT && PG_STATE(nv) != PG_DROPPED) {
			nv &= (uint16_t)~PG_POISONED;
			unpoison = true;
		} else {
			nv |= PG_POISONED;
		}
	}
	uint32_t slot = (old & PG_SLOT) && !(nv & PG_SLOT)
				? vmo__pt_slot(&o->pt, pg)
				: 0;
	int r = vmo__pt_set(&o->pt, pg, nv);
	if (r)
		return r;
	if ((old & PG_SLOT) && !(nv & PG_SLOT))
		vmo__swap_free(o->pool->swap, slot);
	int dres = (int)vmo__pg_counts_resident(nv) - (int)vmo__pg_counts_resident(old);
	int ddirty = (int)!!(nv & PG_DIRTY) - (int)!!(old & PG_DIRTY);
	int dsw = (int)(PG_STATE(nv) == PG_SWAPPED) -
		  (int)(PG_STATE(old) == PG_SWAPPED);
	if (o->kind == VMO_KIND_NODE && (dres + dsw))
		ATOMIC_ADD(&o->pool->hidden_pages, (uint64_t)(int64_t)(dres + dsw));
	if (dres) {
		o->nresident += (uint64_t)(int64_t)dres;
		ATOMIC_ADD(&o->pool->resident_pages, (uint64_t)(int64_t)dres);
	}
	if (ddirty) {
		o->ndirty += (uint64_t)(int64_t)ddirty;
		ATOMIC_ADD(&o->pool->dirty_pages, (uint64_t)(int64_t)ddirty);
	}
	if (dsw) {
		o->nswapped += (uint64_t)(int64_t)dsw;
		ATOMIC_ADD(&o->pool->swapped_pages, (uint64_t)(int64_t)dsw);
	}
	if (unpoison)
		vmo__obj_zap(o, pg, 1);
	return 0;
}

void vmo__obj_note_poison_locked(vmo_t *o, uint64_t pg)
{
	uint16_t b = vmo__pt_get(&o->pt, pg);
	if (!vmo__pg_counts_resident(b))
		vmo__pg_set(o, pg, b, b | PG_POISONED);
}

void vmo__obj_wake(vmo_t *o)
{
	if (o->waiters)
		pthread_cond_broadcast(&o->cv);
}

void vmo__obj_wait(vmo_t *o)
{
	o->waiters++;
	pthread_cond_wait(&o->cv, &o->lock);
	o->waiters--;
}

/* ------------------------------------------------------------ creation */

int vmo__obj_new(vmo_pool_t *pool, uint64_t size, enum vmo__kind kind,
		   vmo_t **out)
{
	if (!pool || !out)
		return -EINVAL;
	if (vmo__stale(pool->gen))
		return -ECHILD;
	if (size == 0 || size % PS)
		return -EINVAL;
	if (size > VMO_MAX_SIZE)
		return -EFBIG;
	vmo_t *o = calloc(1, sizeof *o);
	if (!o)
		return -ENOMEM;
	int fd = vmo__sys_memfd(size);
	if (fd < 0) {
		free(o);
		return fd;
	}
	o->pool = pool;
	o->gen = pool->gen;
	o->kind = kind;
	o->size = size;
	o->npages = size / PS;
	o->memfd = fd;
	o->file_fd = -1;
	o->eof_pg = UINT64_MAX;
	o->refs = 1;
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cv, NULL);
	vmo__pt_init(&o->pt, o->npages);
	*out = o;
	return 0;
}

void vmo__obj_publish(vmo_t *o)
{
	vmo__pool_get(o->pool);
	if (o->kind == VMO_KIND_NODE) {
		ATOMIC_INC(&o->pool->hidden_nodes);
	} else {
		ATOMIC_INC(&o->pool->objects);
		vmo__handle_add(o);
	}
	/* Eviction must know which pages differ from their backing copy:
	 * write-back objects always, writable ones once there is a budget. */
	o->track = o->writeback || (o->pool->budget && o->writable);
	vmo__pool_link(o->pool, o);
}

int vmo_create(vmo_pool_t *pool, uint64_t size, unsigned flags, vmo_t **out)
{
	if (flags || !out)
		return -EINVAL;
	vmo_t *o;
	int r = vmo__obj_new(pool, size, VMO_KIND_ANON, &o);
	if (r)
		return r;
	o->writable = true;
	vmo__obj_publish(o);
	*out = o;
	return 0;
}

int vmo_create_file(vmo_pool_t *pool, int fd, uint64_t offset, uint64_t size,
		    unsigned flags, vmo_t **out)
{
	if (!pool || !out)
		return -EINVAL;
	if (vmo__stale(pool->gen))
		return -ECHILD;
	if (flags != VMO_FILE_SHARED && flags != VMO_FILE_PRIVATE)
		return -EINVAL;
	if (offset % PS || size == 0 || size % PS)
		return -EINVAL;
	if (size > VMO_MAX_SIZE)
		return -EFBIG;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -EBADF;
	struct stat sb;
	if (fstat(fd, &sb) != 0)
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -ENODEV;
	int acc = fl & O_ACCMODE;
	if (acc == O_WRONLY || (fl & O_PATH))
		return -EACCES;
	uint64_t fsize = (uint64_t)sb.st_size;
	uint64_t fend_pg = (fsize + PS - 1) / PS * PS;
	if (offset > fend_pg || size > fend_pg - offset)
		return -EINVAL;

	vmo_t *o;
	int r = vmo__obj_new(pool, size, VMO_KIND_FILE, &o);
	if (r)
		return r;
	o->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (o->file_fd < 0) {
		r = -errno;
		close(o->memfd);
		pthread_mutex_destroy(&o->lock);
		pthread_cond_destroy(&o->cv);
		free(o);
		return r;
	}
	o->flags = flags;
	o->file_off = offset;
	o->file_valid = MIN(size, fsize - offset);
	if (flags == VMO_FILE_PRIVATE) {
		o->writable = true;
	} else {
		o->writable = acc == O_RDWR && !(fl & O_APPEND);
		o->writeback = o->writable;
	}
	/* A writable shared file whose end falls inside a page of the
	 * object: bytes written past the end live only in memory (they are
	 * never written back), so eviction keeps that page. */
	if (o->writeback && o->file_valid % PS)
		o->eof_pg = o->file_valid / PS;
	vmo__obj_publish(o);
	*out = o;
	return 0;
}

int vmo_create_pager(vmo_pool_t *pool, uint64_t size,
		     const vmo_pager_ops_t *ops, void *ctx, unsigned flags,
		     vmo_t **out)
{
	if (!ops || !ops->read || flags || !out)
		return -EINVAL;
	vmo_t *o;
	int r = vmo__obj_new(pool, size, VMO_KIND_PAGER, &o);
	if (r)
		return r;
	o->ops = *ops;
	o->ctx = ctx;
	o->writable = ops->write != NULL;
	o->writeback = o->writable;
	vmo__obj_publish(o);
	*out = o;
	return 0;
}

/* ---------------------------------------------------- refs and teardown */

static void release_slots(vmo_t *o)
{
	if (!o->pool->swap)
		return;
	for (uint64_t p = vmo__pt_next_used(&o->pt, 0, o->npages);
	     p < o->npages; p = vmo__pt_next_used(&o->pt, p + 1, o->npages))
		if (vmo__pt_get(&o->pt, p) & PG_SLOT)
			vmo__swap_free(o->pool->swap, vmo__pt_slot(&o->pt, p));
}

/* Free an object made by vmo__obj_new that was never published. */
void vmo__obj_discard(vmo_t *o)
{
	vmo__pt_destroy(&o->pt);
	close(o->memfd);
	if (o->file_fd >= 0)
		close(o->file_fd);
	pthread_cond_destroy(&o->cv);
	pthread_mutex_destroy(&o->lock);
	free(o->wlog);
	free(o);
}

void vmo__obj_free(vmo_t *o)
{
	/* out of reclaim's sight first: no sweep may use it now */
	vmo__pool_unlink(o->pool, o);
	if (o->kind == VMO_KIND_PAGER && o->ops.release)
		o->ops.release(o->ctx);
	vmo_pool_t *pool = o->pool;
	release_slots(o);
	ATOMIC_ADD(&pool->resident_pages, (uint64_t)0 - o->nresident);
	ATOMIC_ADD(&pool->dirty_pages, (uint64_t)0 - o->ndirty);
	ATOMIC_ADD(&pool->swapped_pages, (uint64_t)0 - o->nswapped);
	if (o->kind == VMO_KIND_NODE) {
		ATOMIC_ADD(&pool->hidden_pages,
			   (uint64_t)0 - (o->nresident + o->nswapped));
		__atomic_fetch_sub(&pool->hidden_nodes, 1, __ATOMIC_RELAXED);
	} else {
		vmo__handle_del(o);
		__atomic_fetch_sub(&pool->objects, 1, __ATOMIC_RELAXED);
	}
	vmo__obj_discard(o);
	vmo__pool_put(pool);
}

void vmo_ref(vmo_t *obj)
{
	if (!obj || vmo__obj_stale(obj))
		return;
	__atomic_fetch_add(&obj->refs, 1, __ATOMIC_RELAXED);
}

void vmo_unref(vmo_t *obj)
{
	if (!obj || vmo__obj_stale(obj))
		return;
	if (__atomic_sub_fetch(&obj->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	/* the last user is gone: its changes go back to the pager now,
	 * whatever else still sees through the object */
	if (obj->writeback && vmo__obj_sync_range(obj, 0, obj->npages) != 0)
		ATOMIC_INC(&obj->pool->writeback_errors);
	if (__atomic_load_n(&obj->fam, __ATOMIC_ACQUIRE))
		vmo__cow_release(obj);
	else
		vmo__obj_free(obj);
}

uint64_t vmo_size(const vmo_t *obj)
{
	return obj ? obj->size : 0;
}

/* ------------------------------------------------ write-log bookkeeping */

/*
 * The kernel reports a page of a write-protect-tracked mapping as written
 * when its page-table entry is empty (nothing says it was not), so every
 * page the object holds must carry a write-protect marker or a protected
 * entry in every tracked mapping from the moment it becomes resident:
 * pages filled for a fault in one mapping, by vmo_read / vmo_write /
 * vmo_commit, or present before a mapping was made.  Markers are only ever
 * added to pages that no mapping can have mapped yet (they were FILLING or
 * ABSENT under obj->lock), so a logged write is never cleared here.
 */
/*
 * Write-protect object bytes [s, e) in mapping m (the part it maps).
 * 0, or -EAGAIN when the address space was changing (a conversion's
 * mremap event is pending on one of m's uffds, clone.c) and the caller
 * must drop its locks and retry.  obj->lock held.
 */
int vmo__map_protect(struct vmo__mapping *m, uint64_t s, uint64_t e)
{
	uint64_t ms = MAX(s, m->off), me = MIN(e, m->off + m->len);
	if (ms >= me)
		return 0;
	uintptr_t a = m->addr + (ms - m->off), ae = a + (me - ms);
	while (a < ae) {
		uintptr_t se;
		int fd = vmo__uffd_of(m->space, m->set, m->reg_base,
				      m->stripe_shift, a, &se);
		se = MIN(se, ae);
		struct uffdio_writeprotect wp = {
			.range = {a, se - a},
			/* (not DONTWAKE: the kernel refuses it with WP) */
			.mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};
		if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) != 0 && errno == EAGAIN)
			return -EAGAIN;
		a = se;
	}
	return 0;
}

static void wp_range(struct vmo__mapping *m, uint64_t s, uint64_t e)
{
	/* markers on pages no mapping can have written yet (see above):
	 * an async-set mapping's uffd never has an mremap event pending */
	(void)vmo__map_protect(m, s, e);
}

/* Write-protect pages [pg, end) in every sync-set mapping registered for
 * it, and note that they are: WPOFF goes.  0 or -EAGAIN (retry with the
 * lock dropped).  obj->lock held. */
int vmo__obj_protect_sync(vmo_t *o, uint64_t pg, uint64_t end)
{
	for (struct vmo__mapping *m = o->maps; m; m = m->obj_next)
		if (m->sync_wp && vmo__map_protect(m, pg * PS, end * PS))
			return -EAGAIN;
	for (uint64_t p = pg; p < end; p++) {
		uint16_t b = vmo__pt_get(&o->pt, p);
		if (b & PG_WPOFF)
			vmo__pg_set(o, p, b, b & (uint16_t)~PG_WPOFF);
	}
	return 0;
}

/* Mark pages [pg, pg+n) write-protected in every tracked mapping but
 * `except` (which installed them protected itself).  obj->lock held. */
static void protect_new_pages(vmo_t *o, uint64_t pg, uint64_t n,
			      const struct vmo__mapping *except)
{
	for (struct vmo__mapping *m = o->maps; m; m = m->obj_next)
		if (m->track_wp && m != except)
			wp_range(m, pg * PS, (pg + n) * PS);
}

/* Call fn on each maximal run of non-ABSENT pages in [pg, end).
 * obj->lock held. */
static void for_each_used_run(vmo_t *o, uint64_t pg, uint64_t end,
			      void (*fn)(vmo_t *, struct vmo__mapping *,
					 uint64_t, uint64_t),
			      struct vmo__mapping *m)
{
	uint64_t p = vmo__pt_next_used(&o->pt, pg, end);
	while (p < end) {
		uint64_t q = p + 1;
		while (q < end && vmo__pt_get(&o->pt, q))
			q++;
		fn(o, m, p, q);
		p = vmo__pt_next_used(&o->pt, q, end);
	}
}

/* ---------------------------------------------------- claims and fills */

int vmo__obj_claim(vmo_t *o, uint64_t pg, uint64_t n, uint64_t *k,
		   bool *waited)
{
	int cls;
	pthread_mutex_lock(&o->lock);
	uint16_t b, st;
	while ((st = PG_STATE(b = vmo__pt_get(&o->pt, pg))) == PG_FILLING ||
	       st == PG_EVICTING) {
		if (!waited) {
			pthread_mutex_unlock(&o->lock);
			*k = 0;
			return VMO__RUN_BUSY;
		}
		*waited = true;
		vmo__obj_wait(o);
	}
	uint64_t i = 0, refaults = 0;
	if (st == PG_DROPPED) {
		pthread_mutex_unlock(&o->lock);
		*k = 1;
		return VMO__RUN_DROPPED;
	}
	if (st == PG_ABSENT || st == PG_SWAPPED || st == PG_SHARED) {
		/* one source per run: the pager (or zeros), swap, or what
		 * the page shares (clone.c); and no longer than the budget
		 * allows one fill to take */
		bool cow = vmo__cow_backed(o, b);
		n = MIN(n, o->pool->max_fill);
		while (i < n && PG_STATE(b = vmo__pt_get(&o->pt, pg + i)) ==
					st) {
			/* Referenced: the page asked for, and pages that come
			 * back after an eviction (they proved to be needed).
			 * The rest of a cluster is a guess: if it is used
			 * without a fault it is evicted on the hand's first
			 * pass, like a read-ahead page on Linux's inactive
			 * list, and a refault marks it. */
			bool back = (b & (PG_EVICTED | PG_SLOT)) != 0;
			uint16_t ref = (i == 0 || back) ? PG_REF : 0;
			if (vmo__pg_set(o, pg + i, b,
					(uint16_t)(PG_FILLING | ref |
						   (b & (PG_SLOT | PG_HASREF)))))
				break;
			refaults += back;
			i++;
		}
		cls = !i		  ? -ENOMEM
		      : st == PG_SWAPPED ? VMO__RUN_SWAPIN
		      : cow		  ? VMO__RUN_COW
					  : VMO__RUN_FILL;
	} else {
		while (i < n && st_resident(vmo__pt_get(&o->pt, pg + i)))
			i++;
		/* a reference to a resident page: the clock's sample */
		if (i && !(b & PG_REF))
			(void)vmo__pg_set(o, pg, b, b | PG_REF);
		cls = VMO__RUN_RESIDENT;
	}
	pthread_mutex_unlock(&o->lock);
	*k = i;
	if (refaults)
		ATOMIC_ADD(&o->pool->st_refaults, refaults);
	if (cls == VMO__RUN_FILL || cls == VMO__RUN_SWAPIN ||
	    cls == VMO__RUN_COW)
		vmo__pool_charge(o->pool);
	return cls;
}

void vmo__obj_wait_settled(vmo_t *o, uint64_t pg)
{
	pthread_mutex_lock(&o->lock);
	for (;;) {
		uint16_t st = PG_STATE(vmo__pt_get(&o->pt, pg));
		if (st != PG_FILLING && st != PG_WRITEBACK && st != PG_EVICTING)
			break;
		vmo__obj_wait(o);
	}
	pthread_mutex_unlock(&o->lock);
}

bool vmo__obj_filling(vmo_t *o, uint64_t pg)
{
	pthread_mutex_lock(&o->lock);
	bool r = PG_STATE(vmo__pt_get(&o->pt, pg)) == PG_FILLING;
	pthread_mutex_unlock(&o->lock);
	return r;
}

void vmo__obj_fill_done(vmo_t *o, uint64_t pg, uint64_t k, bool ok,
			const struct vmo__mapping *installed_in)
{
	pthread_mutex_lock(&o->lock);
	if (ok)
		protect_new_pages(o, pg, k, installed_in);
	for (uint64_t i = 0; i < k; i++) {
		/* A FILLING page may already be mapped (UFFDIO_COPY wakes the
		 * faulting thread before we get here), written, and harvested
		 * as DIRTY: keep that bit.  A page read from swap keeps its
		 * slot as a clean copy (unless dirtied: pg_set drops it); a
		 * failed swap-in leaves the page in swap.  PG_REF was decided
		 * at claim.  Cannot fail: the leaves exist. */
		uint16_t b = vmo__pt_get(&o->pt, pg + i);
		uint16_t nv;
		if (b & PG_STALE) {
			/* a clone's copy of a page its source changed
			 * meanwhile (clone.c): drop it, mapped or not */
			if (ok)
				fallocate(o->memfd,
					  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  (off_t)((pg + i) * PS), (off_t)PS);
			nv = o->ckind == VMO__CK_WEAK ? (uint16_t)PG_DROPPED
						      : (uint16_t)PG_ABSENT;
		} else if (ok) {
			nv = (uint16_t)(PG_RESIDENT |
					(b & (PG_DIRTY | PG_SLOT | PG_REF |
					      PG_HASREF)));
			/* a copy of what it shares: clean, and the clone's
			 * own only once written */
			if ((b & PG_HASREF) ||
			    (o->kind == VMO_KIND_CLONE && !(b & PG_SLOT)))
				nv |= PG_COPY;
		} else {
			nv = (b & PG_SLOT)     ? (uint16_t)(PG_SWAPPED | PG_SLOT)
			     : (b & PG_HASREF) ? (uint16_t)(PG_SHARED | PG_HASREF)
					       : (uint16_t)PG_ABSENT;
		}
		(void)vmo__pg_set(o, pg + i, b, nv);
	}
	vmo__obj_wake(o);
	pthread_mutex_unlock(&o->lock);
}

/*
 * Density clustering for writers that are not streams.  A random writer
 * of a snapshotted object pays a synchronous round trip per page; once an
 * eighth of a 2 MiB block (one page-table leaf) has been written since the
 * last protect, the rest of the block is likely to follow before the next
 * snapshot, so a fault there unprotects up to the rest of the block after
 * the page (its pre-images kept early).  A writer that touches 1 % of its
 * pages never gets there; one that rewrites its whole heap in random order
 * takes about a fifth of the faults (docs/PERFORMANCE.md, snapshot-write).
 * The price is pre-images of pages the writer may not write after all:
 * at most the block's resident pages, the same as if it had.
 */
#ifndef WF_DENSE_MIN
#define WF_DENSE_MIN (PT_LEAF_PAGES / 8)
#endif

/* Mappable pages from pg (at most n); -EAGAIN if page pg is FILLING.
 * obj->lock held. */
static int64_t wf_run(vmo_t *o, uint64_t pg, uint64_t n, bool dense)
{
	if (PG_STATE(vmo__pt_get(&o->pt, pg)) == PG_FILLING)
		return -EAGAIN;
	/* A cluster treats its pages as written.  That is only a cost for
	 * snapshots (a pre-image kept early), but it would be wrong for an
	 * at-least-on-write or weak clone of this object, whose pages the
	 * write drops or refetches, and for such a clone's own clean
	 * copies, which must keep following their source. */
	if (o->deps)
		n = MIN(n, (uint64_t)1);
	if (dense && n > 1 &&
	    vmo__pt_count_leaf(&o->pt, pg, PG_WPOFF) < WF_DENSE_MIN)
		n = 1;
	bool follow = o->ckind == VMO__CK_ALOW || o->ckind == VMO__CK_WEAK;
	uint64_t k = 0;
	while (k < n) {
		uint16_t b = vmo__pt_get(&o->pt, pg + k);
		if (!vmo__pg_mappable(b) || (k && follow && (b & PG_COPY)))
			break;
		k++;
	}
	return (int64_t)k;
}

/*
 * Stale write-protect faults.  A fault the handler has read stays in its
 * hands after the faulting thread was woken by someone else (another
 * fault on the page resolved first: every waiter on the range wakes; an
 * unread fault of a woken thread vanishes from the queue instead).  If the
 * page was then protected again for a new dependency (a clone), handling
 * the old fault would do copy-on-write work for a write nobody is making:
 * a weak clone made since would lose the page.  So a fault read before the
 * object's last protect pass (rseq < protect_seq, both under cow_lock) is
 * only woken: its thread, if it is still waiting, writes again and faults
 * afresh.  Protect passes come with new dependencies only, so this costs
 * one extra round trip per object and clone at most.
 */
int64_t vmo__obj_write_fault(vmo_t *o, uint64_t pg, uint64_t n, bool dense,
			     uint64_t rseq, int fd, uintptr_t addr)
{
	/* A FILLING page is installed but not yet settled by its filler,
	 * which needs the space lock we hold: the caller waits for it
	 * without locks (-EAGAIN) and comes back. */
	bool fam = __atomic_load_n(&o->fam, __ATOMIC_ACQUIRE);
	int64_t k;
	if (fam) {
		/* the copy-on-write work the write needs, first */
		pthread_mutex_lock(&o->pool->cow_lock);
		if (o->protect_seq > rseq) {
			vmo__cow_unlock(o->pool);
			return -ESTALE; /* possibly stale: wake only */
		}
	}
	/* density clustering saves copy-on-write faults only: without
	 * dependents it would just mark unwritten pages dirty and make
	 * copies the object's own, so the guess shrinks back to the page */
	if (dense && !(fam && vmo__cow_has_deps(o))) {
		dense = false;
		n = 1;
	}
	if (fam) {
		pthread_mutex_lock(&o->lock);
		k = wf_run(o, pg, n, dense);
		pthread_mutex_unlock(&o->lock);
		if (k > 0 && vmo__cow_has_deps(o)) {
			int r = vmo__cow_before_write(o, pg, (uint64_t)k);
			if (r) {
				vmo__cow_unlock(o->pool);
				/* -EAGAIN: it waited; others: the thread
				 * faults again and we try again */
				return r == -EAGAIN ? -EAGAIN : 0;
			}
		}
		if (k <= 0) {
			vmo__cow_unlock(o->pool);
			return k;
		}
		/* no further than the pages whose work was done: a page
		 * filled meanwhile could lengthen the run (and the density
		 * decision is made: cow_lock kept the count) */
		n = (uint64_t)k;
		dense = false;
	}
	pthread_mutex_lock(&o->lock);
	k = wf_run(o, pg, n, dense);
	struct vmo__pref refs[64];
	size_t nrefs = 0;
	for (int64_t i = 0; i < k; i++) {
		uint16_t c = vmo__pt_get(&o->pt, pg + (uint64_t)i), nv = c;
		if (fam && (c & PG_HASREF) && nrefs == 64) {
			/* the references to drop after the locks are full:
			 * the run ends here (the rest faults again) */
			k = i;
			break;
		}
		if (o->track)
			nv |= PG_DIRTY;
		if (fam) {
			/* the copy-on-write work is done: writable until
			 * something new depends on the page; and a copy
			 * written is the clone's own */
			nv |= PG_WPOFF;
			nv &= (uint16_t)~(PG_COPY | PG_HASREF);
			if (c & PG_HASREF)
				refs[nrefs++] = vmo__pt_ref(&o->pt, pg + (uint64_t)i);
			if (!(c & PG_WPOFF))
				vmo__obj_log_wpoff(o, pg + (uint64_t)i, 1);
		}
		if (nv != c)
			vmo__pg_set(o, pg + (uint64_t)i, c, nv);
	}
	int64_t r = k;
	if (k > 0) {
		/* unprotect (and wake) under obj->lock: a write-back that
		 * cleans the page and protects it again must come wholly
		 * before or after */
		struct uffdio_writeprotect wp = {
			.range = {addr, (uint64_t)k * PS}, .mode = 0};
		if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) != 0)
			r = errno == EAGAIN ? 0 : -errno;
	}
	pthread_mutex_unlock(&o->lock);
	if (fam) {
		vmo__cow_put_refs(refs, nrefs);
		vmo__cow_unlock(o->pool);
	}
	return r;
}

void vmo__obj_fill_done_own(vmo_t *o, uint64_t pg)
{
	struct vmo__pref ref = {NULL, 0};
	pthread_mutex_lock(&o->lock);
	uint16_t b = vmo__pt_get(&o->pt, pg);
	if (b & PG_HASREF)
		ref = vmo__pt_ref(&o->pt, pg);
	uint16_t nv = (uint16_t)(PG_RESIDENT | PG_WPOFF |
				 (b & (PG_REF | PG_SLOT | PG_DIRTY)));
	if (o->track)
		nv |= PG_DIRTY;
	vmo__pg_set(o, pg, b, nv);
	vmo__obj_log_wpoff(o, pg, 1);
	vmo__obj_wake(o);
	pthread_mutex_unlock(&o->lock);
	if (ref.node)
		vmo__cow_put_refs(&ref, 1);
}

void vmo__obj_count_filled(vmo_t *o, int64_t k)
{
	ATOMIC_ADD(&o->st_filled, (uint64_t)k);
	ATOMIC_ADD(&o->pool->st_filled, (uint64_t)k);
}

int vmo__obj_swap_read(vmo_t *o, uint64_t pg, uint64_t k, void *buf)
{
	struct vmo__swap *sw = o->pool->swap;
	uint32_t slots[64];
	uint64_t done = 0;
	while (done < k) {
		uint64_t n = MIN(k - done, 64);
		pthread_mutex_lock(&o->lock);
		for (uint64_t i = 0; i < n; i++)
			slots[i] = vmo__pt_slot(&o->pt, pg + done + i);
		pthread_mutex_unlock(&o->lock);
		/* consecutive slots are read with one call: pages evicted
		 * together in object order come back together */
		for (uint64_t i = 0; i < n;) {
			uint64_t j = i + 1;
			while (j < n && slots[j] == slots[i] + (j - i))
				j++;
			if (vmo__swap_read(sw, slots[i],
					   (char *)buf + (done + i) * PS,
					   (uint32_t)(j - i)))
				return -EIO;
			i = j;
		}
		done += n;
	}
	ATOMIC_ADD(&o->pool->st_swap_ins, k);
	return 0;
}

int vmo__memfd_store(vmo_t *o, uint64_t pg, uint64_t k, const void *buf)
{
	return vmo__sys_pwrite_full(o->memfd, buf, k * PS, pg * PS);
}

static int fill_plain(vmo_t *o, uint64_t pg, uint64_t k, bool swapin);

/* Fill a claimed run of class cls straight into the memfd (no mapping
 * involved).  *ok gets the pages filled from pg (all of them on success;
 * a prefix when a COW fill meets a dropped or unreadable page). */
static int fill_run_memfd(vmo_t *o, uint64_t pg, uint64_t k, int cls,
			  uint64_t *ok)
{
	bool swapin = cls == VMO__RUN_SWAPIN;
	*ok = 0;
	if (cls == VMO__RUN_COW) {
		void *buf = vmo__scratch(VMO__SCRATCH_SHARED, k * PS);
		if (!buf)
			return -ENOMEM;
		int err;
		uint64_t got = vmo__cow_read_behind(o, pg, k, buf, true, &err);
		int r = got ? vmo__memfd_store(o, pg, got, buf) : 0;
		if (!r)
			*ok = got;
		return r ? r : err;
	}
	int r = fill_plain(o, pg, k, swapin);
	if (!r)
		*ok = k;
	return r;
}

static int fill_plain(vmo_t *o, uint64_t pg, uint64_t k, bool swapin)
{
	if (swapin) {
		void *buf = vmo__scratch(VMO__SCRATCH_FILL, k * PS);
		if (!buf)
			return -ENOMEM;
		int r = vmo__obj_swap_read(o, pg, k, buf);
		return r ? r : vmo__memfd_store(o, pg, k, buf);
	}
	if (vmo__obj_zero_fill(o)) {
		/* fallocate allocates zeroed frames without copying */
		if (fallocate(o->memfd, 0, (off_t)(pg * PS), (off_t)(k * PS)))
			return -errno;
		return 0;
	}
	void *buf = vmo__scratch(VMO__SCRATCH_FILL, k * PS);
	if (!buf)
		return -ENOMEM;
	int r = vmo__pager_read(o, pg, k, buf);
	if (r == 0)
		r = vmo__memfd_store(o, pg, k, buf);
	return r;
}

/* Make pages [pg, end) resident.  No lock held. */
int vmo__obj_ensure_resident(vmo_t *o, uint64_t pg, uint64_t end)
{
	while (pg < end) {
		uint64_t k;
		bool waited = false;
		int cls = vmo__obj_claim(o, pg, MIN(end - pg, RUN_PAGES), &k,
					 &waited);
		if (cls < 0)
			return cls;
		if (cls == VMO__RUN_DROPPED)
			return -ENODATA;
		if (cls == VMO__RUN_FILL || cls == VMO__RUN_SWAPIN ||
		    cls == VMO__RUN_COW) {
			uint64_t ok;
			int r = fill_run_memfd(o, pg, k, cls, &ok);
			if (ok) {
				vmo__obj_count_filled(o, (int64_t)ok);
				vmo__obj_fill_done(o, pg, ok, true, NULL);
			}
			if (ok < k)
				vmo__obj_fill_done(o, pg + ok, k - ok, false, NULL);
			if (r)
				return r == -ENOMEM || r == -ENODATA ? r : -EIO;
		}
		pg += k;
	}
	return 0;
}

/* ------------------------------------------------------ argument checks */

static int check_bytes(const vmo_t *o, uint64_t off, uint64_t len)
{
	if (off > o->size || len > o->size - off)
		return -ERANGE;
	return 0;
}

static int check_pages(const vmo_t *o, uint64_t off, uint64_t len)
{
	if (off % PS || len % PS || len == 0)
		return -EINVAL;
	return check_bytes(o, off, len);
}

/* ------------------------------------------------------------ read/write */

/* May vmo_read copy page b from the memfd as it is (obj->lock held)?
 * Anonymous holes and zero fills read as zeros; a page coming back from
 * swap does not. */
static bool readable_by_read(const vmo_t *o, uint16_t b)
{
	if (vmo__pg_readable(b))
		return true;
	if (!vmo__obj_zero_fill(o))
		return false;
	return PG_STATE(b) == PG_ABSENT ||
	       (PG_STATE(b) == PG_FILLING && !(b & (PG_SLOT | PG_HASREF)));
}

int vmo_read(vmo_t *o, uint64_t off, void *buf, size_t len)
{
	if (!o)
		return -EINVAL;
	if (vmo__obj_stale(o))
		return -ECHILD;
	if (!buf && len)
		return -EINVAL;
	int r = check_bytes(o, off, len);
	if (r || !len)
		return r;
	char *scratch = vmo__scratch(VMO__SCRATCH_IO, IO_CHUNK);
	if (!scratch)
		return -ENOMEM;
	/*
	 * Copy the readable prefix of each chunk under obj->lock (so a
	 * decommit or an eviction is either wholly before or after it), and
	 * fill what is missing at most max_fill pages at a time with no lock
	 * held.  Copying what is there before filling more guarantees
	 * progress under a budget smaller than the chunk: pages filled for
	 * us cannot all be evicted again before we look.  Anonymous holes
	 * read as zeros (pread of a memfd hole returns zeros and allocates
	 * nothing); swapped pages are brought back.
	 */
	uint64_t pos = off, end = off + len;
	while (pos < end) {
		uint64_t cend = MIN(end, (pos & ~(PS - 1)) + IO_CHUNK);
		uint64_t pg = pos / PS, pge = (cend + PS - 1) / PS;
		pthread_mutex_lock(&o->lock);
		uint64_t p = pg;
		for (; p < pge; p++) {
			uint16_t b = vmo__pt_get(&o->pt, p);
			if (!readable_by_read(o, b))
				break;
			if (vmo__pg_readable(b) && !(b & PG_REF))
				(void)vmo__pg_set(o, p, b, b | PG_REF);
		}
		if (p == pg) {
			/* page pg is missing: fill a run from it */
			uint64_t q = p + 1;
			uint16_t b = vmo__pt_get(&o->pt, p);
			uint16_t st = PG_STATE(b);
			if (st == PG_DROPPED) {
				pthread_mutex_unlock(&o->lock);
				return -ENODATA;
			}
			bool cow = vmo__cow_backed(o, b);
			uint64_t lim = MIN(pge, p + MIN(o->pool->max_fill,
							(uint64_t)RUN_PAGES));
			while (q < lim &&
			       PG_STATE(vmo__pt_get(&o->pt, q)) == st)
				q++;
			pthread_mutex_unlock(&o->lock);
			if (cow) {
				/* what it shares is read where it is: a
				 * clone read in full costs no memory */
				int err;
				uint64_t got = vmo__cow_read_behind(
					o, p, q - p, scratch, false, &err);
				uint64_t ce = MIN(cend, (p + got) * PS);
				if (ce > pos) {
					memcpy((char *)buf + (pos - off),
					       scratch + (pos - p * PS), ce - pos);
					pos = ce;
				}
				if (got < q - p)
					return err;
				continue;
			}
			r = vmo__obj_ensure_resident(o, p, q);
			if (r)
				return r;
			continue;
		}
		uint64_t ce = MIN(cend, p * PS);
		size_t got;
		r = vmo__sys_pread_full(o->memfd, scratch, ce - pos, pos, &got);
		if (!r && got < ce - pos)
			memset(scratch + got, 0, ce - pos - got);
		pthread_mutex_unlock(&o->lock);
		if (r)
			return r;
		memcpy((char *)buf + (pos - off), scratch, ce - pos);
		pos = ce;
	}
	return 0;
}

/* Must page b, partly overwritten, be filled first?  A swapped page, an
 * absent page of a pager-backed object, a page a clone shares. */
static bool needs_fill_before_write(const vmo_t *o, uint16_t b)
{
	return PG_STATE(b) == PG_SWAPPED || PG_STATE(b) == PG_DROPPED ||
	       vmo__cow_backed(o, b) ||
	       (PG_STATE(b) == PG_ABSENT && !vmo__obj_zero_fill(o));
}

/* Is page pg of the object only partly covered by [pos, end)? */
static bool partial(uint64_t pg, uint64_t pos, uint64_t end)
{
	return pos > pg * PS || end < (pg + 1) * PS;
}

/* Is page word b not in the memfd (a write must claim it first)? */
static bool write_claims(uint16_t b)
{
	uint16_t st = PG_STATE(b);
	return st == PG_ABSENT || st == PG_SWAPPED || st == PG_SHARED ||
	       st == PG_DROPPED;
}

/* Locks of a write chunk: cow_lock (family objects) then obj->lock. */
static void wlock(vmo_t *o, bool fam)
{
	if (fam)
		pthread_mutex_lock(&o->pool->cow_lock);
	pthread_mutex_lock(&o->lock);
}

static void wunlock(vmo_t *o, bool fam)
{
	pthread_mutex_unlock(&o->lock);
	if (fam)
		vmo__cow_unlock(o->pool);
}

int vmo_write(vmo_t *o, uint64_t off, const void *buf, size_t len)
{
	if (!o)
		return -EINVAL;
	if (vmo__obj_stale(o))
		return -ECHILD;
	if (!buf && len)
		return -EINVAL;
	int r = check_bytes(o, off, len);
	if (r || !len)
		return r;
	if (!o->writable)
		return -EACCES;
	char *scratch = vmo__scratch(VMO__SCRATCH_IO, IO_CHUNK);
	if (!scratch)
		return -ENOMEM;
	uint64_t pos = off, end = off + len;
	while (pos < end) {
		/* An unaligned head page is a chunk of its own, so that no
		 * chunk needs two pages filled before it can be written: a
		 * budget of a few pages could evict one while filling the
		 * other, forever. */
		uint64_t cend = MIN(end, (pos & ~(PS - 1)) +
					      (pos % PS ? PS : IO_CHUNK));
		uint64_t pg = pos / PS, pge = (cend + PS - 1) / PS;
		/* copy in first, with no lock held: buf may be a mapping */
		memcpy(scratch, (const char *)buf + (pos - off), cend - pos);
		/* a family object's write changes what it shows: the
		 * copy-on-write work comes first, under cow_lock (clone.c) */
		bool fam = __atomic_load_n(&o->fam, __ATOMIC_ACQUIRE);
		bool prepared = false;
		wlock(o, fam);
		for (;;) {
			/* writers wait for every busy page of the chunk */
			uint64_t busy = pge, pfill = pge;
			for (uint64_t p = vmo__pt_next_used(&o->pt, pg, pge);
			     p < pge; p = vmo__pt_next_used(&o->pt, p + 1, pge)) {
				uint16_t s = PG_STATE(vmo__pt_get(&o->pt, p));
				if (s == PG_FILLING || s == PG_WRITEBACK ||
				    s == PG_EVICTING) {
					busy = p;
					break;
				}
			}
			if (busy < pge) {
				if (!fam) {
					vmo__obj_wait(o);
					continue;
				}
				/* its owner may need cow_lock to finish */
				wunlock(o, fam);
				vmo__obj_wait_settled(o, busy);
				wlock(o, fam);
				prepared = false;
				continue;
			}
			/* a partly written page whose old content is not in
			 * memory must be filled before the write */
			uint64_t ends[2] = {pg, pge - 1};
			for (int i = 0; i < 2; i++)
				if (partial(ends[i], pos, cend) &&
				    needs_fill_before_write(
					    o, vmo__pt_get(&o->pt, ends[i])))
					pfill = ends[i];
			if (pfill < pge) {
				wunlock(o, fam);
				r = vmo__obj_ensure_resident(o, pfill, pfill + 1);
				if (r)
					return r;
				wlock(o, fam);
				prepared = false;
				continue;
			}
			if (fam && !prepared && vmo__cow_has_deps(o)) {
				pthread_mutex_unlock(&o->lock);
				r = vmo__cow_before_write(o, pg, pge - pg);
				pthread_mutex_lock(&o->lock);
				if (r && r != -EAGAIN) {
					wunlock(o, fam);
					return r;
				}
				prepared = r == 0;
				continue; /* look again: locks were dropped */
			}
			break;
		}
		/* make sure every leaf exists before touching the memfd, so
		 * that marking pages cannot fail after the write */
		/* (a swapped page overwritten whole keeps its slot until the
		 * write succeeded: the slot is its only copy; a shared page
		 * its reference) */
		uint16_t orig[IO_CHUNK / VMO_PAGE_SIZE];
		struct vmo__pref refs[IO_CHUNK / VMO_PAGE_SIZE];
		size_t nrefs = 0;
		for (uint64_t p = pg; p < pge; p++)
			orig[p - pg] = vmo__pt_get(&o->pt, p);
		for (uint64_t p = pg; p < pge && !r; p++) {
			uint16_t b = orig[p - pg];
			if (write_claims(b))
				r = vmo__pg_set(o, p, b,
						(uint16_t)(PG_FILLING |
							   (b & (PG_SLOT |
								 PG_HASREF))));
		}
		if (!r)
			r = vmo__sys_pwrite_full(o->memfd, scratch, cend - pos,
						 pos);
		for (uint64_t p = pg; p < pge; p++) {
			uint16_t b = vmo__pt_get(&o->pt, p);
			bool claimed = write_claims(orig[p - pg]);
			if (claimed && PG_STATE(b) != PG_FILLING)
				continue; /* (its claim failed: untouched) */
			if (r) {
				if (claimed)
					vmo__pg_set(o, p, b, orig[p - pg]);
				continue;
			}
			if (claimed)
				protect_new_pages(o, p, 1, NULL);
			/* the object's own content now */
			if (b & PG_HASREF)
				refs[nrefs++] = vmo__pt_ref(&o->pt, p);
			uint16_t keep = claimed ? 0
					       : (uint16_t)(b & ~(PG_COPY |
								  PG_HASREF));
			if (claimed || b)
				vmo__pg_set(o, p, b,
					    (uint16_t)((claimed ? PG_RESIDENT
								: keep) |
						       PG_DIRTY | PG_REF));
		}
		vmo__obj_wake(o);
		pthread_mutex_unlock(&o->lock);
		if (nrefs)
			vmo__cow_put_refs(refs, nrefs);
		if (fam)
			vmo__cow_unlock(o->pool);
		if (r)
			return r;
		vmo__pool_charge(o->pool);
		pos = cend;
	}
	return 0;
}

/* -------------------------------------------------- commit and decommit */

int vmo_commit(vmo_t *o, uint64_t off, uint64_t len)
{
	if (!o)
		return -EINVAL;
	if (vmo__obj_stale(o))
		return -ECHILD;
	int r = check_pages(o, off, len);
	if (r)
		return r;
	return vmo__obj_ensure_resident(o, off / PS, (off + len) / PS);
}

/* Mark written pages reported by PAGEMAP_SCAN dirty. */
struct harvest {
	vmo_t *obj;
	struct vmo__mapping *m;
};

static void harvest_cb(void *arg, uintptr_t s, uintptr_t e)
{
	struct harvest *h = arg;
	vmo_t *o = h->obj;
	for (uintptr_t a = s; a < e; a += PS) {
		uint64_t pg = (a - h->m->addr + h->m->off) / PS;
		uint16_t b = vmo__pt_get(&o->pt, pg);
		/* FILLING counts: a page is mapped (and may be written)
		 * before its filler marks it RESIDENT.  Pages not in memory
		 * (ABSENT, SWAPPED) cannot have been written: an empty entry
		 * over them says nothing */
		if (vmo__pg_counts_resident(b) && !(b & PG_DIRTY))
			vmo__pg_set(o, pg, b, b | PG_DIRTY);
	}
}

static void harvest_run(vmo_t *o, struct vmo__mapping *m, uint64_t p,
			uint64_t q)
{
	struct harvest h = {o, m};
	uintptr_t a = m->addr + (p * PS - m->off), e = a + (q - p) * PS;
	if (vmo__sys_scan_written(a, e, harvest_cb, &h) != 0)
		/* cannot tell which pages were written: count them all */
		harvest_cb(&h, a, e);
}

void vmo__obj_harvest_locked(vmo_t *o, struct vmo__mapping *m,
			     uintptr_t addr, uint64_t len)
{
	if (!m->track_wp)
		return;
	/* Only pages the object holds can be dirty; scanning just those
	 * keeps the scan (and the markers it installs) proportional to the
	 * resident set, not to the size of a sparse mapping. */
	uint64_t pg = (addr - m->addr + m->off) / PS;
	for_each_used_run(o, pg, pg + len / PS, harvest_run, m);
}

void vmo__obj_harvest_pages_locked(vmo_t *o, struct vmo__mapping *m,
				   uint64_t pg, uint64_t n)
{
	/* m may have been trimmed or split since the caller looked */
	uint64_t lo = MAX(pg, m->off / PS);
	uint64_t hi = MIN(pg + n, (m->off + m->len) / PS);
	if (lo < hi)
		for_each_used_run(o, lo, hi, harvest_run, m);
}

/* Mark every page the object holds in [pg, end) dirty.  obj->lock held. */
static void mark_dirty_locked(vmo_t *o, uint64_t pg, uint64_t end)
{
	for (uint64_t p = vmo__pt_next_used(&o->pt, pg, end); p < end;
	     p = vmo__pt_next_used(&o->pt, p + 1, end)) {
		uint16_t b = vmo__pt_get(&o->pt, p);
		if (vmo__pg_counts_resident(b) && !(b & PG_DIRTY))
			vmo__pg_set(o, p, b, b | PG_DIRTY);
	}
}

void vmo__obj_mark_dirty(vmo_t *o, uint64_t pg, uint64_t end)
{
	pthread_mutex_lock(&o->lock);
	mark_dirty_locked(o, pg, end);
	pthread_mutex_unlock(&o->lock);
}

/* Bring the dirty bits of pages [pg, end) up to date from every mapping.
 * obj->lock held. */
static void harvest_range(vmo_t *o, uint64_t pg, uint64_t end)
{
	uint64_t s = pg * PS, e = end * PS;
	bool any_writable = false;
	for (struct vmo__mapping *m = o->maps; m; m = m->obj_next) {
		if (m->prot & PROT_WRITE)
			any_writable = true;
		uint64_t ms = MAX(s, m->off), me = MIN(e, m->off + m->len);
		if (ms >= me)
			continue;
		if (m->track_wp)
			vmo__obj_harvest_locked(o, m, m->addr + (ms - m->off),
						me - ms);
	}
	if (o->wmapped) {
		/* no write log: every resident page may have been written */
		mark_dirty_locked(o, pg, end);
		if (!any_writable && pg == 0 && end == o->npages)
			o->wmapped = false;
	}
}

/* Write back dirty pages of [pg, end).  No lock held on entry. */
int vmo__obj_sync_range(vmo_t *o, uint64_t pg, uint64_t end)
{
	int err = 0;
	char *buf = vmo__scratch(VMO__SCRATCH_FILL, RUN_PAGES * PS);
	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&o->lock);
	harvest_range(o, pg, end);
	uint64_t p = pg;
	while ((p = vmo__pt_next_used(&o->pt, p, end)) < end) {
		uint16_t b = vmo__pt_get(&o->pt, p);
		if (PG_STATE(b) == PG_WRITEBACK || PG_STATE(b) == PG_EVICTING ||
		    (PG_STATE(b) == PG_FILLING && (b & PG_DIRTY))) {
			/* another sync or an evictor owns it, or its filler
			 * has not finished: let them end */
			vmo__obj_wait(o);
			continue;
		}
		if (!(b & PG_DIRTY) || PG_STATE(b) != PG_RESIDENT) {
			p++;
			continue;
		}
		/* a run of dirty resident pages */
		uint64_t k = 0;
		while (k < RUN_PAGES && p + k < end) {
			uint16_t c = vmo__pt_get(&o->pt, p + k);
			if (PG_STATE(c) != PG_RESIDENT || !(c & PG_DIRTY))
				break;
			k++;
		}
		/* sync-set mappings see a page's next write only if it is
		 * protected again before it is cleaned */
		if (vmo__obj_protect_sync(o, p, p + k) != 0) {
			pthread_mutex_unlock(&o->lock);
			sched_yield();
			pthread_mutex_lock(&o->lock);
			continue;
		}
		for (uint64_t i = 0; i < k; i++) {
			uint16_t c = vmo__pt_get(&o->pt, p + i);
			vmo__pg_set(o, p + i, c,
			       (uint16_t)(PG_WRITEBACK | (c & PG_COPY)));
		}
		size_t got = 0;
		int r = vmo__sys_pread_full(o->memfd, buf, k * PS, p * PS, &got);
		pthread_mutex_unlock(&o->lock);
		if (!r)
			r = vmo__pager_write(o, p, k, buf);
		pthread_mutex_lock(&o->lock);
		for (uint64_t i = 0; i < k; i++) {
			uint16_t c = vmo__pt_get(&o->pt, p + i);
			vmo__pg_set(o, p + i, c,
			       PG_RESIDENT | (r ? PG_DIRTY : 0) | (c & PG_DIRTY));
		}
		vmo__obj_wake(o);
		if (r && !err)
			err = -EIO;
		p += k;
	}
	/* a write-back failed at eviction since the last sync: report it
	 * once, here */
	if (o->wb_error && !err)
		err = o->wb_error;
	o->wb_error = 0;
	pthread_mutex_unlock(&o->lock);
	return err;
}

int vmo_sync(vmo_t *o, uint64_t off, uint64_t len)
{
	if (!o)
		return -EINVAL;
	if (vmo__obj_stale(o))
		return -ECHILD;
	int r = check_pages(o, off, len);
	if (r || !o->writeback)
		return r;
	return vmo__obj_sync_range(o, off / PS, (off + len) / PS);
}

/* Does decommitting page b change what o shows there?  Content of its
 * own goes (anonymous: zeros; a clone: its parent again; a pager-backed
 * object: the pager's copy, which only differs for dirty pages); a COPY
 * shows what is behind it anyway. */
static bool decommit_changes(const vmo_t *o, uint16_t b)
{
	uint16_t st = PG_STATE(b);
	/* (a copy of a reference is content vmo_copy gave it: its own) */
	if (st == PG_ABSENT || st == PG_DROPPED ||
	    ((b & PG_COPY) && !(b & PG_HASREF)))
		return false;
	if (st == PG_SHARED || (b & PG_HASREF) || o->kind == VMO_KIND_ANON ||
	    o->kind == VMO_KIND_CLONE)
		return true;
	if (!o->writable)
		return false; /* it can only ever show its pager's copy */
	/* without dirty tracking a page written through a mapping looks
	 * clean: any page in memory may differ from the pager's; and a
	 * page with a swap slot differs from it (the slot is its backing
	 * copy, and decommit drops it) */
	return !o->track || (b & (PG_DIRTY | PG_SLOT)) || st == PG_SWAPPED;
}

/* Copy-on-write work before a decommit of [pg, end): runs of pages whose
 * view changes.  obj->lock and cow_lock held; obj->lock is dropped around
 * the work.  0, -EAGAIN (look again) or an errno. */
static int decommit_prepare(vmo_t *o, uint64_t pg, uint64_t end)
{
	for (uint64_t p = vmo__pt_next_used(&o->pt, pg, end); p < end;) {
		if (!decommit_changes(o, vmo__pt_get(&o->pt, p))) {
			p = vmo__pt_next_used(&o->pt, p + 1, end);
			continue;
		}
		uint64_t q = p + 1;
		while (q < end && decommit_changes(o, vmo__pt_get(&o->pt, q)))
			q++;
		pthread_mutex_unlock(&o->lock);
		int r = vmo__cow_before_write(o, p, q - p);
		pthread_mutex_lock(&o->lock);
		if (r)
			return r;
		p = vmo__pt_next_used(&o->pt, q, end);
	}
	return 0;
}

int vmo_decommit(vmo_t *o, uint64_t off, uint64_t len)
{
	if (!o)
		return -EINVAL;
	if (vmo__obj_stale(o))
		return -ECHILD;
	int r = check_pages(o, off, len);
	if (r)
		return r;
	uint64_t pg = off / PS, end = (off + len) / PS;
	bool prepared = false;
	for (;;) {
		if (o->writeback && (r = vmo__obj_sync_range(o, pg, end)) != 0)
			return r;
		bool fam = __atomic_load_n(&o->fam, __ATOMIC_ACQUIRE);
		wlock(o, fam);
		/* busy pages finish first; then nothing may be dirty */
		bool retry = false;
		if (o->writeback)
			harvest_range(o, pg, end);
		for (uint64_t p = vmo__pt_next_used(&o->pt, pg, end); p < end;
		     p = vmo__pt_next_used(&o->pt, p + 1, end)) {
			uint16_t b = vmo__pt_get(&o->pt, p);
			if (PG_STATE(b) == PG_FILLING ||
			    PG_STATE(b) == PG_WRITEBACK ||
			    PG_STATE(b) == PG_EVICTING) {
				if (fam) {
					/* its owner may need cow_lock */
					wunlock(o, fam);
					vmo__obj_wait_settled(o, p);
					wlock(o, fam);
				} else {
					vmo__obj_wait(o);
				}
				retry = true;
				break;
			}
			if (o->writeback && (b & PG_DIRTY)) {
				retry = true;
				break;
			}
		}
		if (!retry && fam && !prepared && vmo__cow_has_deps(o)) {
			r = decommit_prepare(o, pg, end);
			if (r && r != -EAGAIN) {
				wunlock(o, fam);
				return r;
			}
			prepared = r == 0;
			retry = true; /* look again: locks were dropped */
		}
		if (retry) {
			wunlock(o, fam);
			continue;
		}
		if (fallocate(o->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)off, (off_t)len) != 0) {
			r = -errno;
			wunlock(o, fam);
			return r;
		}
		uint64_t n = 0;
		struct vmo__pref refs[64];
		size_t nrefs = 0;
		for (uint64_t p = vmo__pt_next_used(&o->pt, pg, end); p < end;
		     p = vmo__pt_next_used(&o->pt, p + 1, end)) {
			uint16_t b = vmo__pt_get(&o->pt, p), nv = PG_ABSENT;
			if (st_resident(b))
				n++;
			if (PG_STATE(b) == PG_DROPPED)
				continue;
			/* what vmo_copy gave it (a reference, or a copy of
			 * one) was its own content: it goes too */
			if (b & PG_HASREF)
				refs[nrefs++] = vmo__pt_ref(&o->pt, p);
			/* a weak clone's own page has nothing to go back to
			 * (what it showed before may be gone from its
			 * source) */
			if (o->ckind == VMO__CK_WEAK && PG_STATE(b) != PG_ABSENT &&
			    (!(b & PG_COPY) || (b & PG_HASREF)))
				nv = PG_DROPPED;
			vmo__pg_set(o, p, b, nv);
			if (nrefs == 64) {
				pthread_mutex_unlock(&o->lock);
				vmo__cow_put_refs(refs, nrefs);
				nrefs = 0;
				pthread_mutex_lock(&o->lock);
			}
		}
		pthread_mutex_unlock(&o->lock);
		if (nrefs)
			vmo__cow_put_refs(refs, nrefs);
		if (fam)
			vmo__cow_unlock(o->pool);
		ATOMIC_ADD(&o->st_decommitted, n);
		return 0;
	}
}

/* ------------------------------------------------------------- eviction */

/*
 * Eviction of one batch of one object (the clock that picks objects and
 * decides how much to evict lives in reclaim.c).
 *
 *   1. Under obj->lock the hand walks resident pages from o->hand_pg: a
 *      referenced page loses PG_REF and its page-table entries (so that
 *      its next use faults, MINOR, and sets PG_REF again: the reference
 *      sample); an unreferenced one becomes a victim, EVICTING.  Busy
 *      pages and pages of VMO_MAP_LOCKED mappings are passed over.
 *   2. Victims are zapped from every mapping, and only then is the write
 *      log harvested: a zapped entry keeps the kernel's record of a write
 *      (an unwritten one becomes a write-protect marker, a written one an
 *      empty entry that the scan reports), and nobody can write an
 *      EVICTING page any more (faults on it wait), so the DIRTY bits are
 *      exact from here on.
 *   3. Dirty victims are saved with obj->lock dropped: written back to the
 *      pager (write-back objects) or to swap slots allocated as one run
 *      (the rest).  A failed write-back, or no swap slot, puts the page
 *      back RESIDENT and DIRTY: a page is never released while its only
 *      copy is in memory.
 *   4. Under obj->lock again the saved and clean victims' frames are
 *      released (hole punched: every mapping loses them) and they become
 *      ABSENT (refetched from the pager or zeros) or SWAPPED.
 */
#define EVICT_MAX 128u  /* victims per batch */
#define SCAN_MAX 2048u  /* resident pages looked at per call */
#define REFS_MAX 512u   /* second chances given per call */
#define ZAP_IOV 128u

static bool page_locked(const vmo_t *o, uint64_t pg)
{
	for (struct vmo__mapping *m = o->maps; m; m = m->obj_next)
		if (m->locked && pg * PS >= m->off && pg * PS < m->off + m->len)
			return true;
	return false;
}

struct zapper {
	struct iovec iov[ZAP_IOV];
	size_t n;
};

static void zap_add(struct zapper *z, uintptr_t a, size_t len)
{
	if (z->n && (uintptr_t)z->iov[z->n - 1].iov_base +
				    z->iov[z->n - 1].iov_len == a) {
		z->iov[z->n - 1].iov_len += len;
		return;
	}
	if (z->n == ZAP_IOV) {
		vmo__sys_zap(z->iov, z->n);
		z->n = 0;
	}
	z->iov[z->n].iov_base = (void *)a;
	z->iov[z->n].iov_len = len;
	z->n++;
}

/* Drop the page-table entries of pages pgs[0..n) (ascending) in every
 * mapping of o.  obj->lock held (the mapping list and its ranges are
 * stable, and each range is still ours: unmap unlinks a mapping before
 * its addresses change). */
static void zap_pages(vmo_t *o, const uint64_t *pgs, size_t n)
{
	struct zapper z;
	z.n = 0;
	for (struct vmo__mapping *m = o->maps; m; m = m->obj_next) {
		uint64_t lo = m->off / PS, hi = (m->off + m->len) / PS;
		for (size_t i = 0; i < n; i++)
			if (pgs[i] >= lo && pgs[i] < hi)
				zap_add(&z, m->addr + (pgs[i] * PS - m->off),
					PS);
	}
	if (z.n)
		vmo__sys_zap(z.iov, z.n);
}

void vmo__obj_zap(vmo_t *o, uint64_t pg, uint64_t n)
{
	uint64_t pgs[64];
	while (n) {
		size_t k = (size_t)MIN(n, (uint64_t)64);
		for (size_t i = 0; i < k; i++)
			pgs[i] = pg + i;
		zap_pages(o, pgs, k);
		pg += k;
		n -= k;
	}
}

/* Harvest the write log of pages pgs[0..n) (ascending) from every
 * tracked mapping; without a log, every page of a writably mapped object
 * counts as written.  obj->lock held. */
static void harvest_pages(vmo_t *o, const uint64_t *pgs, size_t n)
{
	for (struct vmo__mapping *m = o->maps; m; m = m->obj_next) {
		if (!m->track_wp)
			continue;
		uint64_t lo = m->off / PS, hi = (m->off + m->len) / PS;
		for (size_t i = 0; i < n;) {
			if (pgs[i] < lo || pgs[i] >= hi) {
				i++;
				continue;
			}
			size_t j = i + 1;
			while (j < n && pgs[j] == pgs[i] + (j - i) && pgs[j] < hi)
				j++;
			harvest_run(o, m, pgs[i], pgs[i] + (j - i));
			i = j;
		}
	}
	if (o->wmapped)
		for (size_t i = 0; i < n; i++) {
			uint16_t b = vmo__pt_get(&o->pt, pgs[i]);
			if (!(b & PG_DIRTY))
				vmo__pg_set(o, pgs[i], b, b | PG_DIRTY);
		}
}

/* Put a victim back: resident, content kept, referenced (so the hand does
 * not retry it at once).  obj->lock held. */
static void evict_undo(vmo_t *o, uint64_t pg)
{
	uint16_t b = vmo__pt_get(&o->pt, pg);
	vmo__pg_set(o, pg, b,
		    (uint16_t)(PG_RESIDENT | PG_REF |
			       (b & (PG_DIRTY | PG_SLOT | PG_COPY | PG_HASREF |
				     PG_STALE))));
}

/* What an evicted (released) page becomes: its slot's, what it shares,
 * or refetched from its pager (a clone's parent).  A clone's copy of a
 * page its source changed meanwhile (STALE) is gone for good. */
static uint16_t evicted_word(const vmo_t *o, uint16_t b)
{
	if (b & PG_SLOT)
		return PG_SWAPPED | PG_SLOT;
	if (b & PG_STALE)
		return o->ckind == VMO__CK_WEAK ? PG_DROPPED : PG_ABSENT;
	if (b & PG_HASREF)
		return PG_SHARED | PG_HASREF;
	return PG_ABSENT | PG_EVICTED;
}

/* pread victims pgs[0..n) from the memfd into buf, one call per run of
 * consecutive pages.  obj->lock held. */
static int read_victims(vmo_t *o, const uint64_t *pgs, size_t n, char *buf)
{
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && pgs[j] == pgs[i] + (j - i))
			j++;
		size_t got = 0;
		int r = vmo__sys_pread_full(o->memfd, buf + i * PS,
					    (j - i) * PS, pgs[i] * PS, &got);
		if (r)
			return r;
		if (got < (j - i) * PS)
			memset(buf + i * PS + got, 0, (j - i) * PS - got);
		i = j;
	}
	return 0;
}

/* Write dirty victims back to the pager, run by run.  Pages written are
 * appended to keep[].  obj->lock held; dropped around each write. */
static void save_to_pager(vmo_t *o, const uint64_t *dl, size_t nd, char *buf,
			  uint64_t *keep, size_t *nk)
{
	for (size_t i = 0; i < nd;) {
		size_t j = i + 1;
		while (j < nd && dl[j] == dl[i] + (j - i))
			j++;
		int r = read_victims(o, dl + i, j - i, buf);
		pthread_mutex_unlock(&o->lock);
		if (!r)
			r = vmo__pager_write(o, dl[i], j - i, buf);
		pthread_mutex_lock(&o->lock);
		for (size_t x = i; x < j; x++) {
			if (r) {
				evict_undo(o, dl[x]);
				continue;
			}
			uint16_t b = vmo__pt_get(&o->pt, dl[x]);
			vmo__pg_set(o, dl[x], b, b & (uint16_t)~PG_DIRTY);
			keep[(*nk)++] = dl[x];
		}
		if (r) {
			o->wb_error = -EIO;
			ATOMIC_INC(&o->pool->writeback_errors);
		} else {
			ATOMIC_ADD(&o->pool->st_writebacks, j - i);
		}
		i = j;
	}
}

/* Write dirty victims to swap, in runs of contiguous slots.  Pages saved
 * get their slot (and PG_SLOT) and are appended to keep[].  obj->lock
 * held; dropped around each write. */
static void save_to_swap(vmo_t *o, const uint64_t *dl, size_t nd, char *buf,
			 uint64_t *keep, size_t *nk)
{
	vmo_pool_t *pool = o->pool;
	size_t i = 0;
	while (i < nd) {
		uint32_t first = 0;
		uint32_t got = pool->swap ? vmo__swap_alloc(pool->swap,
							    (uint32_t)(nd - i),
							    &first)
					  : 0;
		if (!got) {
			/* swap full (or none): these pages stay */
			ATOMIC_ADD(&pool->st_swap_full, nd - i);
			for (; i < nd; i++)
				evict_undo(o, dl[i]);
			return;
		}
		int r = read_victims(o, dl + i, got, buf);
		pthread_mutex_unlock(&o->lock);
		if (!r)
			r = vmo__swap_write(pool->swap, first, buf, got);
		pthread_mutex_lock(&o->lock);
		for (uint32_t x = 0; x < got; x++) {
			uint64_t pg = dl[i + x];
			if (r || vmo__pt_set_slot(&o->pt, pg, first + x)) {
				vmo__swap_free(pool->swap, first + x);
				evict_undo(o, pg);
				continue;
			}
			uint16_t b = vmo__pt_get(&o->pt, pg);
			vmo__pg_set(o, pg, b,
			       (uint16_t)((b & (uint16_t)~PG_DIRTY) | PG_SLOT));
			keep[(*nk)++] = pg;
		}
		if (!r)
			ATOMIC_ADD(&pool->st_swap_outs, got);
		i += got;
	}
}

static void sort_pages(uint64_t *a, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint64_t v = a[i];
		size_t j = i;
		while (j && a[j - 1] > v) {
			a[j] = a[j - 1];
			j--;
		}
		a[j] = v;
	}
}

uint64_t vmo__obj_evict(vmo_t *o, uint64_t want, uint64_t *scanned,
			bool *wrapped)
{
	vmo_pool_t *pool = o->pool;
	uint64_t vic[EVICT_MAX], dl[EVICT_MAX], rel[EVICT_MAX], refl[REFS_MAX];
	size_t nv = 0, nd = 0, nr = 0, nref = 0;
	uint64_t looked = 0, steps = 0;
	*wrapped = false;
	*scanned = 0;
	char *buf = vmo__scratch(VMO__SCRATCH_EVICT, EVICT_MAX * PS);
	if (!buf)
		return 0;
	want = MIN(want, EVICT_MAX);

	pthread_mutex_lock(&o->lock);
	uint64_t p = o->hand_pg;
	while (nv < want && looked < SCAN_MAX && nref < REFS_MAX &&
	       steps < 16 * SCAN_MAX) {
		p = vmo__pt_next_used(&o->pt, p, o->npages);
		if (p >= o->npages) {
			*wrapped = true;
			p = 0;
			break;
		}
		uint16_t b = vmo__pt_get(&o->pt, p);
		steps++;
		if (PG_STATE(b) != PG_RESIDENT) {
			p++;
			continue;
		}
		looked++;
		if (o->nlocked && page_locked(o, p)) {
			p++;
			continue;
		}
		if (b & PG_REF) {
			vmo__pg_set(o, p, b, b & (uint16_t)~PG_REF);
			refl[nref++] = p++;
			continue;
		}
		if ((b & PG_DIRTY) && !o->writeback && !pool->swap) {
			/* its only copy is here and there is no swap */
			ATOMIC_INC(&pool->st_swap_full);
			p++;
			continue;
		}
		if (p == o->eof_pg) {
			/* bytes past end of file in this page are never
			 * written back: its only copy is in memory */
			p++;
			continue;
		}
		vmo__pg_set(o, p, b,
			    (uint16_t)(PG_EVICTING |
				       (b & (PG_DIRTY | PG_SLOT | PG_COPY |
					     PG_HASREF))));
		vic[nv++] = p++;
	}
	o->hand_pg = p;
	*scanned = looked;
	if (nref) {
		zap_pages(o, refl, nref);
		ATOMIC_ADD(&pool->st_ref_clears, nref);
	}
	if (!nv) {
		pthread_mutex_unlock(&o->lock);
		return 0;
	}
	zap_pages(o, vic, nv);
	harvest_pages(o, vic, nv);

	for (size_t i = 0; i < nv; i++) {
		if (vmo__pt_get(&o->pt, vic[i]) & PG_DIRTY)
			dl[nd++] = vic[i];
		else
			rel[nr++] = vic[i];
	}
	if (nd) {
		if (o->writeback)
			save_to_pager(o, dl, nd, buf, rel, &nr);
		else
			save_to_swap(o, dl, nd, buf, rel, &nr);
	}

	/* release the frames of everything saved or clean */
	sort_pages(rel, nr);
	uint64_t evicted = 0;
	for (size_t i = 0; i < nr;) {
		size_t j = i + 1;
		while (j < nr && rel[j] == rel[i] + (j - i))
			j++;
		bool ok = fallocate(o->memfd,
				    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    (off_t)(rel[i] * PS),
				    (off_t)((j - i) * PS)) == 0;
		/* counted before the pages leave the resident count: a
		 * reader that sees them gone sees them counted */
		if (ok)
			ATOMIC_ADD(&pool->st_evictions, j - i);
		for (size_t x = i; x < j; x++) {
			if (!ok) {
				evict_undo(o, rel[x]);
				continue;
			}
			uint16_t b = vmo__pt_get(&o->pt, rel[x]);
			vmo__pg_set(o, rel[x], b, evicted_word(o, b));
		}
		if (ok)
			evicted += j - i;
		i = j;
	}
	vmo__obj_wake(o);
	pthread_mutex_unlock(&o->lock);
	return evicted;
}

/* VMO_ADV_DONTNEED in a pool with a budget: the range loses its
 * references and the object's hand moves to it, so these pages are the
 * next victims (reclaim.c moves the pool's hand to the object). */
void vmo__obj_make_cold(vmo_t *o, uint64_t pg, uint64_t end)
{
	pthread_mutex_lock(&o->lock);
	for (uint64_t p = vmo__pt_next_used(&o->pt, pg, end); p < end;
	     p = vmo__pt_next_used(&o->pt, p + 1, end)) {
		uint16_t b = vmo__pt_get(&o->pt, p);
		if (b & PG_REF)
			vmo__pg_set(o, p, b, b & (uint16_t)~PG_REF);
	}
	o->hand_pg = pg;
	pthread_mutex_unlock(&o->lock);
}

/* --------------------------------------------------------- mapping list */

static void wp_run(vmo_t *o, struct vmo__mapping *m, uint64_t p, uint64_t q)
{
	(void)o;
	wp_range(m, p * PS, q * PS);
}

void vmo__obj_add_mapping(vmo_t *o, struct vmo__mapping *m)
{
	pthread_mutex_lock(&o->lock);
	m->obj_prev = NULL;
	m->obj_next = o->maps;
	if (o->maps)
		o->maps->obj_prev = m;
	o->maps = m;
	o->nmaps++;
	if (m->locked)
		o->nlocked++;
	if ((m->prot & PROT_WRITE) && o->track && !m->track_wp && !m->sync_wp)
		o->wmapped = true;
	if (m->track_wp)
		for_each_used_run(o, m->off / PS, (m->off + m->len) / PS,
				  wp_run, m);
	pthread_mutex_unlock(&o->lock);
}

void vmo__obj_del_mapping(vmo_t *o, struct vmo__mapping *m)
{
	pthread_mutex_lock(&o->lock);
	vmo__obj_harvest_locked(o, m, m->addr, m->len);
	if (m->obj_prev)
		m->obj_prev->obj_next = m->obj_next;
	else
		o->maps = m->obj_next;
	if (m->obj_next)
		m->obj_next->obj_prev = m->obj_prev;
	o->nmaps--;
	if (m->locked)
		o->nlocked--;
	pthread_mutex_unlock(&o->lock);
}

/* ---------------------------------------------------------------- stats */

int vmo_stats(vmo_t *o, vmo_stats_t *st)
{
	if (!o || !st || st->size < 8)
		return -EINVAL;
	if (vmo__obj_stale(o))
		return -ECHILD;
	vmo_stats_t s;
	memset(&s, 0, sizeof s);
	s.size = (uint32_t)MIN((size_t)st->size, sizeof s);
	s.version = VMO_STATS_VERSION;
	s.size_bytes = o->size;
	pthread_mutex_lock(&o->lock);
	s.resident_pages = o->nresident;
	s.dirty_pages = o->ndirty;
	s.swapped_pages = o->nswapped;
	s.mappings = o->nmaps;
	pthread_mutex_unlock(&o->lock);
	s.faults = ATOMIC_LOAD(&o->st_faults);
	s.pages_filled = ATOMIC_LOAD(&o->st_filled);
	s.pager_reads = ATOMIC_LOAD(&o->st_preads);
	s.pager_read_bytes = ATOMIC_LOAD(&o->st_pread_bytes);
	s.pager_writes = ATOMIC_LOAD(&o->st_pwrites);
	s.pager_write_bytes = ATOMIC_LOAD(&o->st_pwrite_bytes);
	s.pager_errors = ATOMIC_LOAD(&o->st_perrors);
	s.decommitted_pages = ATOMIC_LOAD(&o->st_decommitted);
	memcpy(st, &s, s.size);
	return 0;
}
