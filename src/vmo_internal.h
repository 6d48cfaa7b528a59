/*
 * vmo_internal.h — the structures every module shares, with their lock
 * legend, and the internal entry points between modules.
 *
 * Lock legend used on struct fields:
 *   (c)  constant after creation
 *   (a)  atomic; read and written with __atomic builtins only
 *   (o)  obj->lock
 *   (s)  space->lock (rwlock: read for lookups, write for changes)
 *   (P)  pool->lock
 *   (h)  owned by one handler thread; others read with relaxed atomics
 *
 * Lock order (docs/design.md): space->lock  ->  obj->lock  ->  pool->lock.
 * No lock is held across pager I/O or across a copy to or from user memory
 * that may fault into a libvmo mapping; page busy states (FILLING,
 * WRITEBACK) stand in for the lock there and other parties wait on
 * obj->cv.
 */
#ifndef VMO_INTERNAL_H
#define VMO_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../include/vmo.h"

#define VMO__HIDDEN __attribute__((visibility("hidden")))
#define PS ((uint64_t)VMO_PAGE_SIZE)
#define PAGE_SHIFT 12
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define ATOMIC_INC(p) __atomic_fetch_add((p), 1, __ATOMIC_RELAXED)
#define ATOMIC_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
/* Counters with a single writer: a plain load/store pair, race-free for
 * readers that use ATOMIC_LOAD, and no locked instruction on the hot path. */
#define OWNER_ADD(p, v) \
	__atomic_store_n((p), __atomic_load_n((p), __ATOMIC_RELAXED) + (v), \
			 __ATOMIC_RELAXED)

/* ------------------------------------------------------------ fork guard */


/* Incremented in the child by a pthread_atfork handler.  Every handle
 * records the generation it was created in; a mismatch means "we are a
 * child of the process that created this handle". */
extern VMO__HIDDEN unsigned vmo__fork_gen;
VMO__HIDDEN void vmo__fork_guard_init(void);
VMO__HIDDEN void vmo__space_atfork_child(void);
static inline bool vmo__stale(unsigned gen)
{
	return unlikely(gen != __atomic_load_n(&vmo__fork_gen, __ATOMIC_ACQUIRE));
}

/* ------------------------------------------------------------ page table */

/*
 * Page state, one 16-bit word per page.  The low three bits are the state
 * of the state machine in docs/design.md; the rest are flags.
 *
 *   ABSENT    not in the memfd: the pager (or zeros) supplies it
 *   RESIDENT  in the memfd
 *   FILLING   busy: a filler owns it and is running the pager (or reading
 *             swap)
 *   WRITEBACK busy for writers: its content is being written back; it is
 *             resident and may be read and mapped meanwhile
 *   EVICTING  busy: an evictor owns it; its entries are zapped, its
 *             content is being saved (pager write-back or swap) and its
 *             frame is about to be released.  Nobody maps it; it may be
 *             read under obj->lock (the content is intact until the
 *             evictor's final locked section)
 *   SWAPPED   not in the memfd: its content is in the swap slot
 *   SHARED    not in the memfd: the page is a copy-on-write reference to a
 *             page of a hidden node (ptable ref array, clone.c)
 *   DROPPED   a weak clone's view of the page was dropped (its source
 *             wrote it); reads fail with -ENODATA, faults get SIGBUS
 *
 * Flags:
 *   DIRTY     differs from its backing copy (pager, swap slot or zeros)
 *   REF       referenced since the clock hand last passed (reclaim.c)
 *   SLOT      a swap slot (ptable slot array) holds this page's content:
 *             the only copy when SWAPPED, an identical clean copy when
 *             resident (never together with DIRTY: dirtying frees it)
 *   EVICTED   on an ABSENT page: it was evicted (a later fill is a
 *             refault)
 *
 * Copy-on-write flags (clone.c):
 *   COPY      a resident page of a clone whose content is a clean copy of
 *             what the clone sees behind it (its SHARED reference, or its
 *             parent chain): dropped rather than saved by eviction, and
 *             the clone's own once written
 *   HASREF    the ref array holds this page's reference (state SHARED, or
 *             a COPY of it, or FILLING from it)
 *   WPOFF     copy-on-write work for this page is done for the current
 *             epoch and some sync-set mapping may map it writable; it must
 *             be write-protected again before anything new depends on it
 *   ZERO      on an ABSENT page of a hidden node: the pre-image is zeros
 *   STALE     on a busy page of a clone: its source changed the page while
 *             it was being filled or evicted; the busy owner drops the
 *             content when it is done
 *   POISONED  a fault on the page was answered with SIGBUS (UFFDIO_POISON):
 *             some mapping may hold a poison marker, which only a zap
 *             removes.  Carried until the page has content again, when
 *             vmo__pg_set zaps it from every mapping
 */
enum {
	PG_ABSENT = 0,
	PG_RESIDENT = 1,
	PG_FILLING = 2,
	PG_WRITEBACK = 3,
	PG_EVICTING = 4,
	PG_SWAPPED = 5,
	PG_SHARED = 6,
	PG_DROPPED = 7,
};
#define PG_STATE(b) ((b) & 0x07)
#define PG_DIRTY 0x08 /* differs from the pager's copy */
#define PG_REF 0x10
#define PG_SLOT 0x20
#define PG_EVICTED 0x40
#define PG_COPY 0x80
#define PG_HASREF 0x100
#define PG_WPOFF 0x200
#define PG_ZERO 0x400
#define PG_STALE 0x800
#define PG_POISONED 0x1000

