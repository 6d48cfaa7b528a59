/*
 * fault.c — the handler threads: read a fault from the space's
 * userfaultfd, find the mapping and page, have the object make the page
 * resident, install it, wake the faulting thread.
 *
 * A fault, top to bottom:
 *
 *   handler_main      read(own uffd) -> up to 16 messages
 *   resolve()         under space->lock (read): which mapping, which object
 *                     page; pick a cluster with the fault-around predictor;
 *                     take an object reference; drop the lock
 *   vmo__obj_claim()  object.c: the run of pages starting at the fault page
 *                     that are ABSENT (now FILLING, ours) or RESIDENT
 *   pager             fill the run into this thread's bounce buffer (no
 *                     lock held; exactly once per page)
 *   install           under space->lock (read), mapping revalidated by id:
 *                     UFFDIO_COPY (filled run; also puts the frames into
 *                     the memfd), UFFDIO_ZEROPAGE (anonymous run) or
 *                     UFFDIO_CONTINUE (resident run); each wakes the
 *                     faulting thread
 *   vmo__obj_fill_done()  FILLING -> RESIDENT, wake waiters
 *
 * Registration is MISSING|MINOR (+WP for write-back objects when the
 * kernel has WP_ASYNC): a page absent from the memfd raises MISSING, a page
 * in the memfd but not yet in this mapping's page table raises MINOR, so
 * every page-table entry of a libvmo mapping is installed here.  That is
 * what lets write-back mappings install every page write-protected (the
 * first write is then logged by the kernel for vmo_sync) and leaves the
 * door open to reference sampling for eviction.
 *
 * Races.  Installing holds space->lock for reading and checks the mapping
 * id, so unmap (which needs the lock for writing) never races an install.
 * CONTINUE maps whatever the memfd holds, so a decommit that punches a page
 * between claim and install makes CONTINUE fail with EFAULT; the fault is
 * then retried from the claim.  EEXIST (already mapped by a concurrent
 * fault) is skipped; the faulting thread is woken explicitly whenever the
 * ioctl that would have woken it did not cover its page.  A pager failure
 * poisons the fault page (UFFDIO_POISON): the faulting thread gets SIGBUS.
 *
 * Fault-around: each mapping keeps VMO__FA_STREAMS sequential streams
 * (expected next page and window), so threads scanning different parts of
 * one mapping each keep their own.  A fault at a stream's expected page doubles its window
 * up to max_cluster; any other fault starts a new stream with one page.
 * VMO_ADV_SEQUENTIAL starts at max_cluster; VMO_ADV_RANDOM always uses one.
 *
 * Read-ahead worker: when a stream reaches the full window, the handler
 * queues the next cluster for a per-space worker thread and moves the
 * stream past it, so a single sequential scan is filled by two CPUs.
 *
 * Queues: every handler thread reads a userfaultfd of its own.  With one
 * uffd read by several threads every fault woke them all and was often
 * served from the other vCPU; two handlers were no faster than one.  A run
 * never crosses the boundary of a mapping part, so one uffd serves it
 * (vmo__uffd_of).
 *
 * Shutdown: handler threads block in read(2), which nothing interrupts, so
 * vmo__handlers_stop() rings each handler's doorbell: it touches a private
 * page registered with that handler's uffd; the handler resolves the fault
 * and exits.
 */
#include "vmo_internal.h"
#include "sys/uapi.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MSG_BATCH 16

/* Source of zero fills that must be installed write-protected (UFFDIO_
 * ZEROPAGE has no WP mode).  Never written, so it stays the shared zero
 * page and reading it costs no memory. */
char vmo__zeros[VMO__FILL_SUB * VMO_PAGE_SIZE]
	__attribute__((aligned(VMO_PAGE_SIZE)));

/* ---------------------------------------------------------- fault-around */

/*
 * The window for a fault at object page pg, and the stream slot it belongs
 * to.  The stream is advanced at once (next = pg + window), so that faults
 * arriving while this cluster is still being filled recognise it as in
 * flight.  *ahead is set to the stream's next page when pg falls inside a
 * stream's in-flight cluster of maximal size (the faulting thread has run
 * into pages still being filled: the scan is sequential and outruns the
 * filler), else to UINT64_MAX.  space->lock held for reading.
 */
static uint64_t fa_window(struct vmo__mapping *m, uint64_t pg, uint64_t maxw,
			  unsigned *slot, uint64_t *ahead)
{
	int adv = ATOMIC_LOAD(&m->advice);
	uint64_t w = 1;
	*slot = 0;
	*ahead = UINT64_MAX;
	if (adv == VMO_ADV_RANDOM)
		return 1;
	for (unsigned i = 0; i < VMO__FA_STREAMS; i++) {
		uint64_t next = ATOMIC_LOAD(&m->fa[i].next);
		uint32_t fw = ATOMIC_LOAD(&m->fa[i].window);
		if (next == pg) {
			*slot = i;
			w = fw ? MIN((uint64_t)fw * 2, maxw) : 1;
			goto claim;
		}
		if (fw == maxw && pg < next && pg >= next - fw) {
			/* in flight: if its filler has not reached pg yet,
			 * take the rest of the cluster over from pg */
			*slot = i;
			*ahead = next;
			return maxw;
		}
	}
	/* a new stream replaces the oldest */
	*slot = ATOMIC_INC(&m->fa_clock) % VMO__FA_STREAMS;
claim:
	if (adv == VMO_ADV_SEQUENTIAL)
		w = maxw;
	__atomic_store_n(&m->fa[*slot].next, pg + w, __ATOMIC_RELAXED);
	__atomic_store_n(&m->fa[*slot].window, (uint32_t)w, __ATOMIC_RELAXED);
	return w;
}

