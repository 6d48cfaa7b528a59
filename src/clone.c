/*
 * clone.c — copy-on-write: clones, hidden nodes, and copies between
 * objects.
 *
 * What it owns.  The relations between the objects of a pool that share
 * pages: who shows what through whom, the hidden nodes that keep
 * pre-images, and the work a write must be preceded by.
 *
 * The live object keeps its memfd and its mappings: cloning never remaps
 * a source or drops its page tables.  What a clone sees is resolved
 * through parents:
 *
 *   snapshot clone C ──parent──▶ hidden node H_k ──▶ H_k+1 ──▶ … ──▶ source S
 *   at-least-on-write or weak clone A ──parent──▶ source S
 *   a SHARED page of any object ──ref──▶ (hidden node H, page q)
 *
 * A page of an object shows its own content (resident, swapped) if it has
 * one, else DROPPED (a weak clone's page its source wrote), else its ref,
 * else its parent's view of page + poff, else its pager (zeros, file,
 * callbacks).  Hidden nodes hold pre-images: a node entry is content, a
 * reference, a zero mark or a drop mark; an ABSENT node page falls through
 * to the next newer node and finally to the source.  Node content never
 * changes once written, so a reference into a node is a snapshot.
 *
 * Pre-images.  The source's snapshots attach to its newest node N.  Before
 * a page p of the source changes what it shows (a write through a mapping,
 * vmo_write, decommit, a copy into it), its current view is stored into N
 * unless N has an entry for p already (vmo__cow_before_write).  That rule
 * is exact: p in N means the current content is newer than every snapshot;
 * p not in N means the newest snapshot sees it.  A snapshot clone made
 * with no write since the previous one shares that node.  A clone C of
 * node H_j resolves p as H_j, H_j+1, …, N, S: the first node holding p has
 * the content p had when C was made.
 *
 * At-least-on-write (ALOW) and weak clones have the source itself as
 * parent and sit on its deps list.  The same before-write step visits
 * them: a page they show through (no content of their own, or a clean
 * COPY of the source's page) is invalidated — an ALOW clone shows the new
 * content from then on, a weak clone's page becomes DROPPED (-ENODATA,
 * SIGBUS) — after their own dependents were served (recursively).
 *
 * Seeing the first write.  A write through a mapping is only seen if the
 * page is write-protected in that mapping; mappings of family objects are
 * on the space's sync uffd set.  WPOFF on a page means "its before-write
 * work is done for this epoch and it may be writable somewhere"; anything
 * that creates a new dependency on pages of an object (a snapshot node, a
 * weak clone, a fill that makes a COPY of a source page) first protects
 * its WPOFF pages again (protect_all), which costs what was written since
 * the previous time, not the object's size.  The first time an object
 * joins a family every resident page is protected once (wp_unknown).
 * Mappings of tracked objects on the async set are converted to the sync
 * set first (space.c, vmo__space_convert): the one remap there is, once
 * per mapping, at the same address and with the same pages mapped.
 *
 * Lifetime.  A node lives while it has users (snapshot clones attached,
 * SHARED references into it).  When the last goes, the node is merged
 * into its older neighbour (entries the neighbour lacks move over: content
 * is copied, swap slots and references move as they are) or, being the
 * oldest, freed: so a chain is never deeper than the number of live
 * snapshots, and what only a dead clone could reach is freed, pages and
 * slots alike.  A live object whose user references are gone stays while
 * children see through it (irefs), and goes when they do.
 *
 * Locks.  pool->cow_lock guards all of the above (parent, newest, older,
 * deps, users, irefs, udead) and the consistency of views: everything
 * that changes what a family object shows takes it, so under it a view is
 * stable (pages may move between memory and swap; their content does not
 * change).  Order: space->lock -> cow_lock -> obj->lock -> pool->lock.
 * With cow_lock held at most one obj->lock is held at a time.  Nothing
 * waits with cow_lock held for something that may need it: a busy page is
 * waited for (or a pager-backed page filled) after dropping it, and the
 * operation starts again.  A filler never waits for a page of its own
 * claimed run that its chain leads back to: it reads what is behind it
 * (show, struct vctx.self).
 */
#include "vmo_internal.h"
#include "sys/uapi.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Pages resolved, copied or preserved per step (256 KiB of scratch). */
#define COW_RUN 64u

/* Why a resolution stopped and what must happen before it is retried
 * (with cow_lock dropped). */
struct vctx {
	vmo_t *wait;   /* page pg of wait is FILLING: wait for it */
	vmo_t *fill;   /* page pg of fill must come from its pager first */
	uint64_t pg;
	bool protect;  /* the content read is kept as COPY pages: protect
			  the live pages it comes from */
	/* the run [self_lo, self_hi) of self that the caller has claimed
	 * (FILLING) and is reading for: a chain that comes back to one of
	 * those pages reads what is behind it instead of waiting for it,
	 * which would be waiting for ourselves */
	vmo_t *self;
	uint64_t self_lo, self_hi;
};

/*
 * Objects leave their family under cow_lock but are freed after it is
 * dropped (vmo__obj_free may run a pager's release callback and waits
 * for reclaim sweeps): they wait on pool->cow_free, and whoever drops
 * cow_lock through vmo__cow_unlock frees them.
 */
static void free_later(vmo_t *o)
{
	o->dep_next = o->pool->cow_free;
	o->pool->cow_free = o;
}

void vmo__cow_unlock(vmo_pool_t *pool)
{
	vmo_t *list = pool->cow_free;
	pool->cow_free = NULL;
	pthread_mutex_unlock(&pool->cow_lock);
	while (list) {
		vmo_t *o = list;
		list = o->dep_next;
		vmo__obj_free(o);
	}
}

/* ------------------------------------------------------------- pinning */

/* Keep a live object around while cow_lock is dropped to wait for one of
 * its pages.  cow_lock held for both. */
static void pin(vmo_t *o)
{
	if (o && o->kind != VMO_KIND_NODE)
		o->irefs++;
}

static void live_free(vmo_t *o);

static void unpin(vmo_t *o)
{
	if (o && o->kind != VMO_KIND_NODE && --o->irefs == 0 && o->udead)
		live_free(o);
}

/* Wait for (or fill) what v names.  No lock held.  0 or -EIO. */
static int settle(struct vctx *v)
{
	if (v->wait) {
		vmo__obj_wait_settled(v->wait, v->pg);
		return 0;
	}
	if (v->fill) {
		int r = vmo__obj_ensure_resident(v->fill, v->pg, v->pg + 1);
		return r == -ENOMEM ? r : r ? -EIO : 0;
	}
	usleep(50);
	return 0;
}

/* Drop cow_lock, settle v, take cow_lock again.  Returns settle's. */
static int settle_unlocked(vmo_pool_t *pool, struct vctx *v)
{
	vmo_t *p = v->wait ? v->wait : v->fill;
	pin(p);
	pthread_mutex_unlock(&pool->cow_lock);
	int r = settle(v);
	pthread_mutex_lock(&pool->cow_lock);
	unpin(p);
	return r;
}

/* ---------------------------------------------------------- protection */

uint64_t vmo__protect_clock;

/* A protect pass over o begins (cow_lock held): write-protect faults read
 * before now may be stale (object.c, "Stale write-protect faults"). */
static void protect_tick(vmo_t *o)
{
	o->protect_seq = __atomic_add_fetch(&vmo__protect_clock, 1,
					    __ATOMIC_SEQ_CST);
}

