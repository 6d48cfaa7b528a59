/*
 * test_file.c — file-backed objects (vmo_create_file): VMO_FILE_SHARED
 * write-back through vmo_write, mappings, sync, decommit and the last
 * unref; VMO_FILE_PRIVATE never touching the file; file offsets, partial
 * last pages, argument and descriptor errors, read-only descriptors, pager
 * statistics.
 */
#include "testlib.h"

#include <sched.h>
#include <sys/socket.h>

#define SENTINEL ((vmo_t *)(uintptr_t)0x5a5a5a5a5a5a5000ull)

static vmo_pool_t *new_pool(void)
{
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(NULL, &p));
	return p;
}

static vmo_space_t *new_space(vmo_pool_t *p)
{
	vmo_space_t *s = NULL;
	OK(vmo_space_create(p, NULL, &s));
	return s;
}

/* The whole content of fd (exactly len bytes expected). */
static unsigned char *file_bytes(int fd, size_t len)
{
	unsigned char *b = malloc(len + 1);
	CHECK(b != NULL);
	ssize_t n = pread(fd, b, len + 1, 0);
	if (n != (ssize_t)len)
		FAIL("file has %zd bytes, expected %zu", n, len);
	return b;
}

static off_t file_size(int fd)
{
	struct stat sb;
	CHECK_EQ(fstat(fd, &sb), 0);
	return sb.st_size;
}

/* Open the file behind fd again (works for unlinked files). */
static int reopen(int fd, int flags)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int r = open(path, flags);
	if (r < 0)
		FAIL("reopen %s: %s", path, strerror(errno));
	return r;
}

static unsigned char *pattern(size_t len, uint64_t seed)
{
	unsigned char *b = malloc(len);
	CHECK(b != NULL);
	pattern_fill(b, len, seed, 0);
	return b;
}

/* ---------------------------------------------------- FILE_SHARED */

TEST(shared_write_sync_matches_file)
{
	size_t len = 16 * PG;
	int fd = temp_file(len, 11);
	unsigned char *model = pattern(len, 11);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	CHECK_EQ(vmo_size(o), len);
	unsigned char buf[3 * PG];
	/* unaligned writes, one spanning pages, one whole page */
	pattern_fill(buf, 3 * PG, 99, 0);
	OK(vmo_write(o, PG - 17, buf, 2 * PG + 40));
	memcpy(model + PG - 17, buf, 2 * PG + 40);
	OK(vmo_write(o, 9 * PG, buf + 5, PG));
	memcpy(model + 9 * PG, buf + 5, PG);
	OK(vmo_write(o, len - 1, "Z", 1));
	model[len - 1] = 'Z';
	OK(vmo_sync(o, 0, len));
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, model, len);
	/* and the object agrees */
	unsigned char *r = malloc(len);
	OK(vmo_read(o, 0, r, len));
	CHECK_MEM(r, model, len);
	CHECK_EQ(ostat(o).dirty_pages, 0);
	free(f);
	free(r);
	free(model);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(shared_mapping_sync_matches_file)
{
	size_t len = 64 * PG;
	int fd = temp_file(len, 12);
	unsigned char *model = pattern(len, 12);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *m = a;
	CHECK_MEM(m, model, len);
	for (size_t i = 0; i < len; i += 1531) {
		m[i] = (unsigned char)(i * 7 + 1);
		model[i] = (unsigned char)(i * 7 + 1);
	}
	memset(m + 40 * PG + 100, 0x5C, 3 * PG);
	memset(model + 40 * PG + 100, 0x5C, 3 * PG);
	OK(vmo_sync(o, 0, len));
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, model, len);
	free(f);
	/* writes after a sync are caught by the next one */
	m[7 * PG + 1] ^= 0xFF;
	model[7 * PG + 1] ^= 0xFF;
	OK(vmo_sync(o, 0, len));
	f = file_bytes(fd, len);
	CHECK_MEM(f, model, len);
	free(f);
	free(model);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(shared_writeback_on_last_unref_after_unmap)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 13);
	unsigned char *model = pattern(len, 13);
	vmo_pool_t *p = new_pool();
	struct serial ser;
	serial_init(&ser, p);
	vmo_space_t *sp = ser.sp;
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *m = a;
	memset(m + 2 * PG + 10, 0xA1, 100);
	memset(model + 2 * PG + 10, 0xA1, 100);
	m[len - 1] = 0xA2;
	model[len - 1] = 0xA2;
	drain(&ser);
	OK(vmo_unmap(sp, a, len));
	vmo_unref(o); /* last reference: writes back, no vmo_sync */
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, model, len);
	CHECK_EQ(pstat(p).writeback_errors, 0);
	CHECK_EQ(pstat(p).objects, 1); /* the barrier object */
	free(f);
	free(model);
	serial_fini(&ser);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	close(fd);
}