/* A cluster ended early (a run of another class began): the stream
 * continues where it really ended.  Only ever shrinks what fa_window set,
 * so a concurrent read-ahead that moved the stream on is not undone. */
static void fa_shorten(struct vmo__mapping *m, unsigned slot, uint64_t pg,
		       uint64_t k, uint64_t w)
{
	if (k >= w)
		return;
	__atomic_compare_exchange_n(&m->fa[slot].next, &(uint64_t){pg + w},
				    pg + k, false, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
}

/* --------------------------------------------------------------- ioctls */

static void uffd_wake(int uffd, uintptr_t addr, uint64_t len)
{
	struct uffdio_range r = {.start = addr, .len = len};
	ioctl(uffd, UFFDIO_WAKE, &r);
}

/*
 * Install pages [addr, addr+len) with one of COPY / ZEROPAGE / CONTINUE.
 * Returns bytes installed from addr before the first failure; *err is 0 or
 * the errno of the failure (EEXIST: a page was already mapped).
 */
enum inst { INST_COPY, INST_ZERO, INST_CONT };
static uint64_t install(int uffd, enum inst how, uintptr_t addr, uint64_t len,
			const void *src, bool wp, int *err)
{
	uint64_t done = 0;
	unsigned again = 0;
	*err = 0;
	while (done < len) {
		long r;
		int64_t n;
		if (how == INST_COPY) {
			struct uffdio_copy c = {
				.dst = addr + done,
				.src = (uintptr_t)src + done,
				.len = len - done,
				.mode = wp ? UFFDIO_COPY_MODE_WP : 0,
			};
			r = ioctl(uffd, UFFDIO_COPY, &c);
			n = c.copy;
		} else if (how == INST_ZERO) {
			struct uffdio_zeropage z = {
				.range = {addr + done, len - done},
			};
			r = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
			n = z.zeropage;
		} else {
			struct uffdio_continue c = {
				.range = {addr + done, len - done},
				.mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
			};
			r = ioctl(uffd, UFFDIO_CONTINUE, &c);
			n = c.mapped;
		}
		if (n > 0)
			done += (uint64_t)n;
		if (r == 0)
			break;
		if (errno == EAGAIN && n > 0)
			continue; /* partial progress: go on from there */
		if (errno == EINTR)
			continue;
		/* EAGAIN without progress: the address space is changing
		 * (a mapping being converted to the sync set, clone.c, has
		 * an mremap event pending on this uffd).  The event is read
		 * by this very thread once it goes back to read(2), so give
		 * up rather than spin: callers store the pages into the memfd
		 * or wake the faulting thread, which faults again. */
		if (errno == EAGAIN && ++again < 64) {
			sched_yield();
			continue;
		}
		*err = errno;
		break;
	}
	return done;
}

/* Poison addr through fd; if that cannot be done, wake the faulting
 * thread through wfd (the queue its fault came from) to retry. */
static void poison(vmo_space_t *s, int fd, int wfd, uintptr_t addr)
{
	if (s->poison) {
		struct uffdio_poison p = {.range = {addr, PS}, .mode = 0};
		if (ioctl(fd, UFFDIO_POISON, &p) == 0)
			return; /* (it woke the thread) */
		if (errno == EEXIST) {
			/* A write-protect marker: a protected entry whose
			 * page went away (a clone's copy invalidated) leaves
			 * one, and the thread faults through it.  Resolving
			 * the protection clears it; poison again. */
			struct uffdio_writeprotect wp = {
				.range = {addr, PS},
				.mode = UFFDIO_WRITEPROTECT_MODE_DONTWAKE};
			if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) == 0 &&
			    ioctl(fd, UFFDIO_POISON, &p) == 0)
				return;
		}
		/* EEXIST still: an install raced us; it did not wake the
		 * thread */
	}
	/* No poison: let the thread fault again (the pager is retried). */
	uffd_wake(wfd >= 0 ? wfd : fd, addr, PS);
}

/* ---------------------------------------------------------------- resolve */

/* The part of a mapping a resolve needs after dropping space->lock. */
struct target {
	vmo_t *obj;
	uint64_t id;
	uintptr_t base;   /* address of object page 0 in this mapping */
	uint64_t pg_lo;   /* object pages mapped: [pg_lo, pg_hi) */
	uint64_t pg_hi;
	int set;          /* uffd set (VMO__SET_*) */
	bool track_wp;    /* async set, write-logged: install protected */
	bool sync_wp;     /* sync set, registered for write-protect: install
			     protected where vmo__obj_wp_needed says so */
	uintptr_t reg_base;  /* stripes: see vmo__uffd_of */
	unsigned shift;
	struct vmo__mapping *m;
	int wfd;          /* the queue the fault came from (-1: no fault):
			     where the faulting thread is woken, even when
			     the mapping moved to another set meanwhile */
	bool wfault;      /* the fault is a write */
	bool pg_wp;       /* out: the fault page went in write-protected */
};

