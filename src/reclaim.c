/*
 * reclaim.c — self-paging: keeping a pool's frames inside its budget.
 *
 * What it owns.  The pool's ring of objects, the clock hand that walks it,
 * the reclaimer thread, and the decision of when and how much to evict.
 * How one batch of one object is evicted (zap, harvest, save, punch) is
 * object.c's business (vmo__obj_evict); swap slots are swap.c's.
 *
 * Policy: CLOCK (second chance) over every resident page of the pool, with
 * references sampled rather than guessed.  Linux gives a user-space pager
 * no accessed bits, so the library makes its own: the hand clears a page's
 * PG_REF and zaps its page-table entries (MADV_DONTNEED on a shared
 * mapping: the frame stays in the memfd); the page's next use then takes a
 * MINOR fault, whose handler maps it again and sets PG_REF.  vmo_read,
 * vmo_write and fills set PG_REF directly.  A page the hand finds without
 * PG_REF has not been used for a whole revolution and is evicted.  The
 * hand moves object by object, and through each object in page order
 * (o->hand_pg), so a sequential scan is evicted in the order it was read
 * and its pages reach swap in consecutive slots.  VMO_ADV_DONTNEED moves
 * the hand to the advised range after clearing its references: those
 * pages go first.
 *
 * When: a fill that pushes the pool above its high watermark wakes the
 * reclaimer thread, which evicts in batches until the pool is below the
 * low watermark, on another CPU than the faulting thread; a fill that
 * pushes the pool above the budget itself also evicts directly (bounded,
 * never waiting for a busy page).  Neither ever waits for a page someone
 * else owns, so faults cannot deadlock on reclaim: when nothing can be
 * evicted (all busy, locked, or dirty with nowhere to go) the pool runs
 * over budget and says so in its statistics (over_budget_events).
 *
 * Locks.  pool->lock guards the ring, the hand and the reclaimer's state;
 * it is taken after obj->lock or alone, and never held while evicting.  A
 * sweep pins the object it works on (o->pins, under pool->lock) instead of
 * taking a reference: an object whose last reference goes away waits in
 * vmo__pool_unlink for the pin to drop before it is torn down, and the
 * reclaimer never owns a reference whose release could run teardown (and
 * a pager's write-back) on its own thread.
 */
#include "vmo_internal.h"

#include <stdlib.h>
#include <time.h>

/* Pages the reclaimer evicts per sweep call; pages a direct reclaim adds
 * beyond what the budget needs, so that the next fills find room. */
#define RECLAIM_BATCH 256u
#define DIRECT_EXTRA 16u /* (at most budget/8: with a budget of two
			    pages, evicting both would livelock an
			    access that spans them) */

/* The ring is reached through the hand, which is NULL only when the
 * ring is empty. */
void vmo__pool_link(vmo_pool_t *p, vmo_t *o)
{
	pthread_mutex_lock(&p->lock);
	vmo_t *h = p->hand;
	if (!h) {
		o->ring_next = o->ring_prev = o;
		p->hand = o;
	} else {
		/* insert behind the hand: visited last */
		o->ring_next = h;
		o->ring_prev = h->ring_prev;
		h->ring_prev->ring_next = o;
		h->ring_prev = o;
	}
	pthread_mutex_unlock(&p->lock);
}

void vmo__pool_unlink(vmo_pool_t *p, vmo_t *o)
{
	pthread_mutex_lock(&p->lock);
	while (o->pins)
		pthread_cond_wait(&p->done_cv, &p->lock);
	if (o->unlinked) {
		/* (a hidden node leaves before it is merged, clone.c) */
		pthread_mutex_unlock(&p->lock);
		return;
	}
	o->unlinked = true;
	if (o->ring_next == o) {
		p->hand = NULL;
	} else {
		o->ring_prev->ring_next = o->ring_next;
		o->ring_next->ring_prev = o->ring_prev;
		if (p->hand == o)
			p->hand = o->ring_next;
	}
	o->ring_next = o->ring_prev = NULL;
	pthread_mutex_unlock(&p->lock);
}

/*
 * Evict up to `want` pages, moving the hand through the ring, and stop
 * early once the pool is at or below `floor` pages (objects freed or
 * decommitted meanwhile: evicting more would only cost refaults).  Gives up
 * after two revolutions' worth of scanning without reaching `want` (by
 * then every page was offered twice: once to lose its reference, once to
 * go) or after visiting every object twice without finding a resident
 * page.  Returns pages evicted.  No lock held.
 */