/*
 * Once vmo_unmap and the caller's last vmo_unref have returned, the dirty
 * pages are in the file: a program may exit right then.  A handler thread
 * still holding the object after resolving the fault defers the
 * write-back to that thread (lost if the process exits).
 * (Repeated because the window is short.)
 */
TEST(shared_writeback_done_when_unmap_and_unref_return)
{
	/* case 0: a write fault whose sequential cluster is still being
	 * filled after the faulting thread was woken; case 1: a small one */
	const size_t npg[2] = {512, 4};
	const int rounds[2] = {50, 300};
	int late[2] = {0, 0};
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	for (int c = 0; c < 2; c++) {
		size_t len = npg[c] * PG;
		uint64_t at = c == 0 ? 1 : 2 * PG + 1;
		int fd = temp_file(len, 18);
		for (int i = 0; i < rounds[c]; i++) {
			vmo_t *o;
			OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
			void *a = NULL;
			OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0,
				   &a));
			if (c == 0)
				OK(vmo_advise(sp, a, len, VMO_ADV_SEQUENTIAL));
			((volatile unsigned char *)a)[at] = (unsigned char)i;
			OK(vmo_unmap(sp, a, len));
			vmo_unref(o);
			unsigned char b = 0;
			CHECK_EQ(pread(fd, &b, 1, (off_t)at), 1);
			if (b != (unsigned char)i)
				late[c]++;
			/* let a late write-back finish before going on */
			vmo_pool_stats_t ps;
			do {
				sched_yield();
				ps = pstat(p);
			} while (ps.objects != 0);
			CHECK_EQ(pread(fd, &b, 1, (off_t)at), 1);
			CHECK_EQ(b, (unsigned char)i); /* it did arrive */
		}
		close(fd);
	}
	if (late[0] || late[1])
		FAIL("the written byte was not yet in the file when vmo_unmap "
		     "+ the last vmo_unref returned: %d of %d rounds after a "
		     "sequential fault, %d of %d after a small one",
		     late[0], rounds[0], late[1], rounds[1]);
	vmo_space_destroy(sp);
	vmo_pool_destroy(p);
}

TEST(shared_writeback_on_last_unref_vmo_write)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 14);
	unsigned char *model = pattern(len, 14);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	OK(vmo_write(o, 3 * PG + 5, "written", 7));
	memcpy(model + 3 * PG + 5, "written", 7);
	vmo_unref(o);
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, model, len);
	free(f);
	free(model);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(shared_writeback_when_mapping_holds_last_ref)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 15);
	unsigned char *model = pattern(len, 15);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	vmo_unref(o); /* the mapping keeps it alive */
	unsigned char *m = a;
	m[5 * PG + 77] = 0x3E;
	model[5 * PG + 77] = 0x3E;
	CHECK_EQ(pstat(p).objects, 1);
	vmo_space_destroy(sp); /* unmaps: the last reference goes */
	CHECK_EQ(pstat(p).objects, 0);
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, model, len);
	free(f);
	free(model);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(shared_sync_of_clean_object_writes_nothing)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 16);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	volatile unsigned char *m = a;
	unsigned sum = 0;
	for (size_t i = 0; i < len; i += PG)
		sum += m[i]; /* read faults only */
	(void)sum;
	unsigned char b[10];
	OK(vmo_read(o, PG, b, 10));
	OK(vmo_sync(o, 0, len));
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.pager_writes, 0);
	CHECK_EQ(s.pager_write_bytes, 0);
	CHECK_EQ(s.dirty_pages, 0);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