/* Wake the thread that faulted at a (installs through fd did not). */
static void fault_wake(const struct target *t, int fd, uintptr_t a)
{
	uffd_wake(t->wfd >= 0 ? t->wfd : fd, a, PS);
}


/* The uffd serving address a of t, and where its stripe ends. */
static inline int t_uffd(vmo_space_t *s, const struct target *t, uintptr_t a,
			 uintptr_t *end)
{
	return vmo__uffd_of(s, t->set, t->reg_base, t->shift, a, end);
}

/* Install freshly filled pages of t's object write-protected?  They are
 * clean, so: in a write-logged mapping always, in a sync-set mapping when
 * the object tracks dirty pages or has copy-on-write relations. */
static inline bool fill_wp(const struct target *t)
{
	if (t->track_wp)
		return true;
	return t->sync_wp && vmo__obj_wp_needed(t->obj, PG_FILLING);
}

/* Revalidate under space->lock (read): is the mapping still there, and
 * which part of [pg, pg+k) does it still cover?  Returns pages covered from
 * pg (0 if gone or pg itself no longer mapped). */
static uint64_t revalidate(vmo_space_t *s, struct target *t, uint64_t pg,
			   uint64_t k)
{
	struct vmo__mapping *m =
		vmo__space_lookup(s, t->base + pg * PS);
	if (!m || m->id != t->id)
		return 0;
	uint64_t hi = (m->off + m->len) / PS;
	return MIN(k, hi - pg);
}

/* The faulting thread gets SIGBUS at object page pg -- if the page still
 * has no frame (absent, dropped, shared, or in swap that could not be
 * read): under obj->lock, so that a write that gives it content (and zaps
 * markers, see PG_POISONED) comes wholly before or after; a page that got
 * one meanwhile is tried again.  The space lock is taken for the
 * revalidation; an unmapped page is just woken (the thread retries and
 * gets SIGSEGV).  Counts st->sigbus when it poisoned. */
static void fail_fault_page(vmo_space_t *s, struct target *t, int fd,
			    uint64_t pg, struct vmo__hstats *st)
{
	vmo_t *o = t->obj;
	uintptr_t a = t->base + pg * PS;
	pthread_rwlock_rdlock(&s->lock);
	if (!revalidate(s, t, pg, 1)) {
		fault_wake(t, fd, a);
		pthread_rwlock_unlock(&s->lock);
		return;
	}
	pthread_mutex_lock(&o->lock);
	if (!vmo__pg_counts_resident(vmo__pt_get(&o->pt, pg))) {
		poison(s, fd, t->wfd, a);
		vmo__obj_note_poison_locked(o, pg);
		OWNER_ADD(&st->sigbus, 1);
	} else {
		fault_wake(t, fd, a); /* it has something now: try again */
	}
	pthread_mutex_unlock(&o->lock);
	pthread_rwlock_unlock(&s->lock);
}

/*
 * Fill the claimed (FILLING) run [pg, pg+k) and install it.  The pager
 * works in sub-runs of VMO__FILL_SUB pages so that the bounce buffer stays
 * in cache between the pager's write and UFFDIO_COPY's read of it (a 2 MiB
 * buffer does not, and costs ~40 % more per page).  Each sub-run is marked
 * RESIDENT as soon as it is installed.  The counters a faulting thread may
 * look at when it resumes (resident pages: at claim; pages filled: before
 * the install) are already up to date then, at no extra system call.
 * Pages that cannot be installed (the mapping changed) are stored into the
 * memfd, so a fill is never wasted.  Returns pages settled (>= 1) or a
 * negative errno.
 */
static int64_t fill_run(vmo_space_t *s, struct target *t, uint64_t pg,
			uint64_t k, bool fault, int cls, void *buf,
			struct vmo__hstats *st)
{
	vmo_t *o = t->obj;
	bool swapin = cls == VMO__RUN_SWAPIN, cow = cls == VMO__RUN_COW;
	int fd = t_uffd(s, t, t->base + pg * PS, NULL); /* one stripe */
	bool zero = vmo__obj_zero_fill(o) && !swapin && !cow;
	bool wp = fill_wp(t);
	/* pages installed write-protected cannot come from UFFDIO_ZEROPAGE
	 * (it has no WP mode): copy them from the zero buffer instead */
	bool zcopy = zero && wp;
	uint64_t sub = zero && !zcopy ? k : VMO__FILL_SUB;
	uint64_t done = 0, mapped = 0;
	bool gone = false;
	int fail = 0;
	/* A write fault on a member of a copy-on-write family that nothing
	 * depends on: the page is the object's own from the start and is
	 * installed writable, which saves the write-protect fault that
	 * would follow at once.  cow_lock is held across the install so
	 * that no dependency can appear in between (clone.c). */
	bool own = fault && t->wfault && wp && t->sync_wp &&
		   __atomic_load_n(&o->fam, __ATOMIC_ACQUIRE);