/* For the counters a claimed (FILLING) page is resident already: its
 * frame is being committed, and counting it at claim time means a thread
 * whose fault was just resolved finds its page counted. */
static inline bool vmo__pg_counts_resident(uint16_t b)
{
	uint16_t s = b & 0x07;
	return s == PG_RESIDENT || s == PG_FILLING || s == PG_WRITEBACK ||
	       s == PG_EVICTING;
}

/* Is the content of page b in the memfd and stable under obj->lock? */
static inline bool vmo__pg_readable(uint16_t b)
{
	uint16_t s = b & 0x07;
	return s == PG_RESIDENT || s == PG_WRITEBACK || s == PG_EVICTING;
}

/* May page b be mapped (installed in a page table)? */
static inline bool vmo__pg_mappable(uint16_t b)
{
	return PG_STATE(b) == PG_RESIDENT || PG_STATE(b) == PG_WRITEBACK;
}

#define PT_LEAF_SHIFT 9
#define PT_LEAF_PAGES (1u << PT_LEAF_SHIFT)
#define PT_NODE_SHIFT 9
#define PT_NODE_SLOTS (1u << PT_NODE_SHIFT)

/* Sparse radix tree of state words.  Untouched ranges cost nothing; a leaf
 * (512 pages = 2 MiB of object) is freed when its last page goes ABSENT. */
struct vmo__ptable {
	void *root;        /* leaf if height == 0, else interior node */
	unsigned height;   /* interior levels above the leaves (c) */
};

VMO__HIDDEN void vmo__pt_init(struct vmo__ptable *pt, uint64_t npages);
VMO__HIDDEN void vmo__pt_destroy(struct vmo__ptable *pt);
/* State word of page pg (0 if its leaf does not exist). */
VMO__HIDDEN uint16_t vmo__pt_get(const struct vmo__ptable *pt, uint64_t pg);
/* Set the state word; allocates the leaf if needed (-ENOMEM). Setting 0
 * may free the leaf. */
VMO__HIDDEN int vmo__pt_set(struct vmo__ptable *pt, uint64_t pg, uint16_t v);
/* A copy-on-write reference: page pg of hidden node `node`. */
struct vmo__pref {
	struct vmo *node;
	uint64_t pg;
};
/* Reference of page pg (meaningful only while its word has PG_HASREF). */
VMO__HIDDEN struct vmo__pref vmo__pt_ref(const struct vmo__ptable *pt,
					 uint64_t pg);
/* Record the reference of pg, whose word must be non-zero.  0 or -ENOMEM. */
VMO__HIDDEN int vmo__pt_set_ref(struct vmo__ptable *pt, uint64_t pg,
				struct vmo__pref ref);
/* Swap slot of page pg (meaningful only while its word has PG_SLOT). */
VMO__HIDDEN uint32_t vmo__pt_slot(const struct vmo__ptable *pt, uint64_t pg);
/* Record the slot of pg, whose word must be non-zero (its leaf exists).
 * 0 or -ENOMEM (the leaf's slot array is allocated on first use). */
VMO__HIDDEN int vmo__pt_set_slot(struct vmo__ptable *pt, uint64_t pg,
				 uint32_t slot);
/* How many pages of pg's leaf (the PT_LEAF_PAGES-aligned block holding
 * pg) have a word with a bit of mask set. */
VMO__HIDDEN unsigned vmo__pt_count_leaf(const struct vmo__ptable *pt,
					uint64_t pg, uint16_t mask);
/* First page >= pg and < end whose state word is non-zero, or end. */
VMO__HIDDEN uint64_t vmo__pt_next_used(const struct vmo__ptable *pt,
				       uint64_t pg, uint64_t end);

/* ------------------------------------------------------------------ pool */

struct vmo__swap;

struct vmo_pool {
	unsigned gen;        /* (c) fork generation */
	int refs;            /* (a) the user's ref + one per object */
	pthread_mutex_t lock;      /* (P) object ring, clock hand, reclaimer */
	uint64_t objects;          /* (a) */
	uint64_t resident_pages;   /* (a) */
	uint64_t dirty_pages;      /* (a) */
	uint64_t writeback_errors; /* (a) */
	uint64_t swapped_pages;    /* (a) */

	/* self-paging (reclaim.c) */
	uint64_t budget;           /* (c) pages; 0 = unlimited */
	uint64_t high, low;        /* (c) watermarks in pages */
	uint64_t max_fill;         /* (c) longest run one fill may claim */
	struct vmo__swap *swap;    /* (c) NULL: no swap */
	struct vmo *hand;          /* (P) the clock hand's object, and the
				      way into the pool's circular ring of
				      objects (NULL: no objects) */
	pthread_cond_t cv;         /* (P) reclaimer wake-up, unpin */
	pthread_cond_t done_cv;    /* (P) a reclaim batch ended */
	int kick;                  /* (a) reclaimer wake-up pending */
	bool stop;                 /* (P) */
	bool reclaimer_running;    /* (c) after creation */
	bool over;                 /* (a) over budget, nothing evictable */
	pthread_t reclaimer;

	/* copy-on-write (clone.c): the structure of every object family of
	 * the pool (parents, hidden-node chains, deps, users) and the
	 * consistency of what each object shows */
	pthread_mutex_t cow_lock;
	struct vmo *cow_free;      /* (C) to free once cow_lock is dropped */
	uint64_t hidden_nodes;     /* (a) */
	uint64_t hidden_pages;     /* (a) pages held by hidden nodes
				      (resident or swapped) */
	uint64_t st_preserved, st_cow_copies, st_dropped, st_invalidated,
		st_merged;         /* (a) */