/* Protect and clear the WPOFF pages of [pg, pg+k) (obj->lock held). */
static int protect_wpoff(vmo_t *o, uint64_t pg, uint64_t k)
{
	bool ticked = false;
	for (uint64_t i = 0; i < k;) {
		if (!(vmo__pt_get(&o->pt, pg + i) & PG_WPOFF)) {
			i++;
			continue;
		}
		if (!ticked) {
			/* (only a page made writable again can be the
			 * subject of a stale fault) */
			protect_tick(o);
			ticked = true;
		}
		uint64_t j = i + 1;
		while (j < k && (vmo__pt_get(&o->pt, pg + j) & PG_WPOFF))
			j++;
		if (vmo__obj_protect_sync(o, pg + i, pg + j))
			return -EAGAIN;
		i = j;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Protect the resident runs of [pg, end) in one call each and clear
 * every WPOFF there.  obj->lock held.  0 or -EAGAIN. */
static int protect_resident(vmo_t *o, uint64_t pg, uint64_t end)
{
	bool ticked = false;
	uint64_t p = vmo__pt_next_used(&o->pt, pg, end);
	while (p < end) {
		if (!vmo__pg_counts_resident(vmo__pt_get(&o->pt, p))) {
			p = vmo__pt_next_used(&o->pt, p + 1, end);
			continue;
		}
		uint64_t q = p + 1;
		while (q < end && vmo__pg_counts_resident(vmo__pt_get(&o->pt, q)))
			q++;
		if (!ticked) {
			protect_tick(o);
			ticked = true;
		}
		if (vmo__obj_protect_sync(o, p, q))
			return -EAGAIN;
		p = vmo__pt_next_used(&o->pt, q, end);
	}
	return 0;
}

/*
 * Protect every page of o that may be writable in a mapping: the logged
 * WPOFF pages, or (wp_unknown) every resident one.  A write-protect call
 * costs about a microsecond whatever it covers when its pages were in use
 * (the TLB flush), plus some 40 ns per resident page it walks; so runs of
 * logged pages are protected one call each while they are sparse, and the
 * resident runs of their whole span at once when they are dense (more
 * than one page in 32 of the span).  obj->lock held.  0 or -EAGAIN.
 */
static int protect_one(vmo_t *o)
{
	if (o->wp_unknown) {
		/* every resident run protected, every WPOFF cleared: from
		 * here on a WPOFF page is always in the log */
		if (protect_resident(o, 0, o->npages))
			return -EAGAIN;
		o->wp_unknown = false;
		o->nwlog = 0;
	}
	if (!o->nwlog)
		return 0;
	qsort(o->wlog, o->nwlog, sizeof *o->wlog, cmp_u64);
	size_t runs = 1;
	for (size_t i = 1; i < o->nwlog; i++)
		runs += o->wlog[i] > o->wlog[i - 1] + 1;
	uint64_t lo = o->wlog[0], hi = o->wlog[o->nwlog - 1] + 1;
	if (runs * 32 > hi - lo) {
		if (protect_resident(o, lo, hi))
			return -EAGAIN;
	} else {
		for (size_t i = 0; i < o->nwlog;) {
			size_t j = i + 1;
			while (j < o->nwlog && o->wlog[j] <= o->wlog[j - 1] + 1)
				j++;
			uint64_t a = o->wlog[i], b = o->wlog[j - 1] + 1;
			if (protect_wpoff(o, a, b - a))
				return -EAGAIN;
			i = j;
		}
	}
	o->nwlog = 0;
	return 0;
}

/*
 * Before something new depends on what o shows: protect o's possibly
 * writable pages, and those of the sources it shows through (an ALOW or
 * weak clone's pages without content of their own show its parent's
 * current content).  cow_lock held.  0 or -EAGAIN (back off and retry).
 */
static int protect_all(vmo_t *o)
{
	for (; o; o = (o->ckind == VMO__CK_ALOW || o->ckind == VMO__CK_WEAK)
			      ? o->parent
			      : NULL) {
		pthread_mutex_lock(&o->lock);
		int r = protect_one(o);
		pthread_mutex_unlock(&o->lock);
		if (r)
			return r;
	}
	return 0;
}

void vmo__obj_log_wpoff(vmo_t *o, uint64_t pg, uint64_t n)
{
	if (o->wp_unknown)
		return; /* the next pass covers everything anyway */
	if (o->nwlog + n > o->capwlog) {
		size_t nc = MAX(o->capwlog * 2, o->nwlog + n + 64);
		uint64_t *p = nc <= o->npages + 4096
				      ? realloc(o->wlog, nc * sizeof *p)
				      : NULL;
		if (!p) {
			/* too long to be worth it: protect everything */
			o->wp_unknown = true;
			o->nwlog = 0;
			return;
		}
		o->wlog = p;
		o->capwlog = nc;
	}
	for (uint64_t i = 0; i < n; i++)
		o->wlog[o->nwlog++] = pg + i;
}

/* ---------------------------------------------------------- resolution */

/* Length of the run from pg (at most n) of pages whose word satisfies
 * same(first word, word).  obj->lock held. */
static uint64_t run_of(vmo_t *o, uint64_t pg, uint64_t n,
		       bool (*same)(uint16_t a, uint16_t b))
{
	uint16_t a = vmo__pt_get(&o->pt, pg);
	uint64_t k = 1;
	while (k < n && same(a, vmo__pt_get(&o->pt, pg + k)))
		k++;
	return k;
}

static bool same_readable(uint16_t a, uint16_t b)
{
	(void)a;
	return vmo__pg_readable(b);
}

static bool same_word(uint16_t a, uint16_t b)
{
	return a == b;
}

static bool same_state(uint16_t a, uint16_t b)
{
	return PG_STATE(a) == PG_STATE(b) &&
	       (a & (PG_HASREF | PG_ZERO)) == (b & (PG_HASREF | PG_ZERO));
}

static int64_t show(vmo_t *o, uint64_t pg, uint64_t n, char *buf,
		    struct vctx *v);

/*
 * What is behind pages [pg, pg+n) of o (whose own words there are not
 * content): their references, else the parent, else the pager's zeros.
 * Reads at least one page into buf.  cow_lock held, no obj->lock.
 */
static int64_t behind(vmo_t *o, uint64_t pg, uint64_t n, char *buf,
		      struct vctx *v)
{
	pthread_mutex_lock(&o->lock);
	uint16_t b = vmo__pt_get(&o->pt, pg);
	uint64_t k = 1;
	if (b & PG_HASREF) {
		struct vmo__pref r0 = vmo__pt_ref(&o->pt, pg);
		while (k < n) {
			uint16_t c = vmo__pt_get(&o->pt, pg + k);
			struct vmo__pref r = vmo__pt_ref(&o->pt, pg + k);
			if (!(c & PG_HASREF) || r.node != r0.node ||
			    r.pg != r0.pg + k)
				break;
			k++;
		}
		pthread_mutex_unlock(&o->lock);
		return show(r0.node, r0.pg, k, buf, v);
	}
	/* the run ends where a page has anything of its own */
	k = run_of(o, pg, n, same_state);
	vmo_t *par = o->parent;
	pthread_mutex_unlock(&o->lock);
	if (par)
		return show(par, pg + o->poff, k, buf, v);
	if (vmo__obj_zero_fill(o)) {
		memset(buf, 0, k * PS);
		return (int64_t)k;
	}
	v->fill = o;
	v->pg = pg;
	return -EAGAIN;
}

/* pread k pages of o's memfd into buf (short reads are holes: zeros).
 * obj->lock held. */
static int read_memfd(vmo_t *o, uint64_t pg, uint64_t k, char *buf)
{
	size_t got = 0;
	int r = vmo__sys_pread_full(o->memfd, buf, k * PS, pg * PS, &got);
	if (r)
		return -EIO;
	if (got < k * PS)
		memset(buf + got, 0, k * PS - got);
	return 0;
}

/* Read the swapped page pg of o (one slot).  obj->lock held. */
static int read_slot(vmo_t *o, uint64_t pg, char *buf)
{
	return vmo__swap_read(o->pool->swap, vmo__pt_slot(&o->pt, pg), buf, 1)
		       ? -EIO
		       : 0;
}

/*
 * What o shows at pages [pg, pg+n): reads at least one page (as many as
 * resolve alike) into buf and returns how many, or -ENODATA (page pg is
 * dropped), -EIO, or -EAGAIN with v saying what to wait for.  cow_lock
 * held, no obj->lock.
 */
static int64_t show(vmo_t *o, uint64_t pg, uint64_t n, char *buf,
		    struct vctx *v)
{
	pthread_mutex_lock(&o->lock);
	uint16_t b = vmo__pt_get(&o->pt, pg);
	uint64_t k = 1;
	int r = 0;
	switch (PG_STATE(b)) {
	case PG_RESIDENT:
	case PG_WRITEBACK:
	case PG_EVICTING:
		k = run_of(o, pg, n, same_readable);
		if (v->protect && o->kind != VMO_KIND_NODE &&
		    protect_wpoff(o, pg, k)) {
			/* a pending mremap event: back off (settle sleeps
			 * when v names nothing to wait for) */
			pthread_mutex_unlock(&o->lock);
			return -EAGAIN;
		}
		r = read_memfd(o, pg, k, buf);
		break;
	case PG_SWAPPED:
		r = read_slot(o, pg, buf);
		break;
	case PG_DROPPED:
		r = -ENODATA;
		break;
	case PG_FILLING:
		pthread_mutex_unlock(&o->lock);
		if (o == v->self && pg >= v->self_lo && pg < v->self_hi) {
			/* ours: e.g. page 2 of o copied from page 3 shares it
			 * through o's snapshot node, which shows o's live
			 * page 3, which this same run is filling.  What it
			 * will hold is what is behind it now. */
			return behind(o, pg, MIN(n, v->self_hi - pg), buf, v);
		}
		v->wait = o;
		v->pg = pg;
		return -EAGAIN;
	case PG_SHARED:
		pthread_mutex_unlock(&o->lock);
		return behind(o, pg, n, buf, v);
	default: /* PG_ABSENT */
		if (b & PG_ZERO) {
			k = run_of(o, pg, n, same_word);
			memset(buf, 0, k * PS);
			break;
		}
		if (o->kind == VMO_KIND_NODE || o->kind == VMO_KIND_CLONE) {
			pthread_mutex_unlock(&o->lock);
			return behind(o, pg, n, buf, v);
		}
		if (vmo__obj_zero_fill(o)) {
			k = run_of(o, pg, n, same_state);
			memset(buf, 0, k * PS);
			break;
		}
		pthread_mutex_unlock(&o->lock);
		v->fill = o;
		v->pg = pg;
		return -EAGAIN;
	}
	pthread_mutex_unlock(&o->lock);
	return r ? r : (int64_t)k;
}

uint64_t vmo__cow_read_behind(vmo_t *o, uint64_t pg, uint64_t n, void *buf,
			      bool fill, int *err)
{
	vmo_pool_t *pool = o->pool;
	uint64_t done = 0;
	*err = 0;
	pthread_mutex_lock(&pool->cow_lock);
	while (done < n) {
		struct vctx v = {.protect = fill};
		if (fill) {
			v.self = o;
			v.self_lo = pg;
			v.self_hi = pg + n;
		}
		int64_t r = behind(o, pg + done, n - done,
				   (char *)buf + done * PS, &v);
		if (r > 0) {
			done += (uint64_t)r;
			continue;
		}
		if (r == -EAGAIN && (r = settle_unlocked(pool, &v)) == 0)
			continue;
		*err = (int)r;
		break;
	}
	vmo__cow_unlock(pool);
	if (fill && done)
		ATOMIC_ADD(&pool->st_cow_copies, done);
	return done;
}

/* Does o show page pg as dropped?  cow_lock held. */
static bool shows_dropped(vmo_t *o, uint64_t pg)
{
	for (;;) {
		pthread_mutex_lock(&o->lock);
		uint16_t b = vmo__pt_get(&o->pt, pg);
		uint16_t st = PG_STATE(b);
		vmo_t *next = NULL;
		uint64_t npg = 0;
		if (b & PG_HASREF && st == PG_SHARED) {
			struct vmo__pref r = vmo__pt_ref(&o->pt, pg);
			next = r.node;
			npg = r.pg;
		} else if (st == PG_ABSENT && !(b & PG_ZERO) && o->parent) {
			next = o->parent;
			npg = pg + o->poff;
		}
		pthread_mutex_unlock(&o->lock);
		if (st == PG_DROPPED)
			return true;
		if (!next)
			return false;
		o = next;
		pg = npg;
	}
}

/* ---------------------------------------------------------- pre-images */

/*
 * Store what o shows at [pg, pg+n) into node nd, which has no entry there:
 * content as content, a reference or a mark as itself, a snapshot clone's
 * fall-through as a reference into its node.  Returns pages stored from
 * pg (>= 1) or a negative errno (-EAGAIN: see v).  cow_lock held.
 */
static int64_t preserve(vmo_t *o, vmo_t *nd, uint64_t pg, uint64_t n,
			char *buf, struct vctx *v)
{
	enum { CONTENT, REF, MARK } how = CONTENT;
	struct vmo__pref ref = {NULL, 0};
	uint16_t mark = 0;
	uint64_t k = 1;
	int r = 0;
	pthread_mutex_lock(&o->lock);
	uint16_t b = vmo__pt_get(&o->pt, pg);
	switch (PG_STATE(b)) {
	case PG_RESIDENT:
	case PG_WRITEBACK:
	case PG_EVICTING:
		k = run_of(o, pg, n, same_readable);
		r = read_memfd(o, pg, k, buf);
		break;
	case PG_SWAPPED:
		r = read_slot(o, pg, buf);
		break;
	case PG_FILLING:
		pthread_mutex_unlock(&o->lock);
		v->wait = o;
		v->pg = pg;
		return -EAGAIN;
	case PG_DROPPED:
		how = MARK;
		mark = PG_DROPPED;
		k = run_of(o, pg, n, same_word);
		break;
	case PG_SHARED:
		how = REF;
		ref = vmo__pt_ref(&o->pt, pg);
		break;
	default: /* PG_ABSENT */
		if (o->kind == VMO_KIND_CLONE && o->ckind == VMO__CK_SNAPSHOT) {
			/* its parent is a node: a reference is the snapshot */
			how = REF;
			ref = (struct vmo__pref){o->parent, pg + o->poff};
			k = run_of(o, pg, n, same_state);
		} else if (o->kind == VMO_KIND_CLONE) {
			/* it shows its source's current content: copy it */
			vmo_t *par = o->parent;
			uint64_t poff = o->poff;
			k = run_of(o, pg, MIN(n, (uint64_t)COW_RUN), same_state);
			pthread_mutex_unlock(&o->lock);
			int64_t got = show(par, pg + poff, k, buf, v);
			if (got == -ENODATA) {
				/* dropped there: dropped here too */
				how = MARK;
				mark = PG_DROPPED;
				k = 1;
				goto store;
			}
			if (got < 0)
				return got;
			k = (uint64_t)got;
			goto store;
		} else if (vmo__obj_zero_fill(o)) {
			how = MARK;
			mark = PG_ABSENT | PG_ZERO;
			k = run_of(o, pg, n, same_state);
		} else {
			/* a pager's page: the caller makes it resident */
			pthread_mutex_unlock(&o->lock);
			v->fill = o;
			v->pg = pg;
			return -EAGAIN;
		}
		break;
	}
	pthread_mutex_unlock(&o->lock);
	if (r)
		return r;
store:
	pthread_mutex_lock(&nd->lock);
	if (how == CONTENT &&
	    vmo__sys_pwrite_full(nd->memfd, buf, k * PS, pg * PS) != 0)
		r = -ENOMEM; /* shmem could not allocate */
	for (uint64_t i = 0; i < k && !r; i++) {
		uint16_t nv = how == CONTENT ? (uint16_t)(PG_RESIDENT | PG_DIRTY)
			    : how == REF     ? (uint16_t)(PG_SHARED | PG_HASREF)
					     : mark;
		r = vmo__pg_set(nd, pg + i, 0, nv);
		if (!r && how == REF) {
			struct vmo__pref ri = {ref.node, ref.pg + i};
			r = vmo__pt_set_ref(&nd->pt, pg + i, ri);
			if (r)
				vmo__pg_set(nd, pg + i, nv, 0);
			else
				ref.node->users++;
		}
		if (r)
			k = i; /* what was stored stays stored */
	}
	pthread_mutex_unlock(&nd->lock);
	if (k)
		ATOMIC_ADD(&o->pool->st_preserved, k);
	if (how == CONTENT && k)
		vmo__pool_charge(o->pool);
	return k ? (int64_t)k : (r ? r : -EIO);
}

/* Does page word b of a dep show its parent's page through (no content
 * of its own, or a clean COPY of the parent's)? */
static bool shows_through(uint16_t b)
{
	if (b & PG_HASREF)
		return false;
	switch (PG_STATE(b)) {
	case PG_ABSENT:
		return true;
	case PG_RESIDENT:
	case PG_EVICTING:
		return (b & PG_COPY) != 0;
	case PG_FILLING:
		/* a fill from the parent (not a swap-in, not a write) */
		return !(b & (PG_SLOT | PG_DIRTY));
	default:
		return false;
	}
}

static bool same_through(uint16_t a, uint16_t b)
{
	(void)a;
	return shows_through(b);
}

/* The parent of dep y changes pages [q, q+k) of y's view: invalidate what
 * y has of them.  obj->lock of y held. */
static int invalidate(vmo_t *y, uint64_t q, uint64_t k)
{
	bool weak = y->ckind == VMO__CK_WEAK;
	uint64_t dropped = 0, inval = 0;
	int r = 0;
	for (uint64_t i = 0; i < k && !r; i++) {
		uint16_t b = vmo__pt_get(&y->pt, q + i);
		if (!shows_through(b))
			continue;
		switch (PG_STATE(b)) {
		case PG_ABSENT:
			if (weak) {
				r = vmo__pg_set(y, q + i, b, PG_DROPPED);
				dropped += !r;
			} else if (b & PG_POISONED) {
				/* it showed a dropped page, and now shows
				 * something: its mappings' poison goes */
				vmo__pt_set(&y->pt, q + i, b & (uint16_t)~PG_POISONED);
				vmo__obj_zap(y, q + i, 1);
			}
			break;
		case PG_RESIDENT:
			/* a clean copy: its frame goes, mappings lose it */
			if (fallocate(y->memfd,
				      FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)((q + i) * PS), (off_t)PS)) {
				r = -errno;
				break;
			}
			vmo__pg_set(y, q + i, b,
				    weak ? (uint16_t)PG_DROPPED : (uint16_t)0);
			if (weak)
				dropped++;
			else
				inval++;
			break;
		default: /* FILLING, EVICTING: their owner drops it */
			vmo__pg_set(y, q + i, b, b | PG_STALE);
			/* a filler may have mapped it already (it installs
			 * under obj->lock, and no more once it is STALE) */
			vmo__obj_zap(y, q + i, 1);
			break;
		}
	}
	ATOMIC_ADD(&y->pool->st_dropped, dropped);
	ATOMIC_ADD(&y->pool->st_invalidated, inval);
	return r;
}

int vmo__cow_before_write(vmo_t *x, uint64_t pg, uint64_t n)
{
	vmo_pool_t *pool = x->pool;
	char *buf = vmo__scratch(VMO__SCRATCH_COW, COW_RUN * PS);
	if (!buf)
		return -ENOMEM;
	uint64_t end = pg + n;
	/* 1. pre-images into the newest node */
	vmo_t *nd = x->newest;
	for (uint64_t p = pg; nd && p < end;) {
		pthread_mutex_lock(&nd->lock);
		while (p < end && vmo__pt_get(&nd->pt, p))
			p++;
		uint64_t q = p;
		while (q < end && q - p < COW_RUN && !vmo__pt_get(&nd->pt, q))
			q++;
		pthread_mutex_unlock(&nd->lock);
		if (p == q)
			break;
		struct vctx v = {0};
		int64_t r = preserve(x, nd, p, q - p, buf, &v);
		if (r == -EAGAIN) {
			r = settle_unlocked(pool, &v);
			return r ? (int)r : -EAGAIN;
		}
		if (r < 0)
			return (int)r;
		p += (uint64_t)r;
	}
	/* 2. the deps that show these pages through */
	for (vmo_t *y = x->deps; y; y = y->dep_next) {
		uint64_t a = MAX(pg, y->poff), e = MIN(end, y->poff + y->npages);
		for (uint64_t q = a; q < e;) {
			uint64_t yq = q - y->poff, ye = e - y->poff;
			pthread_mutex_lock(&y->lock);
			while (yq < ye && !shows_through(vmo__pt_get(&y->pt, yq)))
				yq++;
			uint64_t k = yq < ye ? run_of(y, yq, MIN(ye - yq,
								(uint64_t)COW_RUN),
						      same_through)
					     : 0;
			pthread_mutex_unlock(&y->lock);
			if (!k)
				break;
			if (vmo__cow_has_deps(y)) {
				int r = vmo__cow_before_write(y, yq, k);
				if (r)
					return r;
			}
			pthread_mutex_lock(&y->lock);
			int r = invalidate(y, yq, k);
			pthread_mutex_unlock(&y->lock);
			if (r)
				return r;
			q = yq + k + y->poff;
		}
	}
	return 0;
}

/* ------------------------------------------------------------- lifetime */

static void node_retire(vmo_t *nd);

/*
 * References taken out of a node or object being freed or merged are
 * dropped only once it is out of its chain: dropping one may retire
 * another node -- the very node being merged into, when its last users
 * were references from the one merged -- and that must find the chains
 * consistent.
 */
struct refvec {
	struct vmo__pref *v;
	size_t n, cap;
};

static void refvec_add(struct refvec *rv, struct vmo__pref r)
{
	if (rv->n == rv->cap) {
		size_t nc = rv->cap ? rv->cap * 2 : 64;
		struct vmo__pref *p = realloc(rv->v, nc * sizeof *p);
		if (!p) {
			/* (no memory: drop it now; the chains are as
			 * consistent as the caller keeps them) */
			vmo__cow_put_refs(&r, 1);
			return;
		}
		rv->v = p;
		rv->cap = nc;
	}
	rv->v[rv->n++] = r;
}

static void refvec_put(struct refvec *rv)
{
	vmo__cow_put_refs(rv->v, rv->n);
	free(rv->v);
	rv->v = NULL;
	rv->n = rv->cap = 0;
}

void vmo__cow_put_refs(const struct vmo__pref *refs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (refs[i].node && --refs[i].node->users == 0)
			node_retire(refs[i].node);
}

/* Take the references out of o's page table (their words lose HASREF)
 * into rv.  cow_lock held. */
static void take_own_refs(vmo_t *o, struct refvec *rv)
{
	pthread_mutex_lock(&o->lock);
	for (uint64_t p = vmo__pt_next_used(&o->pt, 0, o->npages);
	     p < o->npages; p = vmo__pt_next_used(&o->pt, p + 1, o->npages)) {
		uint16_t b = vmo__pt_get(&o->pt, p);
		if (!(b & PG_HASREF))
			continue;
		refvec_add(rv, vmo__pt_ref(&o->pt, p));
		vmo__pt_set(&o->pt, p, b & (uint16_t)~PG_HASREF);
	}
	pthread_mutex_unlock(&o->lock);
}

/*
 * Move node nd's entries that `old` lacks into old (content copied, swap
 * slots and references moved as they are); the rest are left for
 * vmo__obj_free (their slots freed with nd; their references dropped
 * here).  Both unreachable by reclaim's eviction of the moved pages: nd
 * is out of the ring, and old has no entry where they land.  cow_lock
 * held.
 */
static void merge_into(vmo_t *nd, vmo_t *old, struct refvec *drop)
{
	char *buf = vmo__scratch(VMO__SCRATCH_COW, COW_RUN * PS);
	uint64_t moved = 0;
	for (uint64_t p = vmo__pt_next_used(&nd->pt, 0, nd->npages);
	     p < nd->npages;) {
		pthread_mutex_lock(&old->lock);
		bool taken = vmo__pt_get(&old->pt, p) != 0;
		pthread_mutex_unlock(&old->lock);
		pthread_mutex_lock(&nd->lock);
		uint16_t b = vmo__pt_get(&nd->pt, p);
		uint64_t k = 1;
		if (taken) {
			/* shadowed by old's own entry: nobody sees it */
			if (b & PG_HASREF) {
				refvec_add(drop, vmo__pt_ref(&nd->pt, p));
				vmo__pt_set(&nd->pt, p, b & (uint16_t)~PG_HASREF);
			}
			pthread_mutex_unlock(&nd->lock);
		} else if (PG_STATE(b) == PG_RESIDENT) {
			/* copy a run of content old lacks */
			uint64_t lim = MIN((uint64_t)COW_RUN, nd->npages - p);
			pthread_mutex_unlock(&nd->lock);
			pthread_mutex_lock(&old->lock);
			while (k < lim && !vmo__pt_get(&old->pt, p + k))
				k++;
			pthread_mutex_unlock(&old->lock);
			pthread_mutex_lock(&nd->lock);
			uint64_t c = 1;
			while (c < k &&
			       PG_STATE(vmo__pt_get(&nd->pt, p + c)) == PG_RESIDENT)
				c++;
			k = c;
			int r = buf ? read_memfd(nd, p, k, buf) : -ENOMEM;
			pthread_mutex_unlock(&nd->lock);
			pthread_mutex_lock(&old->lock);
			if (!r)
				r = vmo__sys_pwrite_full(old->memfd, buf, k * PS,
							 p * PS);
			for (uint64_t i = 0; i < k && !r; i++)
				r = vmo__pg_set(old, p + i, 0,
						PG_RESIDENT | PG_DIRTY);
			pthread_mutex_unlock(&old->lock);
			if (!r)
				moved += k;
			/* a failure loses a pre-image nobody may need; there
			 * is no better place to keep it */
		} else {
			/* a slot, a reference or a mark moves as it is */
			uint32_t slot = vmo__pt_slot(&nd->pt, p);
			struct vmo__pref ref = vmo__pt_ref(&nd->pt, p);
			uint16_t keep = b & (uint16_t)(0x07 | PG_SLOT |
						       PG_HASREF | PG_ZERO);
			pthread_mutex_unlock(&nd->lock);
			pthread_mutex_lock(&old->lock);
			int r = vmo__pg_set(old, p, 0, keep);
			if (!r && (keep & PG_SLOT))
				r = vmo__pt_set_slot(&old->pt, p, slot);
			if (!r && (keep & PG_HASREF))
				r = vmo__pt_set_ref(&old->pt, p, ref);
			if (r) {
				/* (no memory for the leaf's arrays): undo,
				 * leaving the slot and reference to nd */
				uint16_t bare = keep & (uint16_t)~(PG_SLOT |
								   PG_HASREF);
				vmo__pt_set(&old->pt, p, bare);
				vmo__pg_set(old, p, bare, 0);
			}
			pthread_mutex_unlock(&old->lock);
			pthread_mutex_lock(&nd->lock);
			if (!r) {
				/* it lives on in old: strip what nd would
				 * free, then forget it */
				vmo__pt_set(&nd->pt, p,
					    b & (uint16_t)~(PG_SLOT | PG_HASREF));
				vmo__pg_set(nd, p,
					    b & (uint16_t)~(PG_SLOT | PG_HASREF),
					    0);
				moved++;
			} else if (b & PG_HASREF) {
				refvec_add(drop, ref);
				vmo__pt_set(&nd->pt, p, b & (uint16_t)~PG_HASREF);
			}
			pthread_mutex_unlock(&nd->lock);
		}
		p = vmo__pt_next_used(&nd->pt, p + k, nd->npages);
	}
	ATOMIC_ADD(&nd->pool->st_merged, moved);
	if (moved)
		vmo__pool_charge(nd->pool);
}

/*
 * Node nd has no users left: fold it into its older neighbour (or, the
 * oldest, just drop it) and take it out of its chain.  cow_lock held.
 */
static void node_retire(vmo_t *nd)
{
	vmo_t *old = nd->older, *par = nd->parent;
	struct refvec drop = {NULL, 0, 0};
	/* out of reclaim's sight: nothing evicts its pages while they move */
	vmo__pool_unlink(nd->pool, nd);
	if (old)
		merge_into(nd, old, &drop);
	else
		take_own_refs(nd, &drop);
	if (old)
		old->parent = par;
	if (par->kind == VMO_KIND_NODE)
		par->older = old;
	else
		par->newest = old;
	nd->parent = nd->older = NULL;
	nd->gone = true;
	free_later(nd);
	if (par->kind != VMO_KIND_NODE && !old)
		unpin(par); /* the chain held an iref on par */
	refvec_put(&drop);
}

/* A live object nobody references or sees through any more: out of its
 * family, then freed (after cow_lock).  cow_lock held. */
static void live_free(vmo_t *o)
{
	if (o->gone)
		return; /* (its own references' release got here first) */
	o->gone = true;
	struct refvec drop = {NULL, 0, 0};
	take_own_refs(o, &drop);
	vmo_t *par = o->parent;
	o->parent = NULL;
	if (par && o->ckind == VMO__CK_SNAPSHOT) {
		if (--par->users == 0)
			node_retire(par);
	} else if (par) {
		if (o->dep_prev)
			o->dep_prev->dep_next = o->dep_next;
		else
			par->deps = o->dep_next;
		if (o->dep_next)
			o->dep_next->dep_prev = o->dep_prev;
		o->dep_next = o->dep_prev = NULL;
		unpin(par);
	}
	free_later(o);
	refvec_put(&drop);
}

/*
 * o's users are gone but clones still see through it: make the pages it
 * shares its own (content copied in, references dropped).  References are
 * the only edges that can close a cycle -- o's pages referring into a node
 * of an object that sees through o (a copy into o from its own clone, or
 * from itself) would keep both alive forever; parents always point at
 * older objects.  A COPY of a reference already holds the content.
 * cow_lock held.  0 or -EAGAIN (it waited; call again) or an errno.
 */
static int own_shared(vmo_t *o)
{
	vmo_pool_t *pool = o->pool;
	char *buf = vmo__scratch(VMO__SCRATCH_COW, COW_RUN * PS);
	if (!buf)
		return -ENOMEM;
	for (uint64_t p = 0; p < o->npages;) {
		pthread_mutex_lock(&o->lock);
		p = vmo__pt_next_used(&o->pt, p, o->npages);
		while (p < o->npages && !(vmo__pt_get(&o->pt, p) & PG_HASREF))
			p = vmo__pt_next_used(&o->pt, p + 1, o->npages);
		if (p >= o->npages) {
			pthread_mutex_unlock(&o->lock);
			break;
		}
		uint16_t b = vmo__pt_get(&o->pt, p);
		struct vmo__pref ref = vmo__pt_ref(&o->pt, p);
		if (PG_STATE(b) != PG_SHARED) {
			/* a copy (resident or busy): keep the content */
			if (!vmo__pg_readable(b)) {
				struct vctx v = {.wait = o, .pg = p};
				pthread_mutex_unlock(&o->lock);
				int r = settle_unlocked(pool, &v);
				return r ? r : -EAGAIN;
			}
			vmo__pg_set(o, p, b,
				    (uint16_t)((b & ~(PG_HASREF | PG_COPY)) |
					       PG_DIRTY));
			pthread_mutex_unlock(&o->lock);
			vmo__cow_put_refs(&ref, 1);
			p++;
			continue;
		}
		pthread_mutex_unlock(&o->lock);
		struct vctx v = {0};
		int64_t r = show(ref.node, ref.pg, 1, buf, &v);
		if (r == -EAGAIN) {
			r = settle_unlocked(pool, &v);
			return r ? (int)r : -EAGAIN;
		}
		pthread_mutex_lock(&o->lock);
		uint16_t nv = r == -ENODATA ? (uint16_t)PG_DROPPED
					    : (uint16_t)(PG_RESIDENT | PG_DIRTY);
		if (r < 0 && r != -ENODATA) {
			pthread_mutex_unlock(&o->lock);
			return (int)r;
		}
		if (r > 0 && vmo__sys_pwrite_full(o->memfd, buf, PS, p * PS)) {
			pthread_mutex_unlock(&o->lock);
			return -ENOMEM;
		}
		vmo__pt_set(&o->pt, p, b & (uint16_t)~PG_HASREF);
		vmo__pg_set(o, p, b & (uint16_t)~PG_HASREF, nv);
		pthread_mutex_unlock(&o->lock);
		vmo__cow_put_refs(&ref, 1);
		p++;
	}
	return 0;
}

void vmo__cow_release(vmo_t *o)
{
	vmo_pool_t *pool = o->pool;
	pthread_mutex_lock(&pool->cow_lock);
	o->udead = true;
	/* (an error leaves the references: no worse than a leak of what
	 * they hold, and only on out of memory) */
	while (o->irefs && !o->gone && own_shared(o) == -EAGAIN)
		;
	if (o->irefs == 0)
		live_free(o);
	vmo__cow_unlock(pool);
}

/* ---------------------------------------------------------- joining in */

/*
 * o takes part in copy-on-write from now on.  The first time, pages its
 * mappings may have installed writable are noted (wp_unknown), and its
 * async-set mappings are converted to the sync set.  No lock held.
 * 0 or -ENOMEM (a conversion failed; nothing depends on o yet).
 */
static int join(vmo_t *o)
{
	pthread_mutex_lock(&o->lock);
	if (!__atomic_load_n(&o->fam, __ATOMIC_RELAXED)) {
		o->wp_unknown = true;
		__atomic_store_n(&o->fam, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&o->lock);
	for (;;) {
		/* one async mapping at a time: conversion needs the space
		 * lock, which comes before obj->lock */
		pthread_mutex_lock(&o->lock);
		struct vmo__mapping *m = o->maps;
		while (m && m->set != VMO__SET_ASYNC)
			m = m->obj_next;
		vmo_space_t *s = m ? m->space : NULL;
		uintptr_t addr = m ? m->addr : 0;
		uint64_t id = m ? m->id : 0;
		pthread_mutex_unlock(&o->lock);
		if (!s)
			return 0;
		int r = vmo__space_convert(s, addr, id);
		if (r)
			return r;
	}
}

/* Has o a mapping on the async set?  (One appears only while a vmo_map
 * that began before o joined is finishing: it converts it itself.) */
static bool has_async(vmo_t *o)
{
	pthread_mutex_lock(&o->lock);
	struct vmo__mapping *m = o->maps;
	while (m && m->set != VMO__SET_ASYNC)
		m = m->obj_next;
	pthread_mutex_unlock(&o->lock);
	return m != NULL;
}

/*
 * The node new snapshots of o attach to: the newest one if nothing was
 * preserved into it yet (no write since it was made), else a new one.
 * cow_lock held.  0, -EAGAIN (back off, retry) or -ENOMEM.
 */
static int snap_node(vmo_t *o, vmo_t **out)
{
	if (o->newest && !o->newest->pt.root) {
		*out = o->newest;
		return 0;
	}
	int r = protect_all(o);
	if (r)
		return r;
	vmo_t *nd;
	r = vmo__obj_new(o->pool, o->size, VMO_KIND_NODE, &nd);
	if (r)
		return r;
	nd->fam = true;
	nd->parent = o;
	if (o->newest) {
		o->newest->parent = nd;
		nd->older = o->newest;
	} else {
		o->irefs++; /* the chain sees through o */
	}
	o->newest = nd;
	vmo__obj_publish(nd);
	*out = nd;
	return 0;
}

/* ---------------------------------------------------------- force write */

int vmo__cow_prepare_write(vmo_t *o, uint64_t pg, uint64_t end)
{
	vmo_pool_t *pool = o->pool;
	bool fam = __atomic_load_n(&o->fam, __ATOMIC_ACQUIRE);
	for (uint64_t p = pg; p < end;) {
		uint64_t q = MIN(end, p + 512);
		/* resident first (fills of what it shares, of its pager,
		 * of swap); a dropped page stays as it is */
		for (uint64_t x = p; x < q;) {
			int r = vmo__obj_ensure_resident(o, x, q);
			if (!r)
				break;
			if (r != -ENODATA)
				return r;
			while (x < q && vmo__obj_ensure_resident(o, x, x + 1) !=
						-ENODATA)
				x++;
			x++; /* past the dropped page */
		}
		if (fam) {
			pthread_mutex_lock(&pool->cow_lock);
			int r = vmo__cow_has_deps(o) ? vmo__cow_before_write(o, p,
									     q - p)
						     : 0;
			if (r) {
				vmo__cow_unlock(pool);
				if (r == -EAGAIN)
					continue; /* look again from the fills */
				return r;
			}
		}
		struct refvec drop = {NULL, 0, 0};
		pthread_mutex_lock(&o->lock);
		for (uint64_t x = p; x < q; x++) {
			uint16_t b = vmo__pt_get(&o->pt, x), nv = b;
			if (!vmo__pg_mappable(b))
				continue; /* dropped, or evicted meanwhile */
			if (fam) {
				if (b & PG_HASREF)
					refvec_add(&drop, vmo__pt_ref(&o->pt, x));
				nv &= (uint16_t)~(PG_COPY | PG_HASREF);
				if (!(b & PG_WPOFF))
					vmo__obj_log_wpoff(o, x, 1);
				nv |= PG_WPOFF;
			}
			if (o->track)
				nv |= PG_DIRTY;
			if (nv != b)
				vmo__pg_set(o, x, b, nv);
		}
		pthread_mutex_unlock(&o->lock);
		if (fam) {
			refvec_put(&drop);
			vmo__cow_unlock(pool);
		}
		p = q;
	}
	return 0;
}

/* ---------------------------------------------------------------- handles */

/* Common checks of the calls below: a live handle of this process. */
static int check_handle(vmo_t *o)
{
	if (!o)
		return -EINVAL;
	if (!vmo__handle_live(o))
		return -EBADF;
	if (vmo__obj_stale(o))
		return -ECHILD;
	return 0;
}

/* -------------------------------------------------------------- vmo_clone */

int vmo_clone(vmo_t *src, uint64_t offset, uint64_t len, unsigned flags,
	      vmo_t **out)
{
	int r = check_handle(src);
	if (r)
		return r;
	if (!out)
		return -EINVAL;
	int kind = flags == VMO_CLONE_SNAPSHOT		? VMO__CK_SNAPSHOT
		   : flags == VMO_CLONE_AT_LEAST_ON_WRITE ? VMO__CK_ALOW
		   : flags == VMO_CLONE_WEAK		? VMO__CK_WEAK
							: VMO__CK_NONE;
	if (kind == VMO__CK_NONE)
		return -EINVAL;
	if (offset % PS || len % PS || len == 0)
		return -EINVAL;
	if (offset > src->size || len > src->size - offset)
		return -ERANGE;
	vmo_pool_t *pool = src->pool;
	vmo_t *c;
	r = vmo__obj_new(pool, len, VMO_KIND_CLONE, &c);
	if (r)
		return r;
	c->writable = true;
	c->ckind = kind;
	c->poff = offset / PS;
	c->fam = true;
	for (;;) {
		r = join(src);
		if (r)
			break;
		pthread_mutex_lock(&pool->cow_lock);
		if (src->udead) {
			r = -EBADF;
		} else if (has_async(src)) {
			r = -EAGAIN;
		} else if (kind == VMO__CK_SNAPSHOT) {
			vmo_t *nd;
			r = snap_node(src, &nd);
			if (!r) {
				c->parent = nd;
				nd->users++;
			}
		} else {
			/* A weak clone depends on every page at once; an
			 * at-least-on-write one on the pages it copies, whose
			 * fills protect WPOFF pages of src -- which is only
			 * enough once every writable entry is WPOFF (no
			 * wp_unknown left) */
			r = protect_all(src);
			if (!r) {
				c->parent = src;
				src->irefs++;
				c->dep_next = src->deps;
				if (src->deps)
					src->deps->dep_prev = c;
				src->deps = c;
			}
		}
		vmo__cow_unlock(pool);
		if (r != -EAGAIN)
			break;
		usleep(50);
	}
	if (r) {
		vmo__obj_discard(c);
		return r;
	}
	vmo__obj_publish(c);
	*out = c;
	return 0;
}

/* --------------------------------------------------- copy, scatter, gather */

/* A list of page indices: v[i], or base + i when v is NULL. */
struct plist {
	const uint64_t *v;
	uint64_t base;
	size_t n;
};

static inline uint64_t pl_at(const struct plist *l, size_t i)
{
	return l->v ? l->v[i] : l->base + i;
}

/* Every page of l inside an object of npages? */
static int pl_check(const struct plist *l, uint64_t npages)
{
	if (!l->v)
		return l->base > npages || l->n > npages - l->base ? -ERANGE : 0;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] >= npages)
			return -ERANGE;
	return 0;
}