	while (done < k) {
		uint64_t n = MIN(k - done, sub), got = 0, ok = n;
		uintptr_t a = t->base + (pg + done) * PS;
		int after = 0; /* the sub-run ends early: fail after it */
		if (cow) {
			/* what the clone shares: its chain (clone.c) */
			int e;
			uint64_t c = vmo__cow_read_behind(o, pg + done, n, buf,
							  true, &e);
			if (!c) {
				fail = e;
				break;
			}
			if (c < n) {
				n = ok = c;
				after = e;
			}
		} else if (swapin) {
			if (vmo__obj_swap_read(o, pg + done, n, buf)) {
				fail = -EIO;
				break;
			}
		} else if (!zero) {
			int r = vmo__pager_read(o, pg + done, n, buf);
			OWNER_ADD(&st->pager_calls, 1);
			if (r) {
				fail = -EIO;
				break;
			}
			OWNER_ADD(&st->pager_bytes, n * PS);
		}
		/* counted before the install wakes the faulting thread, so
		 * that it finds its page counted (the claim counted it as
		 * resident already) */
		vmo__obj_count_filled(o, (int64_t)n);
		int err = 0;
		pthread_rwlock_rdlock(&s->lock);
		uint64_t cover = gone ? 0 : revalidate(s, t, pg + done, n);
		bool stale = false, own1 = false;
		if (own && done == 0 && cover) {
			pthread_mutex_lock(&o->pool->cow_lock);
			own1 = !vmo__cow_has_deps(o);
			if (!own1)
				vmo__cow_unlock(o->pool);
		}
		if ((cow || own1) && cover) {
			/* A COW fill's content may have been invalidated
			 * meanwhile (its source wrote the page, STALE): then
			 * it must not be mapped.  Checked and installed under
			 * obj->lock, which the invalidation takes (it zaps
			 * what was installed before it). */
			pthread_mutex_lock(&o->lock);
			for (uint64_t i = 0; i < cover && !stale; i++)
				stale = (vmo__pt_get(&o->pt, pg + done + i) &
					 PG_STALE) != 0;
		}
		if (cover && !stale && own1) {
			/* the faulting page writable, the rest protected.
			 * Dirty before the install: the woken thread may
			 * write it and call vmo_sync before fill_done_own,
			 * and a sync waits for a FILLING page only if it is
			 * dirty (a clean one it would pass over, and the
			 * write would miss that sync) */
			if (o->track) {
				uint16_t b0 = vmo__pt_get(&o->pt, pg);
				vmo__pg_set(o, pg, b0, b0 | PG_DIRTY);
			}
			got = install(fd, zero && !zcopy ? INST_ZERO : INST_COPY,
				      a, PS, zcopy ? vmo__zeros : buf, false,
				      &err) / PS;
			if (got && cover > 1)
				got += install(fd,
					       zero && !zcopy ? INST_ZERO : INST_COPY,
					       a + PS, (cover - 1) * PS,
					       zcopy ? vmo__zeros
						     : (char *)buf + PS,
					       wp, &err) / PS;
		} else if (cover && !stale) {
			got = install(fd, zero && !zcopy ? INST_ZERO : INST_COPY,
				      a, cover * PS, zcopy ? vmo__zeros : buf,
				      wp, &err) / PS;
			if (done == 0 && got)
				t->pg_wp = wp;
		}
		if ((cow || own1) && cover)
			pthread_mutex_unlock(&o->lock);
		pthread_rwlock_unlock(&s->lock);
		if (own1 && !got) {
			vmo__cow_unlock(o->pool);
			own1 = false;
		}
		if (!cover)
			gone = true;
		mapped += got;
		if (got < n) {
			int r;
			if (zero)
				r = fallocate(o->memfd, 0,
					      (off_t)((pg + done + got) * PS),
					      (off_t)((n - got) * PS))
					    ? -errno
					    : 0;
			else
				r = vmo__memfd_store(o, pg + done + got,
						     n - got,
						     (char *)buf + got * PS);
			if (r) {
				ok = got;
				fail = r;
				vmo__obj_count_filled(o, -(int64_t)(n - got));
			}
		}
		/* installed pages are protected in t->m already (and may be
		 * written by now: never protect them again); stored ones
		 * need markers everywhere */
		if (own1) {
			/* (got >= 1: the faulting page is in) */
			vmo__obj_fill_done_own(o, pg);
			vmo__cow_unlock(o->pool);
			if (MIN(ok, got) > 1)
				vmo__obj_fill_done(o, pg + 1, MIN(ok, got) - 1,
						   true, t->m);
		} else if (MIN(ok, got)) {
			vmo__obj_fill_done(o, pg + done, MIN(ok, got), true,
					   t->m);
		}
		if (ok > got)
			vmo__obj_fill_done(o, pg + done + got, ok - got, true,
					   NULL);
		if (fault && done == 0 && got == 0 && ok)
			/* the fault page was stored, not mapped: the thread
			 * retries and takes a MINOR fault (or SIGSEGV if the
			 * mapping went away) */
			fault_wake(t, fd, a);
		done += ok;
		if (!fail)
			fail = after;
		if (fail)
			break;
	}
	if (done < k)
		vmo__obj_fill_done(o, pg + done, k - done, false, NULL);
	OWNER_ADD(&st->filled, done);
	OWNER_ADD(&st->mapped, mapped);
	if (k > 1)
		OWNER_ADD(&st->clusters, 1);
	if (!fault)
		return done ? (int64_t)done : (fail ? fail : -EIO);
	if (done == 0) {
		/* the fault page itself failed */
		OWNER_ADD(&st->errors, 1);
		fail_fault_page(s, t, fd, pg, st);
		return fail;
	}
	if (fail)
		OWNER_ADD(&st->errors, 1);
	return gone && mapped == 0 ? -ENOENT : (int64_t)done;
}