	/* statistics (a) */
	uint64_t st_filled, st_evictions, st_writebacks, st_swap_outs,
		st_swap_ins, st_refaults, st_over_budget, st_swap_full,
		st_ref_clears, st_reclaim_runs, st_direct;
};

VMO__HIDDEN void vmo__pool_get(vmo_pool_t *pool);
VMO__HIDDEN void vmo__pool_put(vmo_pool_t *pool);

/* pool.c: the set of object handles given to users (for -EBADF). */
struct vmo;
VMO__HIDDEN void vmo__handle_add(struct vmo *o);
VMO__HIDDEN void vmo__handle_del(struct vmo *o);
VMO__HIDDEN bool vmo__handle_live(const struct vmo *o);

/* ------------------------------------------------------------------ swap */

/* swap.c: the pool's swap file and its slot allocator. */
VMO__HIDDEN int vmo__swap_open(const char *path, uint64_t bytes,
			       struct vmo__swap **out);
VMO__HIDDEN void vmo__swap_close(struct vmo__swap *sw);
/* Allocate up to n contiguous slots (at least 1): returns how many, the
 * first in *first; 0 when swap is full. */
VMO__HIDDEN uint32_t vmo__swap_alloc(struct vmo__swap *sw, uint32_t n,
				     uint32_t *first);
VMO__HIDDEN void vmo__swap_free(struct vmo__swap *sw, uint32_t slot);
VMO__HIDDEN int vmo__swap_write(struct vmo__swap *sw, uint32_t slot,
				const void *buf, uint32_t n);
VMO__HIDDEN int vmo__swap_read(struct vmo__swap *sw, uint32_t slot, void *buf,
			       uint32_t n);
VMO__HIDDEN uint64_t vmo__swap_slots(const struct vmo__swap *sw);
VMO__HIDDEN uint64_t vmo__swap_used(const struct vmo__swap *sw);

/* ---------------------------------------------------------------- reclaim */

/* reclaim.c.  Objects join the pool's ring when created and leave it
 * before they are torn down (waiting for a sweep that uses them). */
VMO__HIDDEN void vmo__pool_link(vmo_pool_t *pool, struct vmo *obj);
VMO__HIDDEN void vmo__pool_unlink(vmo_pool_t *pool, struct vmo *obj);
VMO__HIDDEN int vmo__reclaim_start(vmo_pool_t *pool);
VMO__HIDDEN void vmo__reclaim_stop(vmo_pool_t *pool);
/* Called after frames were claimed (no lock held): wakes the reclaimer
 * above the high watermark, reclaims directly above the budget. */
static inline void vmo__pool_charge(vmo_pool_t *pool)
{
	extern VMO__HIDDEN void vmo__pool_charge_slow(vmo_pool_t *);
	if (pool->budget &&
	    __atomic_load_n(&pool->resident_pages, __ATOMIC_RELAXED) >
		    pool->high)
		vmo__pool_charge_slow(pool);
}
/* Make the object's pages [pg, end) the next victims (VMO_ADV_DONTNEED):
 * vmo__obj_make_cold clears their references and moves the object's hand,
 * vmo__pool_cold also moves the pool's hand to the object. */
VMO__HIDDEN void vmo__obj_make_cold(struct vmo *obj, uint64_t pg,
				    uint64_t end);
VMO__HIDDEN void vmo__pool_cold(struct vmo *obj, uint64_t pg, uint64_t end);

/* ---------------------------------------------------------------- object */

/*
 * Kinds.  A CLONE's absent pages are whatever its parent shows (clone.c);
 * a NODE is a hidden node: pre-images kept for snapshots of an object,
 * never mapped and never seen by users.
 */
enum vmo__kind {
	VMO_KIND_ANON,
	VMO_KIND_FILE,
	VMO_KIND_PAGER,
	VMO_KIND_CLONE,
	VMO_KIND_NODE,
};

/* Clone kinds (vmo_t.ckind). */
enum { VMO__CK_NONE, VMO__CK_SNAPSHOT, VMO__CK_ALOW, VMO__CK_WEAK };

struct vmo__mapping;

struct vmo {
	vmo_pool_t *pool;      /* (c) holds a pool reference */
	unsigned gen;          /* (c) */
	enum vmo__kind kind;   /* (c) */
	unsigned flags;        /* (c) VMO_FILE_* for files */
	uint64_t size;         /* (c) bytes */
	uint64_t npages;       /* (c) */
	bool writable;         /* (c) may be written (vmo_write, PROT_WRITE) */
	bool writeback;        /* (c) dirty pages go back to a pager */
	int memfd;             /* (c) the frames */

	/* file pager (c) */
	int file_fd;
	uint64_t file_off;     /* file offset of object offset 0 */
	uint64_t file_valid;   /* object bytes backed by the file; beyond:
				  zeros, never written back */
	uint64_t eof_pg;       /* page holding end of file of a write-back
				  file object, never evicted (its tail lives
				  only in memory); UINT64_MAX if none */
	/* user pager (c) */
	vmo_pager_ops_t ops;
	void *ctx;

	int refs;              /* (a) */