/* Does l name a page twice? */
static bool pl_dups(const struct plist *l)
{
	if (!l->v || l->n < 2)
		return false;
	uint64_t *t = malloc(l->n * sizeof *t);
	if (!t)
		return false; /* cannot tell: let it through (last wins) */
	memcpy(t, l->v, l->n * sizeof *t);
	qsort(t, l->n, sizeof *t, cmp_u64);
	bool d = false;
	for (size_t i = 1; i < l->n && !d; i++)
		d = t[i] == t[i - 1];
	free(t);
	return d;
}

/* Do a and b (pages of one object) share a page? */
static bool pl_overlap(const struct plist *a, const struct plist *b)
{
	if (!a->v && !b->v)
		return a->base < b->base + b->n && b->base < a->base + a->n;
	const struct plist *lst = a->v ? a : b, *oth = a->v ? b : a;
	if (!oth->v) {
		for (size_t i = 0; i < lst->n; i++)
			if (lst->v[i] >= oth->base &&
			    lst->v[i] < oth->base + oth->n)
				return true;
		return false;
	}
	return false; /* (never both lists) */
}

/* Any page of sp shown as dropped by src?  cow_lock held. */
static bool any_dropped(vmo_t *src, const struct plist *sp)
{
	if (!__atomic_load_n(&src->fam, __ATOMIC_RELAXED))
		return false;
	for (size_t i = 0; i < sp->n; i++)
		if (shows_dropped(src, pl_at(sp, i)))
			return true;
	return false;
}