/*
 * Make object page `pg` (and a cluster after it, window w) resident and
 * mapped in t's mapping.  `fault` says a thread waits on that page.
 * Returns pages handled from pg (>= 1), or a negative errno (-EIO: pager
 * failed, -ENOENT: mapping gone).
 */
static int64_t resolve_run(vmo_space_t *s, struct target *t, uint64_t pg,
			   uint64_t w, bool fault, bool nowait, void *buf,
			   struct vmo__hstats *st)
{
	vmo_t *o = t->obj;
	uintptr_t faddr = t->base + pg * PS, send;
	int fd = t_uffd(s, t, faddr, &send);
	/* a run never crosses a stripe: one uffd serves it */
	uint64_t n = MIN(MIN(w, t->pg_hi - pg), (send - faddr) / PS);
	for (;;) {
		uint64_t k;
		bool waited = false;
		int cls = vmo__obj_claim(o, pg, n, &k, nowait ? NULL : &waited);
		if (waited)
			OWNER_ADD(&st->waits, 1);
		if (cls < 0)
			return cls;
		if (cls == VMO__RUN_BUSY)
			return 0;
		int err = 0;
		uint64_t got = 0;
		bool wp = false;
		if (cls == VMO__RUN_FILL || cls == VMO__RUN_SWAPIN ||
		    cls == VMO__RUN_COW)
			return fill_run(s, t, pg, k, fault, cls, buf, st);
		if (cls == VMO__RUN_DROPPED) {
			/* a weak clone's dropped page: SIGBUS */
			if (fault)
				fail_fault_page(s, t, fd, pg, st);
			return -ENODATA;
		}
		/* Resident run: map it, under obj->lock so that no evictor
		 * can take a page between our look and the install (an
		 * entry it did not zap could be written after it saved the
		 * page).  Harvest first what the empty entries may stand
		 * for (see vmo__obj_harvest_pages). */
		pthread_rwlock_rdlock(&s->lock);
		uint64_t cover = revalidate(s, t, pg, k);
		if (cover) {
			pthread_mutex_lock(&o->lock);
			/* a run of mappable pages that all want the same
			 * protection */
			uint64_t c = 0;
			uint16_t b0 = vmo__pt_get(&o->pt, pg);
			bool per_page = t->sync_wp;
			wp = t->track_wp ||
			     (per_page && vmo__obj_wp_needed(o, b0));
			while (c < cover) {
				uint16_t b = vmo__pt_get(&o->pt, pg + c);
				if (!vmo__pg_mappable(b) ||
				    (per_page && vmo__obj_wp_needed(o, b) != wp))
					break;
				c++;
			}
			if (c && t->track_wp)
				vmo__obj_harvest_pages_locked(o, t->m, pg, c);
			if (!c) {
				/* evicted or decommitted meanwhile */
				pthread_mutex_unlock(&o->lock);
				pthread_rwlock_unlock(&s->lock);
				continue;
			}
			cover = c;
		}
		uint64_t a = 0;
		while (cover && a < cover) {
			got = install(fd, INST_CONT, faddr + a * PS,
				      (cover - a) * PS, NULL, wp, &err) / PS;
			if (a == 0 && got)
				t->pg_wp = wp;
			OWNER_ADD(&st->mapped, got);
			a += got;
			if (!err)
				break;
			if (err == EEXIST) {
				/* already mapped, most likely with the rest of
				 * the run (a concurrent fill): stop here; any
				 * page left unmapped faults again */
				a++;
				break;
			}
			break; /* EFAULT: punched meanwhile; others: give up */
		}
		if (cover)
			pthread_mutex_unlock(&o->lock);
		pthread_rwlock_unlock(&s->lock);
		if (!cover) {
			/* unmapped, split or moved to the other uffd set
			 * since the lookup: the thread faults again (and
			 * gets SIGSEGV if it is gone) */
			if (fault)
				fault_wake(t, fd, faddr);
			return -ENOENT;
		}
		if (err == EFAULT && a == 0)
			continue; /* our page was decommitted: claim again */
		if (k > 1)
			OWNER_ADD(&st->clusters, 1);
		if (fault && (a == 0 || err))
			fault_wake(t, fd, faddr);
		return (int64_t)MAX(a, 1);
	}
}

