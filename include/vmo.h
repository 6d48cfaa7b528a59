/*
 * libvmo — virtual-memory objects, pagers and a userfaultfd region mapper
 * for ordinary Linux processes.
 *
 * The model (see docs/design.md):
 *
 *   vmo_pool_t   frame budget, swap and reclaim.  Every object belongs to a
 *                pool.
 *   vmo_t        a memory object: a sized, page-granular container of frames
 *                (a "container" in Hurd-L4, a "dataspace" in L4Env, a
 *                vm_object in FreeBSD).  Its frames live in a memfd.  Its
 *                pager fills absent pages (zeros, a file, user callbacks) and
 *                takes dirty pages back.
 *   vmo_space_t  a region mapper: a database of mappings plus handler
 *                threads that resolve the page faults of those mappings.
 *
 * Conventions.  Every call that can fail returns 0 or a negative errno
 * value and never sets the global errno; constructors hand their result back
 * through an out-parameter, which is left untouched on failure.  Offsets and
 * lengths are bytes and must be multiples of VMO_PAGE_SIZE unless a call says
 * otherwise.  A call that fails changes nothing.  Handles are not reference
 * checked: using a handle after it was destroyed is undefined behaviour,
 * except for the copy-on-write calls (vmo_clone, vmo_copy*, vmo_gather),
 * which recognise an object whose last reference went away and return
 * -EBADF.
 *
 * Threads.  All calls are thread-safe.  Pager callbacks run in library or
 * caller threads with no library lock held; they must not touch memory
 * mapped through libvmo, and must not call vmo_space_destroy().
 *
 * fork().  Mappings made by libvmo are not inherited by a child process
 * (MADV_DONTFORK): in the child those addresses are unmapped and touching
 * them raises SIGSEGV, so the child can never see stale or wrong data.  Every
 * call on a pool, object or space created before the fork returns -ECHILD in
 * the child, and the destroy calls do nothing there; the child may create new
 * pools and use them normally.  The parent is unaffected.
 */
#ifndef VMO_H
#define VMO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h> /* PROT_READ, PROT_WRITE */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define VMO_API __attribute__((visibility("default")))
#else
#define VMO_API
#endif

#define VMO_VERSION_MAJOR 0
#define VMO_VERSION_MINOR 1

/* The page size of every object and mapping. */
#define VMO_PAGE_SIZE 4096u

/* Largest object: 256 TiB. */
#define VMO_MAX_SIZE (1ull << 48)

typedef struct vmo_pool vmo_pool_t;   /* frame budget, swap, reclaim */
typedef struct vmo vmo_t;             /* memory object */
typedef struct vmo_space vmo_space_t; /* region mapper */

/* ------------------------------------------------------------------ errors */

/*
 * Library-specific diagnostic codes.  They are never returned by a call;
 * they appear in statistics (vmo_space_stats_t.kernel_faults) and
 * vmo_strerror() explains them.
 */
#define VMO_EUSERMODE (-10001) /* uffd is user-mode only: syscalls touching
				  absent mapped pages fail with EFAULT */

/* A static, human-readable text for a negative errno or VMO_E* code. */
VMO_API const char *vmo_strerror(int err);

/* -------------------------------------------------------------------- pool */

/* Smallest non-zero frame budget: 4 pages (a string move between two
 * mappings, both operands across a page boundary). */
#define VMO_MIN_BUDGET (4ull * VMO_PAGE_SIZE)

typedef struct vmo_pool_options {
	size_t size;    /* sizeof(vmo_pool_options_t): lets the struct grow */
	unsigned flags; /* must be 0 */
	/* Frame budget: the most memory the frames of the pool's objects
	 * (and, later, the pre-images kept for their clones) may take, in
	 * bytes, a multiple of VMO_PAGE_SIZE.  0 = unlimited (no eviction).
	 * With a budget the pool evicts: clean pages are dropped and
	 * refetched from their pager; dirty pages of write-back objects are
	 * written back first; pages of anonymous and VMO_FILE_PRIVATE
	 * objects go to swap.  A page whose only copy is in memory is never
	 * dropped: without swap (or with swap full) such pages stay and the
	 * pool runs over budget, counted in vmo_pool_stats_t.  At least
	 * VMO_MIN_BUDGET: one instruction may need that many pages mapped at
	 * once, and a budget that cannot hold them could never let it
	 * complete.  A pool's threads that all fault at once need about
	 * that much each. */
	uint64_t budget_bytes;
	/* Swap file for anonymous and VMO_FILE_PRIVATE pages: created (mode
	 * 0600) if absent, and then removed when the pool goes away; an
	 * existing file is used from offset 0 and its blocks are released
	 * (hole punched) at the end.  NULL = no swap. */
	const char *swap_path;
	uint64_t swap_bytes; /* swap capacity, a multiple of VMO_PAGE_SIZE;
				required (> 0) with swap_path.  The file is
				sparse: only slots in use take disk space */
	/* Reclaim watermarks in bytes, 0 = default.  A reclaimer thread
	 * starts evicting when resident frames exceed high_watermark_bytes
	 * and stops below low_watermark_bytes, in batches, off the fault
	 * path; only a fill that would exceed the budget itself reclaims
	 * synchronously.  Defaults: high = budget - budget/64, low = high -
	 * budget/64 (at least one page apart).  A watermark given alone
	 * moves the other's default.  Need low <= high <= budget.  (A fill
	 * claims at most min(budget/8, 2 MiB) at once.) */
	uint64_t low_watermark_bytes;
	uint64_t high_watermark_bytes;
} vmo_pool_options_t;