/* The bytes, now: read what src shows, write it into dst (vmo_read and
 * vmo_write do the copy-on-write work either side needs). */
static int copy_eager(vmo_t *src, const struct plist *sp, vmo_t *dst,
		      const struct plist *dp)
{
	void *buf = malloc(COW_RUN * PS);
	if (!buf)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; i < sp->n && !r;) {
		size_t k = 1;
		while (i + k < sp->n && k < COW_RUN &&
		       pl_at(sp, i + k) == pl_at(sp, i) + k &&
		       pl_at(dp, i + k) == pl_at(dp, i) + k)
			k++;
		r = vmo_read(src, pl_at(sp, i) * PS, buf, k * PS);
		if (!r)
			r = vmo_write(dst, pl_at(dp, i) * PS, buf, k * PS);
		i += k;
	}
	free(buf);
	return r;
}

/*
 * Make pages dp[i] of dst references to (nd, sp[i]): what src showed at
 * sp[i] when nd, src's snapshot node, was taken (pinned by the caller).
 * dst's own before-write work runs first -- it may change what src shows
 * (src may see through dst), which is why the snapshot is taken before
 * and kept across retries.  cow_lock held (dropped and taken again while
 * waiting for busy pages).  0, -ENOMEM, -EIO.
 */
static int copy_refs(vmo_t *nd, const struct plist *sp, vmo_t *dst,
		     const struct plist *dp)
{
	vmo_pool_t *pool = dst->pool;
	int r;
again:
	r = 0;
	for (size_t i = 0; i < dp->n && !r;) {
		size_t k = 1;
		while (i + k < dp->n && k < COW_RUN &&
		       pl_at(dp, i + k) == pl_at(dp, i) + k)
			k++;
		if (vmo__cow_has_deps(dst))
			r = vmo__cow_before_write(dst, pl_at(dp, i), k);
		i += k;
	}
	if (r == -EAGAIN)
		goto again; /* (it waited, with cow_lock dropped) */
	if (r)
		return r;
	/* every destination page settled first, then all of them at once */
	pthread_mutex_lock(&dst->lock);
	for (size_t i = 0; i < dp->n; i++) {
		uint16_t b = vmo__pt_get(&dst->pt, pl_at(dp, i));
		uint16_t st = PG_STATE(b);
		if (st == PG_FILLING || st == PG_WRITEBACK || st == PG_EVICTING) {
			struct vctx v = {.wait = dst, .pg = pl_at(dp, i)};
			pthread_mutex_unlock(&dst->lock);
			r = settle_unlocked(pool, &v);
			if (r)
				return r;
			goto again;
		}
	}
	struct refvec old = {NULL, 0, 0};
	for (size_t i = 0; i < dp->n && !r; i++) {
		uint64_t p = pl_at(dp, i);
		uint16_t b = vmo__pt_get(&dst->pt, p);
		if (vmo__pg_counts_resident(b) &&
		    fallocate(dst->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(p * PS), (off_t)PS)) {
			r = -errno;
			break;
		}
		if (b & PG_HASREF)
			refvec_add(&old, vmo__pt_ref(&dst->pt, p));
		uint16_t nv = PG_SHARED | PG_HASREF;
		r = vmo__pg_set(dst, p, b, nv);
		if (!r)
			r = vmo__pt_set_ref(&dst->pt, p,
					    (struct vmo__pref){nd, pl_at(sp, i)});
		if (r) {
			vmo__pg_set(dst, p, nv, 0);
			break;
		}
		nd->users++;
	}
	pthread_mutex_unlock(&dst->lock);
	refvec_put(&old);
	return r;
}