/*
 * A write to a write-protected page of a sync-set mapping: do what the
 * first write to the page must be preceded by (copy-on-write work for an
 * object with clone relations: clone.c; the dirty mark of a tracked
 * object) and unprotect the page -- and with it the rest of a sequential
 * stream's cluster, so that a writer sweeping a snapshotted object takes
 * one fault per cluster, not per page.  Space lock (read) held across, so
 * the mapping cannot change under the unprotect; the object work is done
 * under obj->lock with the install (vmo__obj_write_fault).
 */
static void resolve_wp(vmo_space_t *s, struct vmo__handler *h,
		       struct target *t, uint64_t pg, uint64_t w, bool dense,
		       uint64_t rseq, struct vmo__hstats *st)
{
	uintptr_t faddr = t->base + pg * PS, send;
	int fd = t_uffd(s, t, faddr, &send);
	/* `dense`: not a stream; offer the rest of the page's 2 MiB block,
	 * which the object takes only where it has been written densely
	 * (object.c, "Density clustering") */
	if (dense)
		w = (pg | (PT_LEAF_PAGES - 1)) + 1 - pg;
	uint64_t n = MIN(MIN(w, t->pg_hi - pg), (send - faddr) / PS);
	int64_t k;
	for (;;) {
		pthread_rwlock_rdlock(&s->lock);
		uint64_t cover = revalidate(s, t, pg, n);
		k = cover ? vmo__obj_write_fault(t->obj, pg, cover, dense,
						 rseq, fd, faddr)
			  : 0;
		pthread_rwlock_unlock(&s->lock);
		if (k != -EAGAIN)
			break;
		/* its filler has not settled the page: wait for it with no
		 * lock held, then look again */
		vmo__obj_wait_settled(t->obj, pg);
	}
	if (k > 1)
		OWNER_ADD(&st->clusters, 1);
	if (k == -ESTALE)
		OWNER_ADD(&st->spurious, 1);
	if (k <= 0)
		/* gone, evicted or decommitted meanwhile, possibly stale,
		 * or the unprotect could not be done now: the thread (if it
		 * still waits) faults again */
		uffd_wake(h->uffd, faddr, PS);
}

/* Look up addr and fill *t.  Space lock held for reading. */
static bool target_of(vmo_space_t *s, uintptr_t addr, struct target *t,
		      uint64_t *pg)
{
	struct vmo__mapping *m = vmo__space_lookup(s, addr);
	if (!m)
		return false;
	t->m = m;
	t->obj = m->obj;
	t->id = m->id;
	t->base = m->addr - m->off;
	t->pg_lo = m->off / PS;
	t->pg_hi = (m->off + m->len) / PS;
	t->set = m->set;
	t->track_wp = m->track_wp;
	t->sync_wp = m->sync_wp;
	t->reg_base = m->reg_base;
	t->shift = m->stripe_shift;
	t->wfd = -1;
	t->wfault = false;
	t->pg_wp = false;
	*pg = (addr - t->base) / PS;
	/* Pin the mapping struct (and so its object reference) until
	 * target_put: unmap waits for busy to drain before freeing it. */
	__atomic_fetch_add(&m->busy, 1, __ATOMIC_SEQ_CST);
	return true;
}

/*
 * Unpin, without a lock on the fault path: `dead` is read before the
 * decrement, and nothing of m is touched after it (the unmapper may free m
 * as soon as busy is 0).  A removal that slips in between the read and the
 * decrement is not signalled; the unmapper's wait re-checks busy on a short
 * timeout for exactly that case (release_removed in space.c).
 */
static void target_put(vmo_space_t *s, struct target *t)
{
	struct vmo__mapping *m = t->m;
	int dead = __atomic_load_n(&m->dead, __ATOMIC_SEQ_CST);
	if (__atomic_sub_fetch(&m->busy, 1, __ATOMIC_SEQ_CST) == 0 && dead) {
		pthread_mutex_lock(&s->drain_lock);
		pthread_cond_broadcast(&s->drain_cv);
		pthread_mutex_unlock(&s->drain_lock);
	}
}

/*
 * The faulting thread ran into a cluster that another handler is still
 * filling (page pg is FILLING): instead of sleeping until that fill ends,
 * fill the cluster after it, so that two handlers fill a sequential scan
 * in parallel.  Only when pg really is busy; the stream is advanced past
 * the new cluster first, so the next handler to arrive goes further on.
 */
static void read_ahead(vmo_space_t *s, struct target *t, unsigned slot,
		       uint64_t pg, uint64_t from, void *buf,
		       struct vmo__hstats *st)
{
	if (!vmo__obj_filling(t->obj, pg))
		return;
	uint64_t w = s->max_cluster_pages;
	pthread_rwlock_rdlock(&s->lock);
	struct vmo__mapping *m = vmo__space_lookup(s, t->base + pg * PS);
	bool ok = m && m->id == t->id &&
		  __atomic_compare_exchange_n(&m->fa[slot].next, &from,
					      from + w, false, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&s->lock);
	if (!ok)
		return; /* somebody else is reading ahead there */
	int64_t r = resolve_run(s, t, from, w, false, true, buf, st);
	if (r > 0)
		OWNER_ADD(&st->readahead, (uint64_t)r);
}