/*
 * Create a pool.  opts may be NULL for defaults (no budget, no swap).
 * Errors: -EINVAL  opts->size is 0 or larger than this library knows with
 *                  non-zero unknown tail bytes, opts->flags is not 0, a
 *                  byte count not page aligned, a budget below
 *                  VMO_MIN_BUDGET, swap_bytes == 0 with a
 *                  swap_path (or swap_bytes without one), watermarks out
 *                  of order or set without a budget;
 *         -EFBIG   swap_bytes above 2^44 (2^32 slots);
 *         -EACCES / -ENOENT / -EISDIR / -EROFS / -ENOSPC ...  the swap
 *                  file cannot be opened, created or sized (errno of
 *                  open / ftruncate);
 *         -ENOMEM, -EAGAIN  out of memory, or no thread for reclaim.
 */
VMO_API int vmo_pool_create(const vmo_pool_options_t *opts, vmo_pool_t **out);

/*
 * Drop the caller's reference on a pool.  Objects still alive keep the pool
 * alive until they go away.  NULL is ignored.
 */
VMO_API void vmo_pool_destroy(vmo_pool_t *pool);

typedef struct vmo_pool_stats {
	uint32_t size;    /* in: sizeof(vmo_pool_stats_t) */
	uint32_t version; /* out: VMO_POOL_STATS_VERSION */
	uint64_t objects;          /* live objects */
	uint64_t resident_pages;   /* frames held by the pool's objects */
	uint64_t dirty_pages;      /* pages known dirty (see vmo_stats_t) */
	uint64_t writeback_errors; /* failed write-backs, incl. at release
				      and at eviction */
	/* New fields go here, at the end, so older callers keep working. */
	uint64_t budget_pages;     /* 0 = unlimited */
	uint64_t swapped_pages;    /* pages whose content is only in swap */
	uint64_t swap_slots;       /* swap capacity in pages */
	uint64_t swap_slots_used;  /* slots holding a page (swapped, or a
				      clean copy of a resident page) */
	uint64_t pages_filled;     /* pages made resident from a pager,
				      swap or zeros: the pool's misses */
	uint64_t evictions;        /* pages evicted (frames released) */
	uint64_t writebacks;       /* dirty pages written back to their
				      pager by eviction */
	uint64_t swap_outs;        /* pages written to swap */
	uint64_t swap_ins;         /* pages read back from swap */
	uint64_t refaults;         /* fills of pages evicted earlier */
	uint64_t over_budget_events; /* times a fill left the pool above its
				      budget because nothing could be
				      evicted (all busy, locked, or only
				      copies with swap missing or full) */
	uint64_t swap_full_events; /* dirty anonymous / private pages that
				      eviction had to keep because swap was
				      full or missing (per page and attempt) */
	uint64_t ref_clears;       /* referenced pages given a second
				      chance (their entries zapped to
				      sample the next reference) */
	uint64_t reclaim_runs;     /* reclaim batches (thread or direct) */
	uint64_t direct_reclaims;  /* batches run by a filling thread
				      because the budget itself was hit */
	/* copy-on-write (vmo_clone, vmo_copy) */
	uint64_t hidden_nodes;     /* live hidden nodes (not in objects) */
	uint64_t hidden_pages;     /* pages they hold, resident or swapped
				      (also in resident_pages and
				      swapped_pages) */
	uint64_t cow_preserved;    /* pre-images stored for snapshots */
	uint64_t cow_copies;       /* pages copied into clones from what
				      they share */
	uint64_t cow_dropped;      /* weak clones' pages dropped */
	uint64_t cow_invalidated;  /* at-least-on-write clones' copies of a
				      page their source wrote */
	uint64_t cow_merged;       /* pre-images moved into an older node
				      when a newer one went away */
} vmo_pool_stats_t;
#define VMO_POOL_STATS_VERSION 2

/*
 * Read pool counters.  st->size must be set by the caller; at most that many
 * bytes are written.
 * Errors: -EINVAL st->size smaller than the first two fields; -ECHILD after
 *         fork (see above).
 */
VMO_API int vmo_pool_stats(vmo_pool_t *pool, vmo_pool_stats_t *st);

/* ----------------------------------------------------------------- objects */

/* vmo_create_file flags: exactly one of */
#define VMO_FILE_SHARED 0x1u  /* dirty pages are written back to the file */
#define VMO_FILE_PRIVATE 0x2u /* the file is never written */