static int copy_pages(vmo_t *src, struct plist sp, vmo_t *dst,
		      struct plist dp, unsigned flags)
{
	int r = check_handle(src);
	if (!r)
		r = check_handle(dst);
	if (r)
		return r;
	if (flags & ~VMO_COPY_EAGER)
		return -EINVAL;
	if (!sp.n)
		return -EINVAL;
	if ((r = pl_check(&sp, src->npages)) || (r = pl_check(&dp, dst->npages)))
		return r;
	if (pl_dups(&dp))
		return -EINVAL;
	if (src == dst && pl_overlap(&sp, &dp))
		return -EINVAL;
	if (!dst->writable)
		return -EACCES;
	vmo_pool_t *pool = src->pool;
	/* a destination that writes back must see the bytes (its pager
	 * does), so it gets them now */
	bool eager = (flags & VMO_COPY_EAGER) || pool != dst->pool ||
		     dst->writeback;
	pthread_mutex_lock(&pool->cow_lock);
	bool dropped = any_dropped(src, &sp);
	pthread_mutex_unlock(&pool->cow_lock);
	if (dropped)
		return -ENODATA;
	if (eager && pool == dst->pool &&
	    __atomic_load_n(&src->fam, __ATOMIC_ACQUIRE)) {
		/* What src shows may depend on dst (src sees through it):
		 * a page copied could change a page still to be read.  Take
		 * the pages as they are now into a private snapshot first. */
		vmo_t *tmp;
		r = vmo_create(pool, sp.n * PS, 0, &tmp);
		if (r)
			return r;
		struct plist tp = {NULL, 0, sp.n};
		r = copy_pages(src, sp, tmp, tp, 0);
		if (!r)
			r = copy_eager(tmp, &tp, dst, &dp);
		vmo_unref(tmp);
		return r;
	}
	if (eager)
		return copy_eager(src, &sp, dst, &dp);
	for (;;) {
		if ((r = join(src)) || (r = join(dst)))
			return r;
		pthread_mutex_lock(&pool->cow_lock);
		if (src->udead || dst->udead)
			r = -EBADF;
		else if (has_async(src) || has_async(dst))
			r = -EAGAIN;
		else if (any_dropped(src, &sp))
			r = -ENODATA;
		else {
			vmo_t *nd;
			r = snap_node(src, &nd);
			if (!r) {
				nd->users++; /* kept until the references hold it */
				r = copy_refs(nd, &sp, dst, &dp);
				struct vmo__pref pin = {nd, 0};
				vmo__cow_put_refs(&pin, 1);
			}
		}
		vmo__cow_unlock(pool);
		if (r != -EAGAIN)
			return r;
		usleep(50);
	}
}

