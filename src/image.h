/*
 * image.h — the record stream and image files (image.c): the internal
 * interface that checkpoints, restores (ckpt.c), the CLI (tools/vmo.c),
 * the fuzz target and, later, live migration use.
 *
 * An image holds the contents of a fixed list of objects (object i has a
 * size in bytes, a multiple of the page size).  Its view of object i's
 * page p is one of: data stored in this image, zeros, or "whatever the
 * parent image shows" (the parent's view of the same object and page;
 * zeros when there is no parent, or the parent has no object i, or its
 * object i is smaller).  A chain is an image with its parents, each named
 * by id and by a path relative to its child's directory.
 *
 * Everything here works on files with pread / pwrite (never mmap): a
 * flipped or missing byte anywhere must become -EBADMSG, never a crash.
 *
 * Thread safety: a writer is used by one thread at a time; an open image
 * (struct vmo__img) may be read by many threads at once (vmo__img_read
 * serves the faults of lazily restored objects from handler threads).
 */
#ifndef VMO_IMAGE_H
#define VMO_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMO__IMG_VERSION 1
#define VMO__IMG_ID_LEN 16
#define VMO__IMG_SUM_LEN 16 /* per-page checksum: XXH3-128 */

/* XXH3-128 of one page (VMO_PAGE_SIZE bytes), the per-page checksum the
 * image stores and parent comparisons use. */
void vmo__img_page_sum(const void *page, uint8_t sum[VMO__IMG_SUM_LEN]);
/* Is the page all zero bytes? */
bool vmo__img_page_is_zero(const void *page);

/* ------------------------------------------------------------ writing */

struct vmo__imgw;

struct vmo__imgw_opts {
	uint32_t nobjs;
	const uint64_t *sizes;   /* bytes of object i, page multiples */
	/* Parent: path as the caller gave it (the writer stores it relative
	 * to the new image's directory) and its id; NULL = full image. */
	const char *parent_path;
	const uint8_t *parent_id;
	int compress_level;      /* 0 = store raw; 1..19 = zstd level */
	bool nosync;             /* no fsync of file and directory */
};

/*
 * Start writing an image that will appear at path.  Removes temporary
 * files that dead writers left in path's directory, creates a temporary
 * file of its own there (recognisable name, held with flock so a live
 * writer's file is never removed), writes the header and object table.
 * Errors: -EINVAL (bad options), -ENOENT (no such directory), -errno of
 * open / write, -ENOMEM.
 */
int vmo__imgw_create(const char *path, const struct vmo__imgw_opts *o,
		     struct vmo__imgw **out);
/* The new image's random 128-bit id. */
void vmo__imgw_id(const struct vmo__imgw *w, uint8_t id[VMO__IMG_ID_LEN]);
/*
 * Store pages [pg, pg+n) of object obj, whose content is buf (n pages).
 * sums: their per-page checksums if the caller has them (NULL: computed
 * here).  Calls come in increasing (obj, pg) order without overlap; the
 * writer cuts runs into blocks (compressed if asked and if that is
 * smaller).  0 or -errno (-ENOSPC, -EIO ...); after an error only
 * vmo__imgw_abort may be called.
 */
int vmo__imgw_pages(struct vmo__imgw *w, uint32_t obj, uint64_t pg,
		    uint64_t n, const void *buf, const uint8_t *sums);
/* Pages [pg, pg+n) of object obj are zeros in this image (needed only
 * where the parent shows something else; same ordering rule). */
int vmo__imgw_zero(struct vmo__imgw *w, uint32_t obj, uint64_t pg,
		   uint64_t n);
/* Bytes written to the file so far. */
uint64_t vmo__imgw_bytes(const struct vmo__imgw *w);
/*
 * Finish: write the index and trailer, fsync, rename over path, fsync the
 * directory.  Frees w whatever the result; on error the temporary file is
 * gone and path untouched.  0 or -errno.
 */
int vmo__imgw_commit(struct vmo__imgw *w);
/* Give up: remove the temporary file, free w.  NULL ignored. */
void vmo__imgw_abort(struct vmo__imgw *w);

/* ------------------------------------------------------------ reading */

struct vmo__img;

/*
 * Open the image at path and its parent chain: header, object table,
 * index and trailer of every image are read and checked (data blocks are
 * not: see vmo__img_verify).  The files stay open until vmo__img_close.
 * Errors: -ENOENT the file or a parent is missing; -EBADMSG corrupt,
 * truncated, or a parent whose id is not the one named; -ENOTSUP unknown
 * version; -EIO; -ENOMEM.
 */
int vmo__img_open(const char *path, struct vmo__img **out);
void vmo__img_close(struct vmo__img *img);
void vmo__img_id(const struct vmo__img *img, uint8_t id[VMO__IMG_ID_LEN]);
uint32_t vmo__img_nobjs(const struct vmo__img *img);
uint64_t vmo__img_obj_size(const struct vmo__img *img, uint32_t obj);
/* Images in the chain (1 = no parent). */
unsigned vmo__img_depth(const struct vmo__img *img);

/* The chain's view of a run of pages. */
enum { VMO__IMG_ZERO = 0, VMO__IMG_DATA = 1 };
struct vmo__img_run {
	uint64_t pg, n;  /* the run: [pg, pg+n) of the object */
	int kind;        /* VMO__IMG_ZERO or VMO__IMG_DATA */
	unsigned depth;  /* DATA: which image holds it (0 = this one) */
};
/*
 * The longest run from page pg of object obj (pg < its pages) over which
 * the chain's view has the same kind and, for DATA, comes from the same
 * image.  0 or -EINVAL (obj or pg out of range).
 */
int vmo__img_run_at(const struct vmo__img *img, uint32_t obj, uint64_t pg,
		    struct vmo__img_run *run);
/* The per-page checksum of the chain's page (obj, pg): 0, or -ENODATA
 * when the page is zeros, -EINVAL out of range. */
int vmo__img_page_sum_at(const struct vmo__img *img, uint32_t obj,
			 uint64_t pg, uint8_t sum[VMO__IMG_SUM_LEN]);
/*
 * Read pages [pg, pg+n) of object obj through the chain into buf,
 * checking each page's data (its checksum; a compressed block's checksum
 * and decompression).  Thread-safe.  0, or -EBADMSG (a page fails its
 * check: the pages before it are in buf), -EIO, -ENOMEM, -EINVAL.
 */
int vmo__img_read(struct vmo__img *img, uint32_t obj, uint64_t pg,
		  uint64_t n, void *buf);

/* What vmo image info prints, for this image alone (not its parents). */
struct vmo__img_info {
	uint32_t version;
	uint8_t id[VMO__IMG_ID_LEN];
	uint8_t parent_id[VMO__IMG_ID_LEN];
	bool has_parent;
	char parent_path[4096];     /* as stored (relative) */
	uint64_t file_bytes;
	uint64_t stored_pages, zero_pages, parent_pages; /* over all objects */
	uint64_t blocks, compressed_blocks, stored_bytes; /* data payloads */
};
int vmo__img_info(const struct vmo__img *img, unsigned depth,
		  struct vmo__img_info *info);

/*
 * Check every record of every image of the chain (every data block and
 * page checksum).  progress, if not NULL, gets bytes checked and total.
 * 0, -EBADMSG, -EIO, -ENOMEM.
 */
int vmo__img_verify(struct vmo__img *img,
		    void (*progress)(void *arg, uint64_t done, uint64_t total),
		    void *arg);

#endif /* VMO_IMAGE_H */