/*
 * Create an anonymous, zero-filled object of `size` bytes.  Objects are
 * sparse: only touched pages cost memory.  flags must be 0.
 * Errors: -EINVAL size 0 or not page aligned, or unknown flags;
 *         -EFBIG  size > VMO_MAX_SIZE;
 *         -ENOMEM / -EMFILE / -ENFILE  resources exhausted;
 *         -ECHILD pool created before fork().
 */
VMO_API int vmo_create(vmo_pool_t *pool, uint64_t size, unsigned flags,
		       vmo_t **out);

/*
 * Create an object whose pages come from bytes [offset, offset+size) of a
 * regular file (or memfd).  The library dup()s fd; the caller may close it.
 * The range may end at most in the page that contains end of file: bytes of
 * that page beyond end of file read as zeros and are never written back.
 * VMO_FILE_SHARED writes dirty pages back on vmo_sync() and when the last
 * reference goes; if fd is not open for writing (or is O_APPEND) the object
 * is read-only: it can be read and mapped PROT_READ, but vmo_write and
 * writable mappings fail with -EACCES.  VMO_FILE_PRIVATE reads the file and
 * keeps every change in memory; it is always writable.
 * Errors: -EINVAL  offset or size misaligned, size 0, flags not exactly one
 *                  of VMO_FILE_SHARED / VMO_FILE_PRIVATE, or the range
 *                  extends past the page containing end of file;
 *         -EBADF   fd is not an open descriptor;
 *         -ENODEV  fd is not a regular file or memfd;
 *         -EACCES  fd is not open for reading;
 *         -EFBIG   size > VMO_MAX_SIZE;  -ENOMEM, -EMFILE;  -ECHILD.
 */
VMO_API int vmo_create_file(vmo_pool_t *pool, int fd, uint64_t offset,
			    uint64_t size, unsigned flags, vmo_t **out);

typedef struct vmo_pager_ops {
	/* Fill buf with len bytes of the object at offset (page aligned,
	 * len a multiple of the page size).  0 or -errno. */
	int (*read)(void *ctx, uint64_t offset, void *buf, size_t len);
	/* Write back len bytes at offset.  NULL = read-only pager: the
	 * object cannot be mapped writable and vmo_write returns -EACCES. */
	int (*write)(void *ctx, uint64_t offset, const void *buf, size_t len);
	/* The object's last reference is gone (after the final write-back).
	 * May be NULL. */
	void (*release)(void *ctx);
} vmo_pager_ops_t;

/*
 * Create an object filled and written back by user callbacks.  read is
 * called exactly once per page fill, even when many threads fault the same
 * page at once, and never with a library lock held.  flags must be 0.
 * Errors: -EINVAL size 0 / misaligned, ops or ops->read NULL, unknown flags;
 *         -EFBIG; -ENOMEM; -ECHILD.
 */
VMO_API int vmo_create_pager(vmo_pool_t *pool, uint64_t size,
			     const vmo_pager_ops_t *ops, void *ctx,
			     unsigned flags, vmo_t **out);

/* Take / drop a reference.  A mapping holds one.  On the last vmo_unref a
 * write-back object writes its dirty pages back (errors are counted in the
 * pool's writeback_errors: call vmo_sync first to see them), then the
 * pager's release runs.  NULL is ignored by both. */
VMO_API void vmo_ref(vmo_t *obj);
VMO_API void vmo_unref(vmo_t *obj);

/* Size in bytes (0 for NULL). */
VMO_API uint64_t vmo_size(const vmo_t *obj);

/*
 * Copy bytes out of / into an object without a mapping.  offset and len
 * need no alignment; len may be 0 (no-op).  Absent pages are filled by the
 * pager first (vmo_write skips the fill for pages it overwrites whole).
 * Errors: -EINVAL  buf NULL with len > 0;
 *         -ERANGE  [offset, offset+len) not inside the object;
 *         -EIO     the pager (or the pool's swap file) failed to fill a
 *                  page (nothing copied from that
 *                  page on; for vmo_write nothing was written);
 *         -ENODATA a page read is dropped (a weak clone's, see vmo_clone),
 *                  or a write covers part of one (nothing copied from that
 *                  page on; writing a dropped page whole is fine);
 *         -EACCES  vmo_write on an object whose pager cannot write back
 *                  (a file opened read-only, a pager without write);
 *         -ENOMEM; -ECHILD.
 */
VMO_API int vmo_read(vmo_t *obj, uint64_t offset, void *buf, size_t len);
VMO_API int vmo_write(vmo_t *obj, uint64_t offset, const void *buf,
		      size_t len);

