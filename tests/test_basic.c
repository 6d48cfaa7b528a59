/* test_basic.c — end-to-end smoke: the main paths work together. */
#include "testlib.h"

TEST(anon_map_write_read_back)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	vmo_t *o;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	OK(vmo_create(pool, 64 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 64 * PG, PROT_READ | PROT_WRITE, 0, &a));
	char *p = a;
	CHECK_EQ(p[5 * PG + 7], 0);
	for (size_t i = 0; i < 64; i++)
		p[i * PG] = (char)(i + 1);
	char b[64];
	for (size_t i = 0; i < 64; i++) {
		OK(vmo_read(o, i * PG, b, 1));
		CHECK_EQ(b[0], (char)(i + 1));
	}
	vmo_space_stats_t st = {.size = sizeof st};
	OK(vmo_space_stats(sp, &st));
	CHECK(st.faults_missing >= 1);
	CHECK_EQ(st.kernel_faults, 0);
	OK(vmo_unmap(sp, a, 64 * PG));
	vmo_unref(o);
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
}

TEST(file_shared_map_sync_roundtrip)
{
	size_t len = 256 * PG;
	int fd = temp_file(len, 7);
	vmo_pool_t *pool;
	vmo_space_t *sp;
	vmo_t *o;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	OK(vmo_create_file(pool, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	for (size_t i = 0; i < len; i += 997)
		CHECK_EQ(p[i], pattern_byte(7, i));
	p[3 * PG + 5] = 0xAB;
	p[200 * PG] = 0xCD;
	OK(vmo_sync(o, 0, len));
	unsigned char c;
	CHECK_EQ(pread(fd, &c, 1, 3 * PG + 5), 1);
	CHECK_EQ(c, 0xAB);
	CHECK_EQ(pread(fd, &c, 1, 200 * PG), 1);
	CHECK_EQ(c, 0xCD);
	CHECK_EQ(pread(fd, &c, 1, 4 * PG), 1);
	CHECK_EQ(c, pattern_byte(7, 4 * PG));
	vmo_stats_t os = {.size = sizeof os};
	OK(vmo_stats(o, &os));
	CHECK_EQ(os.pager_write_bytes, 2 * PG);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(pool);
	close(fd);
}

TEST_MAIN()