/*
 * VMO_FILE_SHARED writes back dirty pages only.  A page that was merely
 * read (vmo_read) is clean even while a writable mapping covers it; if
 * vmo_sync wrote it back anyway it would overwrite what another writer put
 * into the file since.
 */
TEST(shared_sync_never_writes_back_clean_pages)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 17);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char b[16];
	OK(vmo_read(o, 3 * PG, b, sizeof b)); /* page 3: resident, clean */
	CHECK_EQ(b[0], pattern_byte(17, 3 * PG));
	/* someone else updates page 3 of the file */
	CHECK_EQ(pwrite(fd, "external", 8, 3 * PG), 8);
	((unsigned char *)a)[5 * PG] = 0x55; /* page 5: dirty */
	OK(vmo_sync(o, 0, len));
	CHECK_EQ(pread(fd, b, 8, 3 * PG), 8);
	if (memcmp(b, "external", 8))
		FAIL("vmo_sync wrote the clean page 3 back over the file");
	CHECK_EQ(pread(fd, b, 1, 5 * PG), 1);
	CHECK_EQ(b[0], 0x55);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.pager_writes, 1);
	CHECK_EQ(s.pager_write_bytes, PG);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

/* ---------------------------------------------------- FILE_PRIVATE */

TEST(private_changes_never_reach_file)
{
	size_t len = 16 * PG;
	int fd = temp_file(len, 21);
	unsigned char *orig = pattern(len, 21), *model = pattern(len, 21);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_PRIVATE, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *m = a;
	OK(vmo_write(o, 3 * PG - 2, "private!", 8));
	memcpy(model + 3 * PG - 2, "private!", 8);
	memset(m + 10 * PG, 0x11, PG + 3);
	memset(model + 10 * PG, 0x11, PG + 3);
	/* visible through vmo_read and the mapping */
	unsigned char *r = malloc(len);
	OK(vmo_read(o, 0, r, len));
	CHECK_MEM(r, model, len);
	CHECK_MEM(m, model, len);
	OK(vmo_sync(o, 0, len));
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, orig, len);
	free(f);
	CHECK_EQ(ostat(o).pager_writes, 0);
	vmo_space_destroy(sp);
	vmo_unref(o);
	f = file_bytes(fd, len);
	CHECK_MEM(f, orig, len);
	free(f);
	free(r);
	free(orig);
	free(model);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(private_decommit_discards_changes)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 22);
	unsigned char *orig = pattern(len, 22);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_PRIVATE, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *m = a;
	OK(vmo_write(o, PG, "XXXX", 4));
	m[5 * PG + 9] = (unsigned char)~orig[5 * PG + 9];
	OK(vmo_decommit(o, 0, len));
	CHECK_EQ(ostat(o).resident_pages, 0);
	unsigned char *r = malloc(len);
	OK(vmo_read(o, 0, r, len));
	CHECK_MEM(r, orig, len);
	CHECK_MEM(m, orig, len);
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, orig, len);
	free(f);
	free(r);
	free(orig);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(private_from_rdonly_fd_is_writable)
{
	size_t len = 4 * PG;
	int fd = temp_file(len, 23);
	int ro = reopen(fd, O_RDONLY);
	unsigned char *orig = pattern(len, 23);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, ro, 0, len, VMO_FILE_PRIVATE, &o));
	OK(vmo_write(o, 10, "ok", 2));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *m = a;
	CHECK_EQ(m[10], 'o');
	m[2 * PG] = 0x99;
	unsigned char b = 0;
	OK(vmo_read(o, 2 * PG, &b, 1));
	CHECK_EQ(b, 0x99);
	vmo_space_destroy(sp);
	vmo_unref(o);
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, orig, len);
	free(f);
	free(orig);
	vmo_pool_destroy(p);
	close(ro);
	close(fd);
}