int vmo_copy(vmo_t *src, uint64_t src_off, vmo_t *dst, uint64_t dst_off,
	     uint64_t len, unsigned flags)
{
	if (!src || !dst)
		return -EINVAL;
	if (src_off % PS || dst_off % PS || len % PS || len == 0)
		return -EINVAL;
	struct plist sp = {NULL, src_off / PS, len / PS};
	struct plist dp = {NULL, dst_off / PS, len / PS};
	return copy_pages(src, sp, dst, dp, flags);
}

int vmo_copy_scatter(vmo_t *src, uint64_t src_off, vmo_t *dst,
		     const uint64_t *dst_pages, size_t n, unsigned flags)
{
	if (!src || !dst || !dst_pages || n == 0)
		return -EINVAL;
	if (src_off % PS)
		return -EINVAL;
	struct plist sp = {NULL, src_off / PS, n};
	struct plist dp = {dst_pages, 0, n};
	return copy_pages(src, sp, dst, dp, flags);
}

int vmo_copy_gather(vmo_t *src, const uint64_t *src_pages, size_t n,
		    vmo_t *dst, uint64_t dst_off, unsigned flags)
{
	if (!src || !dst || !src_pages || n == 0)
		return -EINVAL;
	if (dst_off % PS)
		return -EINVAL;
	struct plist sp = {src_pages, 0, n};
	struct plist dp = {NULL, dst_off / PS, n};
	return copy_pages(src, sp, dst, dp, flags);
}

int vmo_gather(vmo_t *src, const uint64_t *pages, size_t n, unsigned flags,
	       vmo_t **out)
{
	int r = check_handle(src);
	if (r)
		return r;
	if (!pages || n == 0 || !out || (flags & ~VMO_COPY_EAGER))
		return -EINVAL;
	if (n > VMO_MAX_SIZE / PS)
		return -EFBIG;
	struct plist sp = {pages, 0, n};
	if ((r = pl_check(&sp, src->npages)))
		return r;
	vmo_t *g;
	r = vmo_create(src->pool, n * PS, 0, &g);
	if (r)
		return r;
	struct plist dp = {NULL, 0, n};
	r = copy_pages(src, sp, g, dp, flags);
	if (r) {
		vmo_unref(g);
		return r;
	}
	*out = g;
	return 0;
}