	pthread_mutex_t lock;
	pthread_cond_t cv;     /* busy pages changed state (o) */
	unsigned waiters;      /* threads sleeping on cv (o) */
	struct vmo__ptable pt; /* (o) */
	uint64_t nresident;    /* (o) */
	uint64_t ndirty;       /* (o) */
	uint64_t nswapped;     /* (o) pages SWAPPED */
	struct vmo__mapping *maps; /* (o) list of live mappings */
	uint64_t nmaps;        /* (o) */
	bool track;            /* (c) dirty state matters: write-back
				  objects, and writable objects of a pool
				  with a budget (eviction must know what
				  differs from the backing copy) */
	bool wmapped;          /* (o) writable mapping existed since the last
				  sync (dirty tracking without WP_ASYNC) */
	unsigned nlocked;      /* (o) live VMO_MAP_LOCKED mappings */
	int wb_error;          /* (o) eviction failed to write back since
				  the last vmo_sync: its next result */

	/* copy-on-write (clone.c).  (C) = pool->cow_lock */
	bool fam;              /* (a; set under C and o) has (or had)
				  copy-on-write relations: new mappings use
				  the sync uffd set, and pages follow the
				  WPOFF rules */
	int ckind;             /* (c) VMO__CK_* of a CLONE */
	struct vmo *parent;    /* (C) what pages without content of their
				  own show: for a snapshot clone its hidden
				  node, for an at-least-on-write or weak
				  clone its source, for a hidden node the
				  next newer node or its source */
	uint64_t poff;         /* (c) parent page of this object's page 0 */
	struct vmo *newest;    /* (C) the newest hidden node of this object
				  (its snapshots' chain starts below it) */
	struct vmo *older;     /* (C) a node's next older node */
	struct vmo *deps;      /* (C) at-least-on-write and weak clones of
				  this object (their parent is this) */
	struct vmo *dep_next, *dep_prev; /* (C) on the parent's deps */
	uint64_t users;        /* (C) a node: snapshot clones attached to it
				  plus SHARED references into it */
	unsigned irefs;        /* (C) a live object: children naming it as
				  parent (its newest node, its deps); it is
				  freed when these and refs are gone */
	bool udead;            /* (C) refs reached 0; irefs keep it */
	bool gone;             /* (C) out of its family, to be freed */
	bool wp_unknown;       /* (o) pages may be mapped writable without
				  WPOFF (it joined a family with mappings):
				  the next protect pass covers every page */
	uint64_t protect_seq;  /* (C) vmo__protect_clock at the last pass
				  that protected WPOFF pages again: a
				  write-protect fault read before it may be
				  stale (vmo__obj_write_fault) */
	uint64_t *wlog;        /* (o) pages made WPOFF since the last
				  protect pass (entries may be stale) */
	size_t nwlog, capwlog; /* (o) */

	/* reclaim (reclaim.c) */
	struct vmo *ring_next, *ring_prev; /* (P) the pool's object ring */
	uint64_t hand_pg;      /* (o) the clock hand's page in this object */
	unsigned pins;         /* (P) sweeps using the object */
	bool unlinked;         /* (P) left the ring (being destroyed) */

	/* statistics (a) */
	uint64_t st_faults, st_filled, st_preads, st_pread_bytes, st_pwrites,
		st_pwrite_bytes, st_perrors, st_decommitted;
};

static inline bool vmo__obj_stale(const vmo_t *o)
{
	return vmo__stale(o->gen);
}

/*
 * Claim the start of [pg, pg+n) for a caller that wants it resident.
 * Under obj->lock: waits while page pg is FILLING (someone else's fill);
 * then returns in *k the length of the longest run starting at pg of pages
 * of one class:
 *   VMO__RUN_FILL      pages were ABSENT and are now FILLING, owned by the
 *                      caller, who must end with vmo__obj_fill_done();
 *   VMO__RUN_RESIDENT  pages are resident (RESIDENT or WRITEBACK).
 * *waited is set if the call slept.  With waited == NULL the call never
 * sleeps: it returns VMO__RUN_BUSY (and *k = 0) if page pg is FILLING.
 * Returns the class, or -ENOMEM.
 */
enum {
	VMO__RUN_FILL = 1,     /* ABSENT pages: fill from the pager/zeros */
	VMO__RUN_RESIDENT = 2,
	VMO__RUN_BUSY = 3,
	VMO__RUN_SWAPIN = 4,   /* SWAPPED pages: fill from their slots */
	VMO__RUN_COW = 5,      /* pages whose content is what they share
				  (SHARED, or a clone's ABSENT): fill with
				  vmo__cow_read_behind */
	VMO__RUN_DROPPED = 6,  /* page pg is DROPPED (k = 1): -ENODATA /
				  SIGBUS */
};
VMO__HIDDEN int vmo__obj_claim(vmo_t *obj, uint64_t pg, uint64_t n,
			       uint64_t *k, bool *waited);
/*
 * Must page word b of o be installed write-protected in a sync-set
 * mapping registered for write-protect?  Yes when its first write must be
 * seen: the object tracks dirty pages and the page is clean, or the
 * object has copy-on-write relations and the page's copy-on-write work is
 * not done for this epoch (no WPOFF; this covers COPY pages, which are
 * never WPOFF).  Otherwise it is installed writable.  obj->lock held.
 */
static inline bool vmo__obj_wp_needed(const vmo_t *o, uint16_t b)
{
	if (o->track && !(b & PG_DIRTY))
		return true;
	return __atomic_load_n(&o->fam, __ATOMIC_RELAXED) && !(b & PG_WPOFF);
}
/*
 * The write-protect fault of a sync-set mapping on object pages
 * [pg, pg+n) (space lock held for reading, the mapping revalidated): do
 * the work the first write needs (clone.c's copy-on-write, the dirty mark)
 * on the run of mappable pages from pg, then unprotect it in the mapping
 * through uffd fd from address addr (which wakes the faulting thread).
 * Returns pages unprotected, 0 if page pg is no longer resident (the
 * caller wakes the thread, which faults again), or a negative errno.
 * With `dense`, pages
 * after pg are not a stream's but a guess: they are taken only for a
 * copy-on-write family object whose block around pg has been written
 * densely since the last protect (object.c, wf_run).  `rseq` is
 * vmo__protect_clock as it was before the fault was read: a family object
 * protected again since then gets no copy-on-write work and -ESTALE (the
 * fault may be stale, see object.c; the caller wakes the thread).
 */