/* ------------------------------------------- decommit of FILE_SHARED */

TEST(shared_decommit_writes_back_first)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 31);
	unsigned char *model = pattern(len, 31);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	OK(vmo_write(o, 2 * PG + 3, "dirty data", 10));
	memcpy(model + 2 * PG + 3, "dirty data", 10);
	CHECK_EQ(ostat(o).dirty_pages, 1);
	OK(vmo_decommit(o, 0, len));
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 0);
	CHECK_EQ(s.dirty_pages, 0);
	CHECK_EQ(s.decommitted_pages, 1);
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, model, len);
	free(f);
	unsigned char *r = malloc(len);
	OK(vmo_read(o, 0, r, len));
	CHECK_MEM(r, model, len);
	free(r);
	free(model);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(shared_decommit_writes_back_mapping_writes)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 32);
	unsigned char *model = pattern(len, 32);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *m = a;
	memset(m + 4 * PG + 1, 0xD7, 50);
	memset(model + 4 * PG + 1, 0xD7, 50);
	m[6 * PG] = 0xD8;
	model[6 * PG] = 0xD8;
	OK(vmo_decommit(o, 0, len));
	CHECK_EQ(ostat(o).resident_pages, 0);
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, model, len);
	free(f);
	/* the mapping faults the pages in again, from the file */
	CHECK_MEM(m, model, len);
	free(model);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

/* ------------------------------------------------ offsets and EOF */

