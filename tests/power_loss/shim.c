/*
 * Power-loss simulator for tests/power_loss.rs, loaded into the daemon with LD_PRELOAD.
 *
 * It keeps a "durable image" of the database files (config.db*, except the -shm wal-index,
 * which SQLite rebuilds) in $PLSHIM_OUT/durable: a file's bytes are copied there only when
 * the process fsync()s or fdatasync()s it, i.e. the image holds exactly what a disk must
 * keep across a power cut. Once $PLSHIM_OUT/start exists, a background thread takes
 * $PLSHIM_CUTS snapshots at random instants ($PLSHIM_MIN_MS..$PLSHIM_MAX_MS apart, seeded by
 * $PLSHIM_SEED) into $PLSHIM_OUT/cut-N/: the durable image plus, depending on the mode, none,
 * a random subset (in 512-byte sectors, in any order) or all of the bytes written since the
 * last sync, including unsynced size changes. cut-N/time holds the CLOCK_MONOTONIC instant
 * the cut began (ns), the mode, the sector counts and the instant it ended. $PLSHIM_OUT/done marks the end.
 *
 * Writes and truncates on the database files take the shim's lock, so a cut never sees half
 * a write; fsync/fdatasync copy the file under the same lock. Whatever was written but not
 * synced at a cut is "in flight": a real disk may have kept any sectors of it, or none.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 512

static char g_dir[PATH_MAX];
static char g_out[PATH_MAX];
static int g_active;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

#define REAL(ret, name, ...)                                                          \
    static ret (*real_##name)(__VA_ARGS__);                                           \
    static void load_##name(void) {                                                   \
        if (!real_##name) real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name); \
    }

REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, pwrite, int, const void *, size_t, off_t)
REAL(ssize_t, pwrite64, int, const void *, size_t, off_t)
REAL(ssize_t, writev, int, const struct iovec *, int)
REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t)
REAL(int, ftruncate, int, off_t)
REAL(int, ftruncate64, int, off_t)
REAL(int, fsync, int)
REAL(int, fdatasync, int)
REAL(int, unlink, const char *)

static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A database file we model: config.db, config.db-wal, config.db-journal (not -shm). */
static int tracked_base(const char *base) {
    return strncmp(base, "config.db", 9) == 0 && strstr(base, "-shm") == NULL && strchr(base, ' ') == NULL &&
           strchr(base, '/') == NULL;
}

/* Basename of the tracked file behind fd, or 0. */
static int tracked_fd(int fd, char *name, size_t cap) {
    if (!g_active || fd < 0) return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    size_t dl = strlen(g_dir);
    if (strncmp(path, g_dir, dl) != 0 || path[dl] != '/') return 0;
    const char *base = path + dl + 1;
    if (!tracked_base(base) || strlen(base) >= cap) return 0;
    strcpy(name, base);
    return 1;
}

static int tracked_path(const char *p, char *name, size_t cap) {
    if (!g_active || !p) return 0;
    char dir[PATH_MAX];
    const char *slash = strrchr(p, '/');
    if (!slash) return 0;
    size_t dl = (size_t)(slash - p);
    if (dl >= sizeof dir) return 0;
    memcpy(dir, p, dl);
    dir[dl] = 0;
    char real[PATH_MAX];
    if (!realpath(dir, real) || strcmp(real, g_dir) != 0) return 0;
    if (!tracked_base(slash + 1) || strlen(slash + 1) >= cap) return 0;
    strcpy(name, slash + 1);
    return 1;
}