/*
 * vmo_commit: make [offset, offset+len) resident now.
 * vmo_decommit: release the frames of the range.  Anonymous objects then
 *   read zeros there; pager-backed objects refetch from the pager, after
 *   dirty pages of write-back objects were written back first (so decommit
 *   never loses data that has a backing store; VMO_FILE_PRIVATE changes are
 *   discarded).  Mappings of the range fault the pages in again.  A
 *   write through a mapping that races with vmo_decommit of the same
 *   range may be discarded with it, as with any release of data.
 * vmo_sync: write dirty pages of the range back to the pager (file or
 *   write callback); no-op for objects without write-back.  If eviction
 *   failed to write a page of the object back since the previous
 *   vmo_sync (the page was kept, dirty and resident), this vmo_sync
 *   returns -EIO even when its own writes succeed.
 * On a clone, vmo_decommit discards the clone's own changes in the range
 * (see vmo_clone); on an object with clones, a decommit that changes what
 * it shows is a change for them like a write.
 * Errors (all three): -EINVAL misaligned offset/len or len 0;
 *         -ERANGE range outside the object;
 *         -EIO    pager or swap read (commit) or write-back (sync,
 *                 decommit) failed: failed pages stay dirty and resident;
 *         -ENODATA (commit) a page of the range is dropped;
 *         -ENOMEM; -ECHILD.
 */
VMO_API int vmo_commit(vmo_t *obj, uint64_t offset, uint64_t len);
VMO_API int vmo_decommit(vmo_t *obj, uint64_t offset, uint64_t len);
VMO_API int vmo_sync(vmo_t *obj, uint64_t offset, uint64_t len);

typedef struct vmo_stats {
	uint32_t size;    /* in: sizeof(vmo_stats_t) */
	uint32_t version; /* out: VMO_STATS_VERSION */
	uint64_t size_bytes;
	uint64_t resident_pages;
	uint64_t dirty_pages;   /* known dirty: vmo_write, and writes through
				   mappings as of the last vmo_sync scan */
	uint64_t mappings;      /* live mappings */
	uint64_t faults;        /* faults resolved on this object, any space */
	uint64_t pages_filled;  /* pages made resident by the pager */
	uint64_t pager_reads;   /* read callbacks / file reads */
	uint64_t pager_read_bytes;
	uint64_t pager_writes;  /* write-back calls */
	uint64_t pager_write_bytes;
	uint64_t pager_errors;  /* failed reads + failed writes */
	uint64_t decommitted_pages;
	/* New fields go here, at the end, so older callers keep working. */
	uint64_t swapped_pages; /* pages whose content is only in swap */
} vmo_stats_t;
#define VMO_STATS_VERSION 1

/* Errors: -EINVAL st->size too small; -ECHILD. */
VMO_API int vmo_stats(vmo_t *obj, vmo_stats_t *st);

/* ----------------------------------------------------------- copy-on-write */

/*
 * Clones and copies share pages copy-on-write (docs/design.md,
 * "Copy-on-write").  Cloning never remaps the source or drops its page
 * tables: its mappings keep running.  The work of a clone is proportional
 * to the pages the source was written in since its previous clone (the
 * first clone of a mapped object write-protects its resident pages once);
 * the first write to a shared page after that pays for keeping the old
 * content.  Pre-images live in hidden nodes that users never see; they
 * count in the pool's budget and are paged like any object's pages.
 * Dropping a clone frees (or folds into an older node) what only it could
 * see, pages and swap slots alike.
 *
 * A clone is an object like any other: it can be read, written, mapped,
 * committed, decommitted, cloned and copied.  It never writes back to a
 * pager (a clone of a file object is a private copy).  vmo_decommit on a
 * clone discards its own changes in the range: it shows its parent there
 * again (a weak clone's discarded pages read as dropped).  A clone keeps
 * its source alive, with the source's pager (vmo_pager_ops_t.release runs
 * when the last clone that sees through it is gone); the source's
 * write-back still happens at its last vmo_unref.
 */

/* vmo_clone flags: exactly one of */
#define VMO_CLONE_SNAPSHOT 0x1u /* sees the source as it was at the clone */
#define VMO_CLONE_AT_LEAST_ON_WRITE 0x2u /* sees the source's later writes
					    to a page until it writes that
					    page itself */
#define VMO_CLONE_WEAK 0x4u     /* like a snapshot, but nothing is kept for
				   it: a page the source writes (or
				   decommits, or copies into) that the clone
				   has not written itself is dropped */

/*
 * Make *out, a clone of bytes [offset, offset+len) of src (seed 001's
 * create_from).  Its page 0 is src's page offset / VMO_PAGE_SIZE.
 *
 * SNAPSHOT: the clone sees src as it was at this call; later changes on
 * either side -- through mappings, vmo_write, vmo_copy into either,
 * decommit, file write-back -- are invisible to the other.  Clones of
 * file-backed and pager objects keep their content after the source is
 * written and synced back.
 * AT_LEAST_ON_WRITE: a page the clone has not written shows what src
 * shows now, through vmo_read and mappings alike.
 * WEAK: like SNAPSHOT until src changes a page the clone has not written
 * itself; then that page is dropped: vmo_read of it returns -ENODATA and a
 * mapping's access raises SIGBUS; writing it whole makes it the clone's
 * own again.
 *
 * Cost: src's mappings keep running, at their addresses and with their
 * pages mapped; the call write-protects the pages written since src's
 * previous clone (about a microsecond each), or every resident page at
 * src's first clone.  The first write to each page afterwards keeps its
 * old content for the clone (one fault per page, or per cluster for
 * sequential and dense writers; VMO_ADV_RANDOM: per page).
 *
 * Errors: -EINVAL  src or out NULL, flags not exactly one of the kinds,
 *                  offset or len misaligned, len 0;
 *         -ERANGE  range outside src;
 *         -EBADF   src was destroyed (its last reference went away);
 *         -ENOMEM  out of memory, or the source's mappings could not be
 *                  prepared (vm.max_map_count);
 *         -ECHILD.
 * On error nothing changed and *out is untouched.
 */