TEST(nonzero_file_offset)
{
	size_t flen = 16 * PG;
	int fd = temp_file(flen, 41);
	unsigned char *model = pattern(flen, 41);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	uint64_t off = 5 * PG;
	size_t len = 6 * PG;
	OK(vmo_create_file(p, fd, off, len, VMO_FILE_SHARED, &o));
	CHECK_EQ(vmo_size(o), len);
	unsigned char *r = malloc(len);
	OK(vmo_read(o, 0, r, len));
	CHECK_MEM(r, model + off, len);
	void *a = NULL;
	OK(vmo_map(sp, o, 2 * PG, 2 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *m = a;
	CHECK_MEM(m, model + off + 2 * PG, 2 * PG);
	m[PG + 4] = 0x44; /* object page 3 */
	model[off + 3 * PG + 4] = 0x44;
	OK(vmo_write(o, 0, "first", 5));
	memcpy(model + off, "first", 5);
	OK(vmo_write(o, len - 4, "last", 4));
	memcpy(model + off + len - 4, "last", 4);
	CHECK_ERR(vmo_write(o, len - 3, "last", 4), -ERANGE);
	OK(vmo_sync(o, 0, len));
	unsigned char *f = file_bytes(fd, flen); /* size unchanged too */
	CHECK_MEM(f, model, flen);
	free(f);
	free(r);
	free(model);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(partial_last_page_reads_zeros_beyond_eof)
{
	size_t flen = 2 * PG + 100;
	int fd = temp_file(flen, 42);
	unsigned char *model = calloc(1, 3 * PG);
	pattern_fill(model, flen, 42, 0);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, 3 * PG, VMO_FILE_SHARED, &o));
	unsigned char *r = malloc(3 * PG);
	memset(r, 0xEE, 3 * PG);
	OK(vmo_read(o, 0, r, 3 * PG));
	CHECK_MEM(r, model, 3 * PG);
	/* the same through a mapping (decommit first so it is refilled) */
	OK(vmo_decommit(o, 0, 3 * PG));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 3 * PG, PROT_READ, 0, &a));
	CHECK_MEM(a, model, 3 * PG);
	free(r);
	free(model);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(partial_last_page_writeback_never_extends_file)
{
	size_t flen = 2 * PG + 100;
	int fd = temp_file(flen, 43);
	unsigned char *model = pattern(flen, 43);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, 3 * PG, VMO_FILE_SHARED, &o));
	/* inside the file, then beyond EOF in the same page */
	OK(vmo_write(o, 2 * PG + 50, "in", 2));
	memcpy(model + 2 * PG + 50, "in", 2);
	OK(vmo_write(o, 2 * PG + 98, "EDGE", 4)); /* straddles EOF */
	memcpy(model + 2 * PG + 98, "ED", 2);
	OK(vmo_write(o, 2 * PG + 200, "beyond", 6));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 3 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *m = a;
	m[3 * PG - 1] = 0x77; /* last byte of the object, beyond EOF */
	m[2 * PG + 10] = 0x78;
	model[2 * PG + 10] = 0x78;
	OK(vmo_sync(o, 0, 3 * PG));
	CHECK_EQ(file_size(fd), (off_t)flen);
	unsigned char *f = file_bytes(fd, flen);
	CHECK_MEM(f, model, flen);
	free(f);
	/* the object still shows what was written beyond EOF */
	char b[6];
	OK(vmo_read(o, 2 * PG + 200, b, 6));
	CHECK_MEM(b, "beyond", 6);
	OK(vmo_read(o, 2 * PG + 98, b, 4));
	CHECK_MEM(b, "EDGE", 4);
	CHECK_EQ(m[3 * PG - 1], 0x77);
	vmo_space_destroy(sp);
	vmo_unref(o); /* final write-back: still no growth */
	CHECK_EQ(file_size(fd), (off_t)flen);
	f = file_bytes(fd, flen);
	CHECK_MEM(f, model, flen);
	free(f);
	free(model);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(range_past_eof_page_einval)
{
	size_t flen = 2 * PG + 100;
	int fd = temp_file(flen, 44);
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create_file(p, fd, 0, 4 * PG, VMO_FILE_SHARED, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, PG, 3 * PG, VMO_FILE_PRIVATE, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, 3 * PG, PG, VMO_FILE_SHARED, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, 100 * PG, PG, VMO_FILE_SHARED, &o),
		  -EINVAL);
	CHECK(o == SENTINEL);
	/* up to the page containing EOF is fine */
	OK(vmo_create_file(p, fd, 2 * PG, PG, VMO_FILE_SHARED, &o));
	vmo_unref(o);
	/* an empty file has no such page */
	int e = temp_file(0, 1);
	o = SENTINEL;
	CHECK_ERR(vmo_create_file(p, e, 0, PG, VMO_FILE_SHARED, &o), -EINVAL);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	close(e);
	close(fd);
}

/* ------------------------------------------------ argument errors */