VMO__HIDDEN int64_t vmo__obj_write_fault(vmo_t *obj, uint64_t pg, uint64_t n,
					 bool dense, uint64_t rseq, int fd,
					 uintptr_t addr);
/* Write-protect pages [pg, end) of o in every sync-set mapping registered
 * for it and clear their WPOFF.  0 or -EAGAIN (an mremap event is
 * pending: retry with the locks dropped).  obj->lock held. */
VMO__HIDDEN int vmo__obj_protect_sync(vmo_t *o, uint64_t pg, uint64_t end);
/* Write-protect object bytes [s, e) in mapping m; 0 or -EAGAIN (an
 * mremap event is pending on its uffd: drop locks and retry).  obj->lock
 * held. */
VMO__HIDDEN int vmo__map_protect(struct vmo__mapping *m, uint64_t s,
				 uint64_t e);
/* Note that page pg was poisoned in a mapping (obj->lock held). */
VMO__HIDDEN void vmo__obj_note_poison_locked(vmo_t *obj, uint64_t pg);
/* Wait until page pg is not FILLING.  No lock held. */
VMO__HIDDEN void vmo__obj_wait_settled(vmo_t *obj, uint64_t pg);
/* fill_done of one page installed writable for a write fault of a
 * copy-on-write family object nothing depends on: RESIDENT and the
 * object's own (not COPY), WPOFF, dirty where tracked.  cow_lock held
 * (so no dependency appears before the page is WPOFF and logged). */
VMO__HIDDEN void vmo__obj_fill_done_own(vmo_t *obj, uint64_t pg);
/* Count k pages filled by the pager (negative: take back a count). */
VMO__HIDDEN void vmo__obj_count_filled(vmo_t *obj, int64_t k);
/* Is page pg being filled right now? */
VMO__HIDDEN bool vmo__obj_filling(vmo_t *obj, uint64_t pg);
/* FILLING -> RESIDENT (ok) or ABSENT (failed), wake waiters.  New pages
 * get write-protect markers in the tracked mappings other than
 * installed_in (NULL: in all of them). */
VMO__HIDDEN void vmo__obj_fill_done(vmo_t *obj, uint64_t pg, uint64_t k,
				    bool ok,
				    const struct vmo__mapping *installed_in);
/* Read claimed SWAPPED pages [pg, pg+k) from their slots into buf.  No
 * lock may be held (the slots are stable: the pages are FILLING, ours).
 * 0 or -EIO. */
VMO__HIDDEN int vmo__obj_swap_read(vmo_t *obj, uint64_t pg, uint64_t k,
				   void *buf);
/* Evict up to `want` pages of obj starting the scan at its clock hand
 * (reclaim.c drives it).  No lock held on entry.  *scanned gets the pages
 * looked at; returns pages evicted.  Sets *wrapped when the scan reached
 * the end of the object. */
VMO__HIDDEN uint64_t vmo__obj_evict(vmo_t *obj, uint64_t want,
				    uint64_t *scanned, bool *wrapped);
/* Run the pager for pages [pg, pg+k) into buf (k*PS bytes).  No lock may
 * be held.  Returns 0 or -EIO.  Counts pager statistics. */
VMO__HIDDEN int vmo__pager_read(vmo_t *obj, uint64_t pg, uint64_t k,
				void *buf);
/* Write back pages [pg, pg+k) whose content is buf.  0 or -EIO. */
VMO__HIDDEN int vmo__pager_write(vmo_t *obj, uint64_t pg, uint64_t k,
				 const void *buf);
/* Write buf (k pages) to the memfd at pg (used when a filled run cannot be
 * installed into a mapping). 0 or -errno. */
VMO__HIDDEN int vmo__memfd_store(vmo_t *obj, uint64_t pg, uint64_t k,
				 const void *buf);
/* Object of pages that are zeros when absent (no pager I/O needed). */
static inline bool vmo__obj_zero_fill(const vmo_t *o)
{
	return o->kind == VMO_KIND_ANON;
}

/* A page of zeros VMO__FILL_SUB pages long (never written). */
extern VMO__HIDDEN char vmo__zeros[];
/* Ticks (atomically) at every pass that protects an object's WPOFF pages
 * again (clone.c); handlers read it before they read their uffd. */
extern VMO__HIDDEN uint64_t vmo__protect_clock;

/* Mapping list maintenance (obj->lock taken inside). */
VMO__HIDDEN void vmo__obj_add_mapping(vmo_t *obj, struct vmo__mapping *m);
/* Harvest dirty bits of m's range into the object, then unlink it. */
VMO__HIDDEN void vmo__obj_del_mapping(vmo_t *obj, struct vmo__mapping *m);
/* Scan [addr, addr+len) of a WP-tracked mapping of obj for written pages
 * and mark them dirty (obj->lock held). */
VMO__HIDDEN void vmo__obj_harvest_locked(vmo_t *obj, struct vmo__mapping *m,
					 uintptr_t addr, uint64_t len);