VMO_API int vmo_clone(vmo_t *src, uint64_t offset, uint64_t len,
		      unsigned flags, vmo_t **out);

/* vmo_copy* / vmo_gather flags */
#define VMO_COPY_EAGER 0x1u /* copy the bytes now instead of sharing */

/*
 * Copy pages of src into dst: afterwards dst shows, in the destination
 * pages, what src showed in the source pages at the call (a snapshot, as
 * VMO_CLONE_SNAPSHOT).  Between objects of the same pool the pages are
 * shared copy-on-write; across pools, with VMO_COPY_EAGER, or into an
 * object that writes back to a pager (whose pager must see the bytes) they
 * are copied.  Destination pages that had content lose it.
 *
 *   vmo_copy          len bytes from src_off to dst_off (seed 001's
 *                     container_copy)
 *   vmo_copy_scatter  n pages from src_off to the pages dst_pages[0..n)
 *   vmo_copy_gather   the pages src_pages[0..n) to n pages from dst_off
 *   vmo_gather        a new anonymous object of n pages whose page i is
 *                     src's page pages[i] (seed 001's create_gather)
 *
 * Offsets and len are bytes (page aligned); arrays hold page indices.
 * Errors: -EINVAL  NULL object, array or out; misaligned offset or len;
 *                  len or n 0; unknown flags; dst_pages naming a page
 *                  twice; src and dst the same object with overlapping
 *                  source and destination pages;
 *         -ERANGE  a range or page index outside its object;
 *         -EACCES  dst cannot be written;
 *         -ENODATA a source page is dropped (src is, or sees through, a
 *                  weak clone);
 *         -EBADF   src or dst was destroyed;
 *         -EIO     (eager copies) a pager or swap read failed: pages
 *                  before the failing one may have been copied;
 *         -ENOMEM; -EFBIG (vmo_gather: n too large); -ECHILD.
 * Apart from -EIO, on error nothing changed.
 */
VMO_API int vmo_copy(vmo_t *src, uint64_t src_off, vmo_t *dst,
		     uint64_t dst_off, uint64_t len, unsigned flags);
VMO_API int vmo_copy_scatter(vmo_t *src, uint64_t src_off, vmo_t *dst,
			     const uint64_t *dst_pages, size_t n,
			     unsigned flags);
VMO_API int vmo_copy_gather(vmo_t *src, const uint64_t *src_pages, size_t n,
			    vmo_t *dst, uint64_t dst_off, unsigned flags);
VMO_API int vmo_gather(vmo_t *src, const uint64_t *pages, size_t n,
		       unsigned flags, vmo_t **out);

/* -------------------------------------------------------------- write logs */

/*
 * A write log reports the pages of an object whose content changed since
 * the log's previous collect (or its start), whatever changed them: stores
 * through any mapping in any space, vmo_write, vmo_copy / scatter / gather
 * into the object, vmo_decommit, and -- for at-least-on-write and weak
 * clones -- their source's writes to pages they show through.  Reads,
 * vmo_commit, being the source of a copy, eviction, refills, swap-in,
 * write-back and copy-on-write pre-images are not changes: a page that was
 * only read is never reported.  A write that races with vmo_log_collect is
 * reported by that collect or the next one, never by neither.
 *
 * A log may report a page that was not written (never the reverse): pages
 * unprotected together with a written neighbour by fault-around, every
 * resident page once when a mapping of the object moves to another
 * userfaultfd set (the first clone of a write-back object), every resident
 * page of a writably mapped object when the kernel lacks a write log.
 * vmo_log_stats counts such pages.
 *
 * Several logs of one object are independent: each collect starts a new
 * epoch for its own log only.  A log holds a reference on its object.
 *
 * Cost: while an object has a log, the first write to each page after a
 * collect is seen by the kernel (write-back objects and objects mapped
 * after the log started: a trap, WP_ASYNC) or by a handler thread (objects
 * mapped before it started, and objects with clones: a fault round trip);
 * a collect costs what the object's mappings hold resident plus what was
 * written.
 */
typedef struct vmo_log vmo_log_t;
typedef struct vmo_range {
	uint64_t offset, len; /* bytes, page aligned */
} vmo_range_t;

/*
 * Start a log of obj.  flags must be 0.
 * Errors: -EINVAL obj or out NULL, flags not 0;
 *         -EBADF  obj was destroyed;
 *         -EACCES obj can never be written (a read-only file or pager
 *                 object: nothing to log);
 *         -ENOMEM; -ECHILD.
 */
VMO_API int vmo_log_start(vmo_t *obj, unsigned flags, vmo_log_t **out);