TEST(flags_not_exactly_one_einval)
{
	int fd = temp_file(4 * PG, 51);
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create_file(p, fd, 0, PG, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, 0, PG,
				  VMO_FILE_SHARED | VMO_FILE_PRIVATE, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, 0, PG, VMO_FILE_SHARED | 0x100, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, 0, PG, 0x4, &o), -EINVAL);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(misaligned_offset_or_size_einval)
{
	int fd = temp_file(8 * PG, 52);
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create_file(p, fd, 1, PG, VMO_FILE_SHARED, &o), -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, PG / 2, PG, VMO_FILE_PRIVATE, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, 0, PG + 1, VMO_FILE_SHARED, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, PG, 100, VMO_FILE_PRIVATE, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_file(p, fd, 0, 0, VMO_FILE_SHARED, &o), -EINVAL);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(size_above_max_efbig)
{
	/* a sparse memfd larger than VMO_MAX_SIZE, so only EFBIG applies */
	int fd = memfd_create("vmobig", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, (off_t)(VMO_MAX_SIZE + 4 * PG)), 0);
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create_file(p, fd, 0, VMO_MAX_SIZE + PG, VMO_FILE_SHARED,
				  &o),
		  -EFBIG);
	CHECK_ERR(vmo_create_file(p, fd, PG, VMO_MAX_SIZE + 2 * PG,
				  VMO_FILE_PRIVATE, &o),
		  -EFBIG);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(not_regular_file_enodev)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	int dir = open("/tmp", O_RDONLY | O_DIRECTORY);
	CHECK(dir >= 0);
	CHECK_ERR(vmo_create_file(p, dir, 0, PG, VMO_FILE_SHARED, &o), -ENODEV);
	CHECK_ERR(vmo_create_file(p, dir, 0, PG, VMO_FILE_PRIVATE, &o),
		  -ENODEV);
	int pfd[2];
	CHECK_EQ(pipe(pfd), 0);
	CHECK_ERR(vmo_create_file(p, pfd[0], 0, PG, VMO_FILE_SHARED, &o),
		  -ENODEV);
	CHECK_ERR(vmo_create_file(p, pfd[0], 0, PG, VMO_FILE_PRIVATE, &o),
		  -ENODEV);
	int null = open("/dev/null", O_RDWR);
	CHECK(null >= 0);
	CHECK_ERR(vmo_create_file(p, null, 0, PG, VMO_FILE_SHARED, &o),
		  -ENODEV);
	CHECK_ERR(vmo_create_file(p, null, 0, PG, VMO_FILE_PRIVATE, &o),
		  -ENODEV);
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	CHECK_ERR(vmo_create_file(p, sv[0], 0, PG, VMO_FILE_SHARED, &o),
		  -ENODEV);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	close(dir);
	close(pfd[0]);
	close(pfd[1]);
	close(null);
	close(sv[0]);
	close(sv[1]);
	vmo_pool_destroy(p);
}

TEST(closed_fd_ebadf)
{
	int fd = temp_file(4 * PG, 53);
	close(fd);
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create_file(p, fd, 0, PG, VMO_FILE_SHARED, &o), -EBADF);
	CHECK_ERR(vmo_create_file(p, fd, 0, PG, VMO_FILE_PRIVATE, &o), -EBADF);
	CHECK_ERR(vmo_create_file(p, -1, 0, PG, VMO_FILE_SHARED, &o), -EBADF);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
}

TEST(wronly_fd_eacces)
{
	int fd = temp_file(4 * PG, 54);
	int wo = reopen(fd, O_WRONLY);
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create_file(p, wo, 0, PG, VMO_FILE_SHARED, &o), -EACCES);
	CHECK_ERR(vmo_create_file(p, wo, 0, PG, VMO_FILE_PRIVATE, &o),
		  -EACCES);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	close(wo);
	close(fd);
}

TEST(opath_fd_is_not_open_for_reading)
{
	int fd = temp_file(4 * PG, 55);
	int op = reopen(fd, O_PATH);
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	/* An O_PATH descriptor cannot be read: -EACCES ("not open for
	 * reading"); -EBADF would also be defensible.  Accepting it makes
	 * every later read of the object fail with -EIO. */
	int r = vmo_create_file(p, op, 0, PG, VMO_FILE_SHARED, &o);
	if (r == 0) {
		unsigned char b;
		int rr = vmo_read(o, 0, &b, 1);
		FAIL("vmo_create_file(O_PATH fd) succeeded; vmo_read then "
		     "returned %d (%s)",
		     rr, vmo_strerror(rr));
	}
	CHECK(r == -EACCES || r == -EBADF);
	CHECK(o == SENTINEL);
	vmo_pool_destroy(p);
	close(op);
	close(fd);
}

/* --------------------------------------------- read-only descriptors */