/* Harvest writes logged for object pages [pg, pg+n) in tracked mapping m
 * (obj->lock held).  Called before installing entries into holes: an
 * empty entry of a tracked mapping may be the only record of a write (the
 * kernel zapped a written entry), and installing one would erase it. */
VMO__HIDDEN void vmo__obj_harvest_pages_locked(vmo_t *obj,
					       struct vmo__mapping *m,
					       uint64_t pg, uint64_t n);

/* object.c internals shared with clone.c.  obj->lock held for pg_set,
 * wake and wait (wait sleeps on obj->cv). */
VMO__HIDDEN int vmo__pg_set(vmo_t *obj, uint64_t pg, uint16_t old,
			    uint16_t nv);
VMO__HIDDEN void vmo__obj_wake(vmo_t *obj);
VMO__HIDDEN void vmo__obj_wait(vmo_t *obj);
VMO__HIDDEN int vmo__obj_new(vmo_pool_t *pool, uint64_t size,
			     enum vmo__kind kind, vmo_t **out);
VMO__HIDDEN void vmo__obj_publish(vmo_t *obj);
/* Make pages [pg, end) resident (no lock held). */
VMO__HIDDEN int vmo__obj_ensure_resident(vmo_t *obj, uint64_t pg,
					 uint64_t end);
/* Write back dirty pages of [pg, end) (no lock held). */
VMO__HIDDEN int vmo__obj_sync_range(vmo_t *obj, uint64_t pg, uint64_t end);
/* Free what an object owns (pages, slots, memfd, struct) and drop its
 * pool reference; runs the pager's release.  No lock held, the object
 * unreachable and out of its family. */
VMO__HIDDEN void vmo__obj_free(vmo_t *obj);
/* Free an object from vmo__obj_new that was never published. */
VMO__HIDDEN void vmo__obj_discard(vmo_t *obj);
/* Drop the page-table entries of pages [pg, pg+n) in every mapping of
 * the object, poison markers included (obj->lock held). */
VMO__HIDDEN void vmo__obj_zap(vmo_t *obj, uint64_t pg, uint64_t n);
/* Count every resident page of [pg, end) dirty (obj->lock taken). */
VMO__HIDDEN void vmo__obj_mark_dirty(vmo_t *obj, uint64_t pg, uint64_t end);
/* Note that pages [pg, pg+n) became WPOFF (obj->lock held). */
VMO__HIDDEN void vmo__obj_log_wpoff(vmo_t *obj, uint64_t pg, uint64_t n);

/* ----------------------------------------------------------------- clone */

/*
 * clone.c.  Every call takes pool->cow_lock itself unless it says so.
 *
 * Reading what is behind a clone's page (its parent chain or SHARED
 * reference): into buf, pages [pg, pg+n) of o, whose own words are not
 * content (FILLING from the chain, ABSENT of a clone, SHARED).  Returns
 * pages read from pg (>= 0; fewer than n when page pg+ret is dropped:
 * *err = -ENODATA, or unreadable: *err = -EIO / -ENOMEM).  `fill` says
 * the caller has claimed [pg, pg+n) (FILLING) and keeps them as COPY
 * pages: their sources are protected, and a chain that leads back into
 * the claimed run reads what is behind those pages instead of waiting.
 */
VMO__HIDDEN uint64_t vmo__cow_read_behind(vmo_t *o, uint64_t pg, uint64_t n,
					  void *buf, bool fill, int *err);
/* Is page word b of o something only the chain can fill (a COW fill)? */
static inline bool vmo__cow_backed(const vmo_t *o, uint16_t b)
{
	return PG_STATE(b) == PG_SHARED ||
	       (PG_STATE(b) == PG_ABSENT && o->kind == VMO_KIND_CLONE);
}
/*
 * Copy-on-write work before pages [pg, pg+n) of o change what they show
 * (a write, a decommit, a copy into them): pre-images to the newest hidden
 * node, at-least-on-write clones' copies invalidated, weak clones' views
 * dropped.  Caller holds cow_lock and no obj->lock.  0, or -EAGAIN after
 * it waited for a busy page or filled one (the caller re-checks and calls
 * again), or -ENOMEM / -EIO.
 */
VMO__HIDDEN int vmo__cow_before_write(vmo_t *o, uint64_t pg, uint64_t n);
/* VMO_MAP_FORCE_WRITE: make pages [pg, end) of o safe to write without
 * being seen: resident, its own (copies of what it shares become its
 * content), their copy-on-write work done, dirty where dirty is tracked.
 * Dropped pages stay dropped.  No lock held.  0 or -ENOMEM / -EIO. */
VMO__HIDDEN int vmo__cow_prepare_write(vmo_t *o, uint64_t pg, uint64_t end);
/* Does o have anything that depends on its current view (a hidden node
 * or deps)?  cow_lock held. */
static inline bool vmo__cow_has_deps(const vmo_t *o)
{
	return o->newest || o->deps;
}
/* Drop the references of n SHARED/HASREF page entries (nodes' users),
 * merging or freeing nodes nobody uses any more.  cow_lock held, no
 * obj->lock. */
VMO__HIDDEN void vmo__cow_put_refs(const struct vmo__pref *refs, size_t n);
/* Drop cow_lock, then free the objects that left their families under
 * it (pool->cow_free). */
VMO__HIDDEN void vmo__cow_unlock(vmo_pool_t *pool);
/* The last reference to o went away: free it now or, if clones still see
 * through it, keep it until they are gone.  No lock held. */
VMO__HIDDEN void vmo__cow_release(vmo_t *o);

/* ----------------------------------------------------------------- space */

#define VMO__FA_STREAMS 8
#define VMO__MAX_HANDLERS 64