/* Queue a cluster for the worker; dropped if the queue is full. */
static void readahead_post(vmo_space_t *s, uintptr_t addr, uint64_t id)
{
	pthread_mutex_lock(&s->ra_lock);
	if (s->ra_n < sizeof s->ra_q / sizeof s->ra_q[0]) {
		s->ra_q[s->ra_n].addr = addr;
		s->ra_q[s->ra_n].id = id;
		s->ra_n++;
		pthread_cond_signal(&s->ra_cv);
	}
	pthread_mutex_unlock(&s->ra_lock);
}

static void *readahead_main(void *arg)
{
	vmo_space_t *s = arg;
	for (;;) {
		pthread_mutex_lock(&s->ra_lock);
		while (!s->ra_n && !s->ra_stop)
			pthread_cond_wait(&s->ra_cv, &s->ra_lock);
		if (s->ra_stop) {
			pthread_mutex_unlock(&s->ra_lock);
			return NULL;
		}
		uintptr_t addr = s->ra_q[0].addr;
		uint64_t id = s->ra_q[0].id;
		memmove(&s->ra_q[0], &s->ra_q[1],
			(s->ra_n - 1) * sizeof s->ra_q[0]);
		s->ra_n--;
		pthread_mutex_unlock(&s->ra_lock);

		struct target t;
		uint64_t pg;
		pthread_rwlock_rdlock(&s->lock);
		bool found = target_of(s, addr, &t, &pg);
		pthread_rwlock_unlock(&s->lock);
		if (!found)
			continue;
		if (t.id == id) {
			/* nowait: pages somebody is filling are theirs */
			int64_t r = resolve_run(s, &t, pg, s->max_cluster_pages,
						false, true, s->ra_buf,
						&s->ra_st);
			if (r > 0)
				OWNER_ADD(&s->ra_st.readahead, (uint64_t)r);
		}
		target_put(s, &t);
	}
}

void vmo__readahead_start(vmo_space_t *s)
{
	if (posix_memalign(&s->ra_buf, PS, VMO__FILL_SUB * PS)) {
		s->ra_buf = NULL;
		return;
	}
	if (pthread_create(&s->ra_thread, NULL, readahead_main, s)) {
		free(s->ra_buf);
		s->ra_buf = NULL;
		return;
	}
	s->ra_running = true;
}

void vmo__readahead_stop(vmo_space_t *s)
{
	if (!s->ra_running)
		return;
	pthread_mutex_lock(&s->ra_lock);
	s->ra_stop = 1;
	pthread_cond_signal(&s->ra_cv);
	pthread_mutex_unlock(&s->ra_lock);
	pthread_join(s->ra_thread, NULL);
	free(s->ra_buf);
	s->ra_running = false;
}