TEST(shared_from_rdonly_fd_is_read_only)
{
	size_t len = 4 * PG;
	int fd = temp_file(len, 61);
	int ro = reopen(fd, O_RDONLY);
	unsigned char *orig = pattern(len, 61);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, ro, 0, len, VMO_FILE_SHARED, &o));
	unsigned char *r = malloc(len);
	OK(vmo_read(o, 0, r, len));
	CHECK_MEM(r, orig, len);
	CHECK_ERR(vmo_write(o, 0, "x", 1), -EACCES);
	CHECK_ERR(vmo_write(o, PG, r, PG), -EACCES);
	void *a = NULL;
	CHECK_ERR(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a),
		  -EACCES);
	CHECK_ERR(vmo_map(sp, o, 0, PG, PROT_WRITE, 0, &a), -EACCES);
	OK(vmo_map(sp, o, 0, len, PROT_READ, 0, &a));
	CHECK_MEM(a, orig, len);
	CHECK_ERR(vmo_protect(sp, a, len, PROT_READ | PROT_WRITE), -EACCES);
	OK(vmo_sync(o, 0, len));
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.dirty_pages, 0);
	CHECK_EQ(s.pager_writes, 0);
	CHECK_EQ(s.mappings, 1);
	vmo_space_destroy(sp);
	vmo_unref(o);
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, orig, len);
	free(f);
	free(r);
	free(orig);
	vmo_pool_destroy(p);
	close(ro);
	close(fd);
}

TEST(shared_from_append_fd_is_read_only)
{
	size_t len = 4 * PG;
	int fd = temp_file(len, 62);
	int ap = reopen(fd, O_RDWR | O_APPEND);
	unsigned char *orig = pattern(len, 62);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, ap, 0, len, VMO_FILE_SHARED, &o));
	unsigned char *r = malloc(len);
	OK(vmo_read(o, 0, r, len));
	CHECK_MEM(r, orig, len);
	CHECK_ERR(vmo_write(o, 0, "x", 1), -EACCES);
	void *a = NULL;
	CHECK_ERR(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a),
		  -EACCES);
	OK(vmo_map(sp, o, 0, len, PROT_READ, 0, &a));
	CHECK_MEM(a, orig, len);
	vmo_space_destroy(sp);
	vmo_unref(o);
	CHECK_EQ(file_size(fd), (off_t)len);
	free(r);
	free(orig);
	vmo_pool_destroy(p);
	close(ap);
	close(fd);
}

/* ------------------------------------------------------ descriptors */

TEST(caller_may_close_fd_after_create)
{
	size_t len = 4 * PG;
	int fd = temp_file(len, 71);
	int mine = reopen(fd, O_RDWR); /* independent description to check */
	unsigned char *model = pattern(len, 71);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	CHECK_EQ(close(fd), 0);
	unsigned char *r = malloc(len);
	OK(vmo_read(o, 0, r, len));
	CHECK_MEM(r, model, len);
	OK(vmo_write(o, PG + 1, "after close", 11));
	memcpy(model + PG + 1, "after close", 11);
	OK(vmo_sync(o, 0, len));
	unsigned char *f = file_bytes(mine, len);
	CHECK_MEM(f, model, len);
	free(f);
	free(r);
	free(model);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(mine);
}

TEST(memfd_accepted_as_file)
{
	size_t len = 4 * PG;
	int fd = memfd_create("vmotest", MFD_CLOEXEC);
	CHECK(fd >= 0);
	unsigned char *model = pattern(len, 72);
	CHECK_EQ(pwrite(fd, model, len, 0), (ssize_t)len);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	unsigned char *r = malloc(len);
	OK(vmo_read(o, 0, r, len));
	CHECK_MEM(r, model, len);
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	((unsigned char *)a)[3 * PG + 3] = 0x33;
	model[3 * PG + 3] = 0x33;
	OK(vmo_write(o, 7, "memfd", 5));
	memcpy(model + 7, "memfd", 5);
	OK(vmo_sync(o, 0, len));
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f, model, len);
	free(f);
	free(r);
	free(model);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