/*
 * The pages written since the previous collect (or the start), as sorted,
 * coalesced byte ranges in an array the caller frees with free() (NULL
 * when *n is 0).  A new epoch begins atomically with the call.
 * Errors: -EINVAL log, ranges or n NULL;
 *         -ENOMEM nothing was collected: the next collect reports these
 *                 pages too;
 *         -ECHILD.
 */
VMO_API int vmo_log_collect(vmo_log_t *log, vmo_range_t **ranges, size_t *n);

/* Stop the log and free it; drops its object reference.  NULL ignored. */
VMO_API void vmo_log_stop(vmo_log_t *log);

typedef struct vmo_log_stats {
	uint32_t size;    /* in: sizeof(vmo_log_stats_t) */
	uint32_t version; /* out: VMO_LOG_STATS_VERSION */
	uint64_t collects;
	uint64_t pages_reported;    /* pages in all collects so far */
	uint64_t pages_speculative; /* of those, pages marked written
				       without an observed write (see
				       above): an upper bound on the pages
				       reported that were not written */
} vmo_log_stats_t;
#define VMO_LOG_STATS_VERSION 1

/* Errors: -EINVAL log or st NULL, st->size too small; -ECHILD. */
VMO_API int vmo_log_stats(vmo_log_t *log, vmo_log_stats_t *st);

/* ------------------------------------------------- checkpoints and images */

/*
 * A checkpoint image holds the contents of n objects as of one instant:
 * one consistent cut across all of them, taken while threads keep writing
 * through mappings and vmo_write (the instant costs what a snapshot clone
 * costs; writers are never stopped).  docs/image-format.md describes the
 * file: versioned, every byte covered by a checksum, optionally compressed
 * (zstd) per block, and optionally incremental to a parent image (the
 * pages that did not change refer to it).  Zero pages are not stored;
 * sparse objects stay sparse.
 */
#define VMO_CKPT_COMPRESS 0x1u /* compress data blocks with zstd */
#define VMO_CKPT_NO_SYNC 0x2u  /* skip the fsyncs (not durable at return) */

typedef struct vmo_ckpt_options {
	size_t size;        /* sizeof(vmo_ckpt_options_t) */
	/* The image this one is incremental to; NULL = a full image.  Only
	 * pages whose content differs from what the parent chain holds are
	 * stored: found from the write log when this process wrote the
	 * parent from the same objects, else by comparing with the parent's
	 * per-page checksums (so chains continue across processes).  The
	 * parent must stay where it is (it is named relative to the new
	 * image's directory) while the chain is used. */
	const char *parent;
	unsigned flags;     /* VMO_CKPT_* */
	int compress_level; /* with VMO_CKPT_COMPRESS: zstd level 1..19;
			       0 = library default (3) */
	/* Called from the writing thread with the bytes of object content
	 * done and in all (zero and unchanged pages count as done). */
	void (*progress)(void *arg, uint64_t done_bytes, uint64_t total_bytes);
	void *progress_arg;
} vmo_ckpt_options_t;
typedef struct vmo_ckpt vmo_ckpt_t;

/*
 * Write an image of objs[0..n) to path.  The image is written under a
 * temporary name in path's directory, fsync'd, renamed over path, and the
 * directory fsync'd (VMO_CKPT_NO_SYNC skips the fsyncs); on failure, or if
 * the process dies at any point, path is untouched (a previous image there
 * stays intact).  Temporary files left by writers that died are removed
 * by the next checkpoint into the same directory.
 * Errors: -EINVAL objs or path NULL, n 0 or above 2^20, an object twice,
 *                 opts->size too small or unknown non-zero tail, unknown
 *                 flags, compress_level outside 0..19;
 *         -EBADF  an object was destroyed;
 *         -ENOENT the parent (or an image of its chain) does not exist,
 *                 or path's directory does not exist;
 *         -EBADMSG the parent chain is corrupt;
 *         -ENOTSUP the parent has an unknown format version;
 *         -ENODATA an object shows a dropped page (a weak clone's);
 *         -EIO    a pager or swap read of an object failed, or writing
 *                 the image failed;
 *         -ENOSPC, -EDQUOT, -EACCES, -EROFS ...  errno of creating or
 *                 writing the file;
 *         -ENOMEM; -ECHILD.
 * The objects are never changed, whatever the result.
 */
VMO_API int vmo_checkpoint(vmo_t *const *objs, size_t n, const char *path,
			   const vmo_ckpt_options_t *opts);
/*
 * The same in the background: returns once the instant is taken; a
 * thread of the library writes the image.  vmo_checkpoint_wait returns
 * the result of the whole checkpoint (the errors above) and frees c.
 * Errors of vmo_checkpoint_start: those found before the instant (bad
 * input, parent missing or corrupt, -ENOMEM, -EAGAIN: no thread).
 */
VMO_API int vmo_checkpoint_start(vmo_t *const *objs, size_t n,
				 const char *path,
				 const vmo_ckpt_options_t *opts,
				 vmo_ckpt_t **out);
VMO_API int vmo_checkpoint_wait(vmo_ckpt_t *c);