static uint64_t sweep(vmo_pool_t *p, uint64_t want, uint64_t floor)
{
	uint64_t got = 0, scanned_total = 0, empty = 0;
	uint64_t limit = 2 * ATOMIC_LOAD(&p->resident_pages) + 4096;
	ATOMIC_INC(&p->st_reclaim_runs);
	while (got < want && ATOMIC_LOAD(&p->resident_pages) > floor) {
		pthread_mutex_lock(&p->lock);
		vmo_t *o = p->hand;
		if (o)
			o->pins++;
		uint64_t nobj = ATOMIC_LOAD(&p->objects);
		pthread_mutex_unlock(&p->lock);
		if (!o)
			break;
		uint64_t scanned;
		bool wrapped;
		uint64_t e = vmo__obj_evict(o, want - got, &scanned, &wrapped);
		pthread_mutex_lock(&p->lock);
		o->pins--;
		if (wrapped && p->hand == o)
			p->hand = o->ring_next;
		pthread_cond_broadcast(&p->done_cv);
		pthread_mutex_unlock(&p->lock);
		got += e;
		scanned_total += scanned;
		if (scanned_total > limit)
			break;
		if (!scanned && wrapped && ++empty > 2 * nobj + 2)
			break;
	}
	return got;
}

/* After a sweep that evicted `got` pages: the pool is stuck over budget
 * when it is above it and the sweep found nothing at all to evict.  Each
 * entry into that state is one over-budget event. */
static void note_budget(vmo_pool_t *p, uint64_t got)
{
	bool stuck = !got && ATOMIC_LOAD(&p->resident_pages) > p->budget;
	bool was = __atomic_exchange_n(&p->over, stuck, __ATOMIC_RELAXED);
	if (stuck && !was)
		ATOMIC_INC(&p->st_over_budget);
}

void vmo__pool_charge_slow(vmo_pool_t *p)
{
	uint64_t res = ATOMIC_LOAD(&p->resident_pages);
	if (p->reclaimer_running &&
	    !__atomic_exchange_n(&p->kick, 1, __ATOMIC_ACQ_REL)) {
		pthread_mutex_lock(&p->lock);
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->lock);
	}
	if (res <= p->budget)
		return;
	/* The budget itself is exceeded: the reclaimer is behind.  Evict
	 * here what the budget needs, never waiting; when the last sweep
	 * found nothing at all to evict (the pool is stuck over budget), do
	 * not rescan on every fill: the reclaimer keeps trying and clears
	 * the state when it evicts again. */
	if (ATOMIC_LOAD(&p->over) && p->reclaimer_running)
		return;
	ATOMIC_INC(&p->st_direct);
	uint64_t extra = MIN((uint64_t)DIRECT_EXTRA, p->budget / 8);
	note_budget(p, sweep(p, res - p->budget + extra, p->budget - extra));
}

void vmo__pool_cold(vmo_t *o, uint64_t pg, uint64_t end)
{
	vmo_pool_t *p = o->pool;
	if (!p->budget)
		return;
	vmo__obj_make_cold(o, pg, end);
	pthread_mutex_lock(&p->lock);
	if (!o->unlinked)
		p->hand = o;
	pthread_mutex_unlock(&p->lock);
}

static void *reclaimer_main(void *arg)
{
	vmo_pool_t *p = arg;
	/* Normal priority on purpose: SCHED_IDLE was tried (faulting
	 * threads would preempt it at once) and measured no better, and a
	 * starved reclaimer holding an object's lock would stall that
	 * object's faults. */
	pthread_mutex_lock(&p->lock);
	while (!__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
		uint64_t res = ATOMIC_LOAD(&p->resident_pages);
		if (res <= p->high) {
			__atomic_store_n(&p->kick, 0, __ATOMIC_RELEASE);
			/* re-check after clearing kick: a charge that saw
			 * kick set did not signal */
			if (ATOMIC_LOAD(&p->resident_pages) <= p->high)
				pthread_cond_wait(&p->cv, &p->lock);
			continue;
		}
		pthread_mutex_unlock(&p->lock);
		bool stuck = false;
		while ((res = ATOMIC_LOAD(&p->resident_pages)) > p->low) {
			uint64_t got = sweep(p, MIN(res - p->low,
						    (uint64_t)RECLAIM_BATCH),
					     p->low);
			note_budget(p, got);
			if (!got) {
				stuck = true;
				break;
			}
			if (__atomic_load_n(&p->stop, __ATOMIC_RELAXED))
				break;
		}
		pthread_mutex_lock(&p->lock);
		if (stuck && !__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
			/* nothing evictable now: pages may become evictable
			 * (fills end, swap frees up, locks go); look again
			 * in a while rather than spin */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 10 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&p->cv, &p->lock, &ts);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int vmo__reclaim_start(vmo_pool_t *p)
{
	int r = pthread_create(&p->reclaimer, NULL, reclaimer_main, p);
	if (r)
		return -r;
	p->reclaimer_running = true;
	return 0;
}

void vmo__reclaim_stop(vmo_pool_t *p)
{
	if (!p->reclaimer_running)
		return;
	pthread_mutex_lock(&p->lock);
	__atomic_store_n(&p->stop, true, __ATOMIC_RELAXED);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->reclaimer, NULL);
	p->reclaimer_running = false;
}