/* ------------------------------------------------------ statistics */

TEST(pager_stats_exact)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 81);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.pager_reads, 0);
	CHECK_EQ(s.pager_writes, 0);
	CHECK_EQ(s.resident_pages, 0);

	/* a whole-page write needs no fill */
	unsigned char pg[PG];
	pattern_fill(pg, PG, 5, 0);
	OK(vmo_write(o, 2 * PG, pg, PG));
	s = ostat(o);
	CHECK_EQ(s.pager_reads, 0);
	CHECK_EQ(s.pager_read_bytes, 0);
	CHECK_EQ(s.dirty_pages, 1);
	CHECK_EQ(s.resident_pages, 1);
	OK(vmo_sync(o, 0, len));
	s = ostat(o);
	CHECK_EQ(s.pager_writes, 1);
	CHECK_EQ(s.pager_write_bytes, 4096);
	CHECK_EQ(s.dirty_pages, 0);
	/* clean: nothing more */
	OK(vmo_sync(o, 0, len));
	s = ostat(o);
	CHECK_EQ(s.pager_writes, 1);
	CHECK_EQ(s.pager_write_bytes, 4096);

	/* one byte read fills one page, once */
	unsigned char b;
	OK(vmo_read(o, 5 * PG + 7, &b, 1));
	CHECK_EQ(b, pattern_byte(81, 5 * PG + 7));
	OK(vmo_read(o, 5 * PG + 8, &b, 1));
	s = ostat(o);
	CHECK_EQ(s.pager_reads, 1);
	CHECK_EQ(s.pager_read_bytes, 4096);
	CHECK_EQ(s.pages_filled, 1);
	CHECK_EQ(s.resident_pages, 2);

	/* a partial write of an absent page fills it first */
	OK(vmo_write(o, 6 * PG + 1, "abc", 3));
	s = ostat(o);
	CHECK_EQ(s.pager_reads, 2);
	CHECK_EQ(s.pager_read_bytes, 8192);
	CHECK_EQ(s.dirty_pages, 1);
	OK(vmo_sync(o, 0, len));
	s = ostat(o);
	CHECK_EQ(s.pager_writes, 2);
	CHECK_EQ(s.pager_write_bytes, 8192);
	CHECK_EQ(s.pager_errors, 0);
	CHECK_EQ(s.resident_pages, 3);
	CHECK_EQ(pstat(p).resident_pages, 3);
	/* neighbouring bytes of the partial page survived the write-back */
	unsigned char f[PG];
	CHECK_EQ(pread(fd, f, PG, 6 * PG), (ssize_t)PG);
	CHECK_EQ(f[0], pattern_byte(81, 6 * PG));
	CHECK_MEM(f + 1, "abc", 3);
	CHECK_EQ(f[4], pattern_byte(81, 6 * PG + 4));
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

TEST(shared_sync_subrange_writes_only_that_range)
{
	size_t len = 8 * PG;
	int fd = temp_file(len, 82);
	unsigned char *orig = pattern(len, 82);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	OK(vmo_write(o, 1 * PG, "one", 3));
	OK(vmo_write(o, 6 * PG, "six", 3));
	OK(vmo_sync(o, 0, 4 * PG));
	unsigned char *f = file_bytes(fd, len);
	CHECK_MEM(f + PG, "one", 3);
	CHECK_MEM(f + 6 * PG, orig + 6 * PG, 3);
	free(f);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.dirty_pages, 1);
	CHECK_EQ(s.pager_write_bytes, 4096);
	OK(vmo_sync(o, 4 * PG, 4 * PG));
	f = file_bytes(fd, len);
	CHECK_MEM(f + 6 * PG, "six", 3);
	free(f);
	CHECK_EQ(ostat(o).dirty_pages, 0);
	free(orig);
	vmo_unref(o);
	vmo_pool_destroy(p);
	close(fd);
}

TEST_MAIN()