#define VMO_RESTORE_LAZY 0x1u     /* pages come in from the image chain on
				     first touch */
#define VMO_RESTORE_PREFETCH 0x2u /* with LAZY: a background thread brings
				     the rest in */

/*
 * Create the objects of the image at path (with its parent chain) in
 * pool: objs[i] is the image's object i, an anonymous object (writable,
 * clonable, paged by the pool's budget) of the size it had.  *n gets the
 * number of objects of the image.
 * Eager (flags 0): every page is read and checked before the call returns.
 * VMO_RESTORE_LAZY: the objects are filled from the image chain on first
 * touch (a clean page evicted under a budget is read from the image
 * again); the image files must stay in place while the objects live.  A
 * page whose data fails its checksum then fails alone: vmo_read returns
 * -EIO and a mapping's access raises SIGBUS (vmo_stats_t.pager_errors
 * counts it).
 * Errors: -EINVAL pool, path, objs or n NULL, unknown flags, PREFETCH
 *                 without LAZY;
 *         -ENOBUFS max is below the number of objects (*n says how many);
 *         -ENOENT the image or an image of its chain does not exist;
 *         -EBADMSG the image or its chain is corrupt (a wrong parent
 *                 included); eager: a data block too;
 *         -ENOTSUP unknown format version;
 *         -EIO, -ENOMEM, -EFBIG, -ECHILD.
 * On error no object is created.
 */
VMO_API int vmo_restore(vmo_pool_t *pool, const char *path, unsigned flags,
			vmo_t **objs, size_t max, size_t *n);

/*
 * Check the image at path and its whole parent chain: every record and
 * every checksum.  0 if intact.
 * Errors: -EINVAL path NULL; -ENOENT the image or a parent is missing;
 *         -EBADMSG a flipped byte, a truncation, a wrong parent;
 *         -ENOTSUP unknown format version; -EIO, -ENOMEM.
 */
VMO_API int vmo_image_verify(const char *path);

/* ------------------------------------------------------------------ spaces */

/* vmo_space_options_t.flags */
#define VMO_SPACE_USER_MODE_ONLY 0x1u /* use a user-mode-only userfaultfd
					  even where a full one is allowed */

typedef struct vmo_space_options {
	size_t size;              /* sizeof(vmo_space_options_t) */
	unsigned handler_threads; /* 0 = number of online CPUs; max 64.
				     Each has a userfaultfd of its own; a
				     mapping is served in up to this many
				     contiguous parts (>= 16 MiB), one per
				     handler, so threads that divide a
				     mapping into parts get a handler each */
	unsigned flags;           /* VMO_SPACE_* */
	uint64_t max_cluster;     /* largest fault-around cluster in bytes;
				     0 = 2 MiB; a power of two in
				     [VMO_PAGE_SIZE, 64 MiB] */
} vmo_space_options_t;

/*
 * Create a region mapper with its userfaultfd and handler threads.
 * Errors: -EINVAL  bad options (size, unknown flags, thread count > 64,
 *                  max_cluster not a power of two in range);
 *         -ENOSYS / -ENOTSUP  the kernel lacks userfaultfd on shared memory
 *                  with MISSING and MINOR faults (needs Linux >= 5.14);
 *         -EPERM   userfaultfd is not permitted at all;
 *         -ENOMEM, -EAGAIN (threads), -EMFILE;  -ECHILD.
 */
VMO_API int vmo_space_create(vmo_pool_t *pool, const vmo_space_options_t *opts,
			     vmo_space_t **out);

/*
 * Unmap every mapping still present (touching them afterwards raises
 * SIGSEGV), stop and join the handler threads, free everything.  Must not be
 * called from a pager callback.  NULL is ignored.
 */
VMO_API void vmo_space_destroy(vmo_space_t *space);

/* vmo_map flags */
#define VMO_MAP_FIXED 0x1u    /* map exactly at *addr, replacing what is
				 there (like MAP_FIXED) */
#define VMO_MAP_POPULATE 0x2u /* fill and map the whole range now */
#define VMO_MAP_LOCKED 0x4u   /* never evict pages of the mapped range while
				 this mapping exists (they still count in the
				 budget; add VMO_MAP_POPULATE to bring them
				 in now) */