struct vmo__mapping {
	vmo_space_t *space;   /* (c) */
	vmo_t *obj;           /* (c) holds a reference */
	uint64_t id;          /* (c) unique per space: revalidation */
	uintptr_t addr;       /* (s) */
	uint64_t len;         /* (s) */
	uint64_t off;         /* (s) object offset of addr */
	int prot;             /* (s) */
	int set;              /* (s,o) which uffd set serves it: VMO__SET_ASYNC
				 or VMO__SET_SYNC (changes only when a
				 mapping is converted, clone.c) */
	bool track_wp;        /* (s,o) async set, registered for
				 write-protect: writes are logged through
				 WP_ASYNC */
	bool sync_wp;         /* (s,o) sync set, registered for
				 write-protect: a write to a protected page
				 is a fault a handler resolves */
	uintptr_t reg_base;   /* (c) start of the original mapping: stripes
				 are counted from here (kept by splits) */
	unsigned stripe_shift;/* (c) log2 of the stripe size */
	int advice;           /* (a) VMO_ADV_NORMAL/SEQUENTIAL/RANDOM */
	struct {
		uint64_t next;    /* (a) object page expected next */
		uint32_t window;  /* (a) last cluster size in pages */
	} fa[VMO__FA_STREAMS]; /* fault-around streams (heuristic: races
				  between handlers only blur the guess) */
	unsigned fa_clock;    /* (a) next stream slot to recycle */
	unsigned busy;        /* (a) handlers using this struct; it is freed
				 only when 0 after removal (drain_cv) */
	int dead;             /* (a) removed from the space */
	bool locked;          /* (c) VMO_MAP_LOCKED: pages never evicted */
	struct vmo__mapping *obj_next, *obj_prev; /* (o) */
};

/* Pages the pager fills per call on the fault path (256 KiB): small
 * enough that the bounce buffer stays in L2 between the pager's write and
 * UFFDIO_COPY's read. */
#define VMO__FILL_SUB 64u

struct vmo__hstats {   /* (h) one per handler thread */
	uint64_t missing, minor, wp, write, spurious, filled, mapped, clusters,
		pager_calls, pager_bytes, errors, sigbus, waits, readahead;
	uint64_t lat[VMO_LAT_BUCKETS];
};

struct vmo__handler {
	vmo_space_t *space;
	int uffd;              /* (c) the queue this thread serves */
	int set;               /* (c) VMO__SET_* of that queue */
	void *bell;            /* (c) its doorbell page (registered there) */
	pthread_t thread;
	void *buf;             /* bounce buffer of VMO__FILL_SUB pages */
	struct vmo__hstats st;
};

/*
 * Two sets of userfaultfds per space.  The async set has WP_ASYNC: the
 * kernel itself resolves write-protect faults and logs the write, which is
 * how objects that write back (or are paged by a budget) learn which pages
 * are dirty at about the cost of one trap.  The sync set has no WP_ASYNC:
 * a write to a protected page is a fault that a handler resolves, which is
 * what copy-on-write needs (the old content must be saved before the write
 * proceeds).  WP_ASYNC is a property of a whole userfaultfd, so a mapping
 * lives on one set: tracked objects that have no copy-on-write relations
 * on the async set, everything else on the sync set (space.c).
 */
enum { VMO__SET_ASYNC = 0, VMO__SET_SYNC = 1 };

struct vmo_space {
	vmo_pool_t *pool;      /* (c) holds a pool reference */
	unsigned gen;          /* (c) */
	/* (c) one fault queue per handler: set k's queue i is
	 * uffd[k * nper + i] */
	int uffd[2 * VMO__MAX_HANDLERS];
	unsigned nuffd;        /* (c) queues opened (2 * nper once set up) */
	unsigned nper;         /* (c) handlers per set */
	uint64_t features;     /* (c) UFFD_FEATURE_* granted, async set */
	uint64_t sfeatures;    /* (c) the same, sync set */
	bool wp_async;         /* (c) WP_ASYNC + PAGEMAP_SCAN usable */
	bool sync_wp;          /* (c) the sync set can write-protect shmem */
	bool poison;           /* (c) UFFDIO_POISON usable */
	int kernel_faults;     /* (c) 0 or VMO_EUSERMODE */
	uint64_t max_cluster_pages; /* (c) */

	/* Taken before lock by every call that changes existing mappings
	 * (unmap, protect, advise, destroy) and by a conversion to the sync
	 * set (vmo__space_convert), which must not hold lock across its
	 * mremap: that waits for a handler to read the mremap event, and
	 * handlers take lock. */
	pthread_mutex_t conv_lock;
	pthread_rwlock_t lock;
	struct vmo__mapping **maps; /* (s) sorted by addr, non-overlapping */
	size_t nmaps, cap;          /* (s) */
	uint64_t next_id;           /* (s) */

	unsigned nthreads;          /* (c) handler threads running
				       (2 * nper once started) */
	struct vmo__handler *handlers; /* (c) handler i serves uffd[i] */
	void *doorbell;             /* (c) one page per handler, page i
				       registered with uffd[i] */
	int stopping;               /* (a) */