static void handle_fault(struct vmo__handler *h, uintptr_t addr,
			 uint64_t flags, uint64_t t0, uint64_t rseq)
{
	vmo_space_t *s = h->space;
	struct vmo__hstats *st = &h->st;
	struct target t;
	uint64_t pg, w = 1;
	unsigned slot = 0;
	addr &= ~(uintptr_t)(PS - 1);

	if (flags & UFFD_PAGEFAULT_FLAG_WP)
		OWNER_ADD(&st->wp, 1);
	else if (flags & UFFD_PAGEFAULT_FLAG_MINOR)
		OWNER_ADD(&st->minor, 1);
	else
		OWNER_ADD(&st->missing, 1);
	if (flags & UFFD_PAGEFAULT_FLAG_WRITE)
		OWNER_ADD(&st->write, 1);

	uint64_t ahead = UINT64_MAX, post = UINT64_MAX;
	pthread_rwlock_rdlock(&s->lock);
	bool found = target_of(s, addr, &t, &pg);
	if (found) {
		w = fa_window(t.m, pg, s->max_cluster_pages, &slot, &ahead);
		/* A stream at full speed: hand the next cluster to the
		 * read-ahead worker, and move the stream past it so that a
		 * fault landing there while it fills is seen as in flight. */
		uint64_t x = pg + w;
		/* (not for write-protect faults: their pages are mapped
		 * already; the stream only sizes the next unprotect) */
		if (s->ra_running && w > 1 && w == s->max_cluster_pages &&
		    !(flags & UFFD_PAGEFAULT_FLAG_WP) &&
		    ahead == UINT64_MAX && x < t.pg_hi &&
		    __atomic_compare_exchange_n(&t.m->fa[slot].next, &x, x + w,
						false, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED))
			post = pg + w;
	}
	pthread_rwlock_unlock(&s->lock);
	if (post != UINT64_MAX)
		readahead_post(s, t.base + post * PS, t.id);
	if (!found) {
		/* unmapped meanwhile: let the thread retry (and SIGSEGV) */
		OWNER_ADD(&st->spurious, 1);
		uffd_wake(h->uffd, addr, PS);
		OWNER_ADD(&st->lat[vmo__log2_bucket(vmo__now_ns() - t0)], 1);
		return;
	}
	ATOMIC_INC(&t.obj->st_faults);
	t.wfd = h->uffd;
	t.wfault = (flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;

	if (flags & UFFD_PAGEFAULT_FLAG_WP) {
		/* VMO_ADV_RANDOM: one page per fault, write-protect faults
		 * included */
		bool dense = w == 1 &&
			     ATOMIC_LOAD(&t.m->advice) != VMO_ADV_RANDOM;
		resolve_wp(s, h, &t, pg, w, dense, rseq, st);
		target_put(s, &t);
		OWNER_ADD(&st->lat[vmo__log2_bucket(vmo__now_ns() - t0)], 1);
		return;
	}
	if (ahead != UINT64_MAX && ahead < t.pg_hi)
		read_ahead(s, &t, slot, pg, ahead, h->buf, st);
	int64_t r = resolve_run(s, &t, pg, w, true, false, h->buf, st);
	if (r == -ENOENT)
		OWNER_ADD(&st->spurious, 1);
	if (r > 0 && t.wfault && t.pg_wp && t.sync_wp &&
	    __atomic_load_n(&t.obj->fam, __ATOMIC_ACQUIRE))
		/* A write to a page of a copy-on-write family object that
		 * was just installed write-protected: do the copy-on-write
		 * work and unprotect now, not after a second round trip
		 * (the thread, woken by the install, takes the write-protect
		 * fault only if it gets there first; that fault then finds
		 * the work done).  Just the page: the run installed with it
		 * was not written.  Not counted as a write-protect fault. */
		resolve_wp(s, h, &t, pg, 1, false, rseq, st);
	if (r > 0 && (uint64_t)r < w) {
		/* the mapping struct holds the predictor: re-look it up,
		 * an unmap may have freed it since */
		pthread_rwlock_rdlock(&s->lock);
		struct vmo__mapping *m = vmo__space_lookup(s, addr);
		if (m && m->id == t.id)
			fa_shorten(m, slot, pg, (uint64_t)r, w);
		pthread_rwlock_unlock(&s->lock);
	}
	target_put(s, &t);
	uint64_t dt = vmo__now_ns() - t0;
	OWNER_ADD(&st->lat[vmo__log2_bucket(dt)], 1);
}

int vmo__populate(vmo_space_t *s, uintptr_t addr, uint64_t len,
		  struct vmo__hstats *st, void *buf)
{
	uintptr_t end = addr + len;
	while (addr < end) {
		struct target t;
		uint64_t pg;
		pthread_rwlock_rdlock(&s->lock);
		bool found = target_of(s, addr, &t, &pg);
		pthread_rwlock_unlock(&s->lock);
		if (!found)
			return -ENOENT;
		uint64_t w = MIN(s->max_cluster_pages, (end - addr) / PS);
		int64_t r = resolve_run(s, &t, pg, w, false, false, buf, st);
		target_put(s, &t);
		if (r < 0)
			return (int)r;
		addr += (uint64_t)r * PS;
	}
	return 0;
}

/* ------------------------------------------------------------- threads */

static void *handler_main(void *arg)
{
	struct vmo__handler *h = arg;
	vmo_space_t *s = h->space;
	struct uffd_msg msgs[MSG_BATCH];
	bool quit = false;

	while (!quit) {
		/* before the read: a protect pass that ticks after it is
		 * after every fault this read returns (object.c, "Stale
		 * write-protect faults") */
		uint64_t rseq = __atomic_load_n(&vmo__protect_clock,
						__ATOMIC_SEQ_CST);
		ssize_t n = read(h->uffd, msgs, sizeof msgs);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			break; /* the uffd is unusable: nothing to serve */
		}
		uint64_t t0 = vmo__now_ns();
		for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uintptr_t a = (uintptr_t)msgs[i].arg.pagefault.address;
			if ((a & ~(uintptr_t)(PS - 1)) == (uintptr_t)h->bell) {
				struct uffdio_zeropage z = {
					.range = {(uintptr_t)h->bell, PS}};
				ioctl(h->uffd, UFFDIO_ZEROPAGE, &z);
				if (ATOMIC_LOAD(&s->stopping))
					quit = true;
				continue;
			}
			handle_fault(h, a, msgs[i].arg.pagefault.flags, t0, rseq);
		}
	}
	return NULL;
}

int vmo__handlers_start(vmo_space_t *s)
{
	for (unsigned i = 0; i < s->nthreads; i++) {
		struct vmo__handler *h = &s->handlers[i];
		h->space = s;
		if (posix_memalign(&h->buf, PS, VMO__FILL_SUB * PS)) {
			h->buf = NULL;
			return -ENOMEM;
		}
	}
	for (unsigned i = 0; i < s->nthreads; i++) {
		int r = pthread_create(&s->handlers[i].thread, NULL,
				       handler_main, &s->handlers[i]);
		if (r) {
			/* stop the ones that started */
			unsigned started = i;
			s->nthreads = started;
			vmo__handlers_stop(s);
			return -r;
		}
	}
	return 0;
}

void vmo__handlers_stop(vmo_space_t *s)
{
	__atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < s->nthreads; i++) {
		/* The touch blocks until handler i (the only reader of its
		 * uffd) resolves it; it then exits. */
		volatile char *bell = s->handlers[i].bell;
		(void)*bell;
	}
	for (unsigned i = 0; i < s->nthreads; i++)
		pthread_join(s->handlers[i].thread, NULL);
}