#define VMO_MAP_FORCE_WRITE 0x8u /* with PROT_WRITE: break every
				 copy-on-write sharing of the range now and
				 map it all writable, so that no write fault
				 follows (seed 001's CONT_MAP_FORCE_WRITE);
				 implies VMO_MAP_POPULATE.  A later clone of
				 the object protects it again */

/*
 * Map [offset, offset+len) of obj with prot (PROT_READ, optionally
 * |PROT_WRITE, or PROT_NONE).  The mapping holds a reference on obj.
 * On success *addr is the mapping's address.
 * Errors: -EINVAL  misaligned offset, len or fixed address, len 0, unknown flags or
 *                  prot bits, addr NULL, VMO_MAP_FORCE_WRITE without
 *                  PROT_WRITE;
 *         -ERANGE  range outside the object;
 *         -EACCES  PROT_WRITE on an object that cannot be written back
 *                  (file opened read-only, pager without write);
 *         -EEXIST  VMO_MAP_FIXED over part of another libvmo mapping;
 *         -EIO     VMO_MAP_POPULATE and the pager failed (nothing mapped);
 *         -ENODATA VMO_MAP_POPULATE and a page is dropped (nothing mapped);
 *         -ENOMEM  out of memory or address space (vm.max_map_count);
 *         -ECHILD.
 */
VMO_API int vmo_map(vmo_space_t *space, vmo_t *obj, uint64_t offset,
		    size_t len, int prot, unsigned flags, void **addr);

/*
 * Unmap [addr, addr+len), which may cover several mappings or part of one
 * (the rest stays mapped: trimmed or split).  Writes made through the range
 * are remembered for the next vmo_sync.
 * Errors: -EINVAL misaligned or len 0;
 *         -ENOENT some page of the range is not mapped by this space
 *                 (nothing is unmapped then);
 *         -ENOMEM splitting would exceed vm.max_map_count; -ECHILD.
 */
VMO_API int vmo_unmap(vmo_space_t *space, void *addr, size_t len);

/*
 * Change the protection of [addr, addr+len) (all of it mapped by space).
 * Errors: -EINVAL misaligned, len 0, unknown prot bits;
 *         -ENOENT part of the range is not mapped by this space;
 *         -EACCES PROT_WRITE on an object that cannot be written back;
 *         -ENOMEM; -ECHILD.
 */
VMO_API int vmo_protect(vmo_space_t *space, void *addr, size_t len, int prot);

/* vmo_advise advice */
#define VMO_ADV_NORMAL 0     /* adaptive fault-around (default) */
#define VMO_ADV_SEQUENTIAL 1 /* largest clusters from the first fault */
#define VMO_ADV_RANDOM 2     /* one page per fault, write-protect faults
				included (no copy-on-write pre-image is
				kept early for a page not yet written) */
#define VMO_ADV_WILLNEED 3   /* fill and map the range now */
#define VMO_ADV_DONTNEED 4   /* drop the range's page-table entries; the
				data stays in the object and the next touch
				maps it again.  In a pool with a budget the
				range's pages become the next to evict */

/*
 * Errors: -EINVAL misaligned, len 0, unknown advice;
 *         -ENOENT part of the range is not mapped by this space;
 *         -EIO    WILLNEED and the pager failed;
 *         -ENODATA WILLNEED and a page is dropped; -ECHILD.
 */
VMO_API int vmo_advise(vmo_space_t *space, void *addr, size_t len,
		       int advice);

#define VMO_LAT_BUCKETS 32
typedef struct vmo_space_stats {
	uint32_t size;    /* in: sizeof(vmo_space_stats_t) */
	uint32_t version; /* out: VMO_SPACE_STATS_VERSION */
	uint32_t handler_threads;
	/* 0 if system calls touching absent mapped pages are served;
	 * otherwise why not (VMO_EUSERMODE, see vmo_strerror). */
	int32_t kernel_faults;
	uint64_t mappings;
	uint64_t faults_missing;   /* page absent from the object's memfd */
	uint64_t faults_minor;     /* resident page not yet mapped here */
	uint64_t faults_wp;        /* write-protect faults (sync WP mode) */
	uint64_t faults_write;     /* of all faults, those caused by writes */
	uint64_t faults_spurious;  /* already resolved / unmapped meanwhile,
				      or possibly stale: a write-protect
				      fault read across a clone of its
				      object is only woken, and the write
				      faults again */
	uint64_t pages_filled;     /* pages made resident for faults */
	uint64_t pages_mapped;     /* pages installed in page tables */
	uint64_t clusters;         /* faults resolved with more than a page */
	uint64_t pager_calls;
	uint64_t pager_bytes;
	uint64_t errors;           /* pager failures seen by faults */
	uint64_t sigbus;           /* faults answered with SIGBUS (poison) */
	uint64_t waits;            /* faults that waited for another filler */
	/* Service time of each fault in a handler thread, from reading the
	 * fault to the end of its handling: bucket i counts faults that
	 * took [2^i, 2^(i+1)) ns (bucket 0 also takes < 1 ns).
	 *
	 * Consistency: faults_missing/minor/wp/write are counted when a
	 * handler reads a fault, the other counters and this histogram when
	 * it has finished, which is just after the faulting thread resumed.
	 * When the histogram's sum equals faults_missing + faults_minor +
	 * faults_wp, no fault is in flight and every counter is exact. */
	uint64_t latency_ns_log2[VMO_LAT_BUCKETS];
	/* New fields go here, at the end, so older callers keep working. */
	uint64_t pages_readahead;  /* pages filled ahead of a sequential scan
				      by a handler that found its page busy */
} vmo_space_stats_t;
#define VMO_SPACE_STATS_VERSION 1

/* Errors: -EINVAL st->size too small; -ECHILD. */
VMO_API int vmo_space_stats(vmo_space_t *space, vmo_space_stats_t *st);

#ifdef __cplusplus
}
#endif
#endif /* VMO_H */