	pthread_mutex_t drain_lock; /* with drain_cv: a removed mapping's
				       busy count reached 0 */
	pthread_cond_t drain_cv;
	/* The read-ahead worker (fault.c): fills the cluster after the one
	 * a handler fills for a sequential stream, on the other CPU. */
	pthread_mutex_t ra_lock;
	pthread_cond_t ra_cv;
	struct {
		uintptr_t addr;
		uint64_t id;
	} ra_q[8];                  /* (ra_lock) pending clusters */
	unsigned ra_n;              /* (ra_lock) */
	int ra_stop;                /* (ra_lock) */
	bool ra_running;            /* (c) after creation */
	pthread_t ra_thread;
	void *ra_buf;
	struct vmo__hstats ra_st;   /* (h) owned by the worker */
	vmo_space_t *next_space, *prev_space; /* list of live spaces
						 (spaces_lock in space.c) */
	/* faults resolved by non-handler threads (populate, willneed) */
	pthread_mutex_t extra_lock;
	struct vmo__hstats extra;   /* (extra_lock) */
};

/*
 * Which userfaultfd serves address a of a mapping registered from
 * reg_base in parts of 2^shift bytes, and where a's part ends.  Every
 * handler thread has its own uffd (one shared queue wakes every reader for
 * every fault, and the cross-CPU wake-ups cost more than the second thread
 * gains); a mapping is registered in at most nthreads contiguous parts,
 * part i with uffd i, so threads that divide a mapping between them each
 * meet their own handler (space.c, stripe_shift_for).
 */
static inline int vmo__uffd_of(const vmo_space_t *s, int set,
			       uintptr_t reg_base, unsigned shift, uintptr_t a,
			       uintptr_t *end)
{
	uint64_t i = (uint64_t)(a - reg_base) >> shift;
	if (end)
		*end = reg_base + ((i + 1) << shift);
	return s->uffd[(unsigned)set * s->nper + i % s->nper];
}

VMO__HIDDEN int vmo__handlers_start(vmo_space_t *space);
VMO__HIDDEN void vmo__handlers_stop(vmo_space_t *space);
/* Start / stop the read-ahead worker (optional: without it, sequential
 * scans are filled by the handlers alone). */
VMO__HIDDEN void vmo__readahead_start(vmo_space_t *space);
VMO__HIDDEN void vmo__readahead_stop(vmo_space_t *space);
/* Make [addr, addr+len) of mapping m resident and mapped, in clusters of up
 * to max_cluster (used by VMO_MAP_POPULATE, VMO_MAP_FORCE_WRITE and
 * VMO_ADV_WILLNEED).  Each page goes in protected or not as its word says
 * (vmo__obj_wp_needed): pages VMO_MAP_FORCE_WRITE prepared go in
 * writable, one evicted since comes back protected.  Space lock must NOT
 * be held. */
VMO__HIDDEN int vmo__populate(vmo_space_t *space, uintptr_t addr,
			      uint64_t len, struct vmo__hstats *st,
			      void *buf);
/* The uffd set (VMO__SET_*) and UFFDIO_REGISTER mode for a new mapping
 * of o (space.c). */
VMO__HIDDEN int vmo__map_set(const vmo_space_t *s, const vmo_t *o);
VMO__HIDDEN uint64_t vmo__map_mode(const vmo_space_t *s, const vmo_t *o,
				   int set);
/* Move the async-set mapping of s at addr (with id) to the sync set
 * (clone.c needs to see its writes).  No lock held.  0 or -ENOMEM. */
VMO__HIDDEN int vmo__space_convert(vmo_space_t *s, uintptr_t addr,
				   uint64_t id);
/* Lookup under (s) held for reading. */
VMO__HIDDEN struct vmo__mapping *vmo__space_lookup(vmo_space_t *space,
						   uintptr_t addr);

/* ------------------------------------------------------------ system layer */

/* src/sys/sys.c: the only code that issues VM system calls. */
VMO__HIDDEN int vmo__sys_memfd(uint64_t size);
VMO__HIDDEN int vmo__sys_pagemap_fd(void);
/* PAGEMAP_SCAN for written pages in [start, end) and re-protect them.
 * Calls cb(arg, page_start, page_end) per region.  0 or -errno. */
VMO__HIDDEN int vmo__sys_scan_written(uintptr_t start, uintptr_t end,
				      void (*cb)(void *arg, uintptr_t s,
						 uintptr_t e),
				      void *arg);
struct iovec;
/* MADV_DONTNEED on n ranges, batched where the kernel allows. */
VMO__HIDDEN void vmo__sys_zap(const struct iovec *iov, size_t n);
VMO__HIDDEN int vmo__sys_pread_full(int fd, void *buf, size_t len,
				    uint64_t off, size_t *got);
VMO__HIDDEN int vmo__sys_pwrite_full(int fd, const void *buf, size_t len,
				     uint64_t off);
VMO__HIDDEN uint64_t vmo__now_ns(void);
VMO__HIDDEN unsigned vmo__log2_bucket(uint64_t ns);

/* Thread-local bounce buffer of at least len bytes (library memory, never
 * a libvmo mapping), or NULL.  Slots are independent, so a caller holding
 * one may call code that uses another: IO for copies to and from callers,
 * FILL for pager fills and write-back.  A slot's buffer moves when a
 * larger one is asked for. */
enum {
	VMO__SCRATCH_IO,
	VMO__SCRATCH_FILL,
	VMO__SCRATCH_EVICT, /* eviction's save buffer (may run inside a fill
			       or a write, see vmo__pool_charge) */
	VMO__SCRATCH_COW,   /* copy-on-write pre-images and merges (run
			       inside writes and faults) */
	VMO__SCRATCH_SHARED, /* explicit fills of what a page shares: the
				source's own page may be filled (FILL) on
				the way */
	VMO__SCRATCH_SLOTS
};
VMO__HIDDEN void *vmo__scratch(int slot, size_t len);

#endif /* VMO_INTERNAL_H */