/* Reads a whole file; returns 0 and sets *buf=NULL, *len=0, *exists=0 when absent. */
static int slurp(const char *path, unsigned char **buf, size_t *len, int *exists) {
    *buf = NULL;
    *len = 0;
    *exists = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    *exists = 1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size + 1;
    unsigned char *b = malloc(cap);
    if (!b) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    for (;;) {
        if (got == cap) {
            cap *= 2;
            unsigned char *nb = realloc(b, cap);
            if (!nb) {
                free(b);
                close(fd);
                return -1;
            }
            b = nb;
        }
        ssize_t r = read(fd, b + got, cap - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            free(b);
            close(fd);
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = got;
    return 0;
}

static int spill(const char *path, const unsigned char *buf, size_t len) {
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < len) {
        load_write();
        ssize_t w = real_write(fd, buf + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    close(fd);
    return rename(tmp, path);
}

/* fsync/fdatasync done: the file's current bytes are durable. Caller holds g_lock. */
static void persist(const char *name) {
    char live[PATH_MAX * 2], dur[PATH_MAX * 2];
    snprintf(live, sizeof live, "%s/%s", g_dir, name);
    snprintf(dur, sizeof dur, "%s/durable/%s", g_out, name);
    unsigned char *b;
    size_t len;
    int exists;
    if (slurp(live, &b, &len, &exists) != 0 || !exists) return;
    spill(dur, b, len);
    free(b);
}

static void persist_all(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (tracked_base(e->d_name)) persist(e->d_name);
    closedir(d);
}

/* Builds one file of a cut from its durable and live bytes. */
static void cut_file(const char *name, const char *cutdir, int mode, double p, long *unsynced, long *taken) {
    char live[PATH_MAX * 2], dur[PATH_MAX * 2], dst[PATH_MAX * 2];
    snprintf(live, sizeof live, "%s/%s", g_dir, name);
    snprintf(dur, sizeof dur, "%s/durable/%s", g_out, name);
    snprintf(dst, sizeof dst, "%s/%s", cutdir, name);
    unsigned char *db, *lb;
    size_t dlen, llen;
    int dex, lex;
    if (slurp(dur, &db, &dlen, &dex) != 0) return;
    if (slurp(live, &lb, &llen, &lex) != 0) {
        free(db);
        return;
    }
    if (!lex) { /* unlinked, the unlink not synced: the durable bytes remain */
        lb = NULL;
        llen = 0;
    }
    size_t maxlen = dlen > llen ? dlen : llen;
    unsigned char *out = calloc(maxlen + 1, 1);
    if (!out) goto done;
    memcpy(out, db, dlen);
    size_t outlen = dlen;
    int create = dex;
    if (lex) {
        size_t nsec = (maxlen + SECTOR - 1) / SECTOR;
        for (size_t s = 0; s < nsec; s++) {
            size_t a = s * SECTOR;
            if (a >= llen) break; /* beyond the live end: only an unsynced truncate differs */
            size_t lend = a + SECTOR < llen ? a + SECTOR : llen;
            size_t dend = a + SECTOR < dlen ? a + SECTOR : (dlen > a ? dlen : a);
            int same = lend == dend && memcmp(lb + a, db + a, lend - a) == 0;
            if (same) continue;
            (*unsynced)++;
            int take = mode == 2 || (mode == 1 && (double)(rnd() % 1000000) / 1000000.0 < p);
            if (!take) continue;
            (*taken)++;
            memcpy(out + a, lb + a, lend - a);
            if (lend > outlen) outlen = lend;
            create = 1;
        }
        if (llen < dlen) { /* unsynced truncate */
            (*unsynced)++;
            if (mode == 2 || (mode == 1 && rnd() % 2)) {
                outlen = llen;
                (*taken)++;
            }
        }
        if (mode == 2) {
            outlen = llen;
            create = 1;
        }
    }
    if (create) spill(dst, out, outlen);
    free(out);
done:
    free(db);
    free(lb);
}

static void do_cut(int k) {
    long long t = now_ns();
    char cutdir[PATH_MAX + 32], tmpdir[PATH_MAX + 32];
    snprintf(cutdir, sizeof cutdir, "%s/cut-%d", g_out, k);
    snprintf(tmpdir, sizeof tmpdir, "%s/cut-%d.tmp", g_out, k);
    mkdir(tmpdir, 0700);
    uint64_t r = rnd() % 100;
    int mode = r < 40 ? 0 : r < 85 ? 1 : 2; /* 0: nothing unsynced survives, 1: random sectors, 2: all */
    double p = 0.1 + (double)(rnd() % 800) / 1000.0;
    long unsynced = 0, taken = 0;
    /* every name that exists live or durable */
    char names[32][256];
    int n = 0;
    const char *dirs[2] = {g_dir, NULL};
    char durdir[PATH_MAX + 16];
    snprintf(durdir, sizeof durdir, "%s/durable", g_out);
    dirs[1] = durdir;
    for (int i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL && n < 32) {
            if (!tracked_base(e->d_name) || strlen(e->d_name) >= 256 || strstr(e->d_name, ".tmp")) continue;
            int dup = 0;
            for (int j = 0; j < n; j++) dup |= strcmp(names[j], e->d_name) == 0;
            if (!dup) strcpy(names[n++], e->d_name);
        }
        closedir(d);
    }
    for (int i = 0; i < n; i++) cut_file(names[i], tmpdir, mode, p, &unsynced, &taken);
    char tf[PATH_MAX + 64];
    snprintf(tf, sizeof tf, "%s/time", tmpdir);
    char line[256];
    /* the copy takes a while: the cut is the interval [t, t_end] (see power_loss.rs) */
    int len = snprintf(line, sizeof line, "%lld %d %ld %ld %lld\n", t, mode, unsynced, taken, now_ns());
    spill(tf, (const unsigned char *)line, (size_t)len);
    rename(tmpdir, cutdir);
}

static long envl(const char *name, long dflt) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static void *cutter(void *arg) {
    (void)arg;
    char start[PATH_MAX + 16], done[PATH_MAX + 16];
    snprintf(start, sizeof start, "%s/start", g_out);
    snprintf(done, sizeof done, "%s/done", g_out);
    while (access(start, F_OK) != 0) usleep(5000);
    long cuts = envl("PLSHIM_CUTS", 20), lo = envl("PLSHIM_MIN_MS", 80), hi = envl("PLSHIM_MAX_MS", 400);
    if (hi <= lo) hi = lo + 1;
    for (int k = 1; k <= cuts; k++) {
        long ms = lo + (long)(rnd() % (uint64_t)(hi - lo));
        usleep((useconds_t)ms * 1000);
        pthread_mutex_lock(&g_lock);
        do_cut(k);
        pthread_mutex_unlock(&g_lock);
    }
    spill(done, (const unsigned char *)"done\n", 5);
    return NULL;
}

__attribute__((constructor)) static void shim_init(void) {
    const char *dir = getenv("PLSHIM_DIR"), *out = getenv("PLSHIM_OUT");
    if (!dir || !out || !realpath(dir, g_dir) || strlen(out) >= sizeof g_out) return;
    strcpy(g_out, out);
    const char *seed = getenv("PLSHIM_SEED");
    if (seed && *seed) g_rng = strtoull(seed, NULL, 10) * 0x9e3779b97f4a7c15ull + 1;
    char durdir[PATH_MAX + 16];
    snprintf(durdir, sizeof durdir, "%s/durable", g_out);
    mkdir(g_out, 0700);
    mkdir(durdir, 0700);
    load_write();
    load_pwrite();
    load_pwrite64();
    load_writev();
    load_pwritev();
    load_ftruncate();
    load_ftruncate64();
    load_fsync();
    load_fdatasync();
    load_unlink();
    /* what exists before the daemon starts is on disk */
    persist_all();
    g_active = 1;
    pthread_t th;
    if (pthread_create(&th, NULL, cutter, NULL) == 0) pthread_detach(th);
}

#define LOCKED(call)                        \
    do {                                    \
        pthread_mutex_lock(&g_lock);        \
        __typeof__(call) r_ = call;         \
        int e_ = errno;                     \
        pthread_mutex_unlock(&g_lock);      \
        errno = e_;                         \
        return r_;                          \
    } while (0)

ssize_t write(int fd, const void *b, size_t n) {
    char nm[256];
    load_write();
    if (!tracked_fd(fd, nm, sizeof nm)) return real_write(fd, b, n);
    LOCKED(real_write(fd, b, n));
}

ssize_t pwrite(int fd, const void *b, size_t n, off_t o) {
    char nm[256];
    load_pwrite();
    if (!tracked_fd(fd, nm, sizeof nm)) return real_pwrite(fd, b, n, o);
    LOCKED(real_pwrite(fd, b, n, o));
}

ssize_t pwrite64(int fd, const void *b, size_t n, off_t o) {
    char nm[256];
    load_pwrite64();
    if (!tracked_fd(fd, nm, sizeof nm)) return real_pwrite64(fd, b, n, o);
    LOCKED(real_pwrite64(fd, b, n, o));
}

ssize_t writev(int fd, const struct iovec *v, int c) {
    char nm[256];
    load_writev();
    if (!tracked_fd(fd, nm, sizeof nm)) return real_writev(fd, v, c);
    LOCKED(real_writev(fd, v, c));
}

ssize_t pwritev(int fd, const struct iovec *v, int c, off_t o) {
    char nm[256];
    load_pwritev();
    if (!tracked_fd(fd, nm, sizeof nm)) return real_pwritev(fd, v, c, o);
    LOCKED(real_pwritev(fd, v, c, o));
}

int ftruncate(int fd, off_t l) {
    char nm[256];
    load_ftruncate();
    if (!tracked_fd(fd, nm, sizeof nm)) return real_ftruncate(fd, l);
    LOCKED(real_ftruncate(fd, l));
}

int ftruncate64(int fd, off_t l) {
    char nm[256];
    load_ftruncate64();
    if (!tracked_fd(fd, nm, sizeof nm)) return real_ftruncate64(fd, l);
    LOCKED(real_ftruncate64(fd, l));
}

static int synced(int fd, int (*real)(int)) {
    char nm[256];
    if (!tracked_fd(fd, nm, sizeof nm)) return real(fd);
    pthread_mutex_lock(&g_lock);
    int r = real(fd);
    int e = errno;
    if (r == 0) persist(nm);
    pthread_mutex_unlock(&g_lock);
    errno = e;
    return r;
}

int fsync(int fd) {
    load_fsync();
    return synced(fd, real_fsync);
}

int fdatasync(int fd) {
    load_fdatasync();
    return synced(fd, real_fdatasync);
}

void sync(void) {
    void (*real_sync)(void) = (void (*)(void))dlsym(RTLD_NEXT, "sync");
    if (real_sync) real_sync();
    if (!g_active) return;
    pthread_mutex_lock(&g_lock);
    persist_all();
    pthread_mutex_unlock(&g_lock);
}

int syncfs(int fd) {
    int (*real_syncfs)(int) = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
    int r = real_syncfs ? real_syncfs(fd) : 0;
    if (g_active && r == 0) {
        pthread_mutex_lock(&g_lock);
        persist_all();
        pthread_mutex_unlock(&g_lock);
    }
    return r;
}

/* An unlinked database file is gone from the image too (only happens on a clean close). */
int unlink(const char *p) {
    char nm[256];
    load_unlink();
    if (!tracked_path(p, nm, sizeof nm)) return real_unlink(p);
    pthread_mutex_lock(&g_lock);
    int r = real_unlink(p);
    int e = errno;
    if (r == 0) {
        char dur[PATH_MAX * 2];
        snprintf(dur, sizeof dur, "%s/durable/%s", g_out, nm);
        real_unlink(dur);
    }
    pthread_mutex_unlock(&g_lock);
    errno = e;
    return r;
}
