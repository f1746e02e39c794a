/*
 * Test client for pmxcfs-ipc built on the real libqb client API, used the way
 * PVE::IPCC (IPCC.xs) uses it: qb_ipcc_connect(name, 1 MiB) + qb_ipcc_sendv_recv.
 *
 * usage: qbclient <service> requests   < frames
 *        qbclient <service> cycles <n>
 *        qbclient <service> flood <n>    (send n requests without reading replies)
 *        qbclient <service> bench <id> <n> <threads>
 *              (n requests of `id` per thread, one connection per thread; prints
 *               "<requests/s> <p50 us> <p99 us>")
 *
 * "requests": stdin holds frames (u32 length, then that many raw request bytes, sent as
 * is); a length of 0xffffffff means "disconnect and reconnect". For every request stdout
 * gets an i32 result of qb_ipcc_sendv_recv followed, when it is > 0, by that many bytes.
 * Connection failure: "connect failed: <errno>" on stderr, exit 2.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>
#include <qb/qbipcc.h>
#include <qb/qbipc_common.h>

#define MAX_MSG_SIZE (1024 * 1024)

static char rbuf[MAX_MSG_SIZE];

static int read_full(void *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = read(0, (char *)buf + off, len - off);
        if (n <= 0)
            return -1;
        off += n;
    }
    return 0;
}

static void write_full(const void *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(1, (const char *)buf + off, len - off);
        if (n <= 0)
            exit(3);
        off += n;
    }
}

static qb_ipcc_connection_t *connect_or_die(const char *name) {
    qb_ipcc_connection_t *c = qb_ipcc_connect(name, MAX_MSG_SIZE);
    if (!c) {
        fprintf(stderr, "connect failed: %d\n", errno);
        exit(2);
    }
    return c;
}

struct bench_arg {
    const char *name;
    int id, n;
    double *lat;
};

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void *bench_thread(void *p) {
    struct bench_arg *a = p;
    static __thread char tbuf[MAX_MSG_SIZE];
    qb_ipcc_connection_t *c = connect_or_die(a->name);
    struct qb_ipc_request_header h = {.id = a->id, .size = sizeof(h)};
    struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
    for (int i = 0; i < a->n; i++) {
        double t0 = now_us();
        int32_t r = qb_ipcc_sendv_recv(c, &iov, 1, tbuf, sizeof(tbuf), 10000);
        a->lat[i] = now_us() - t0;
        if (r < 0) {
            fprintf(stderr, "request failed: %d\n", r);
            exit(5);
        }
    }
    qb_ipcc_disconnect(c);
    return NULL;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 1;
    const char *name = argv[1];
    const char *mode = argv[2];

    if (strcmp(mode, "cycles") == 0 && argc > 3) {
        int n = atoi(argv[3]);
        struct qb_ipc_request_header h = {.id = 1, .size = sizeof(h)};
        int ok = 0;
        for (int i = 0; i < n; i++) {
            qb_ipcc_connection_t *c = connect_or_die(name);
            struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
            int32_t r = qb_ipcc_sendv_recv(c, &iov, 1, rbuf, sizeof(rbuf), 10000);
            if (r >= (int32_t)sizeof(struct qb_ipc_response_header))
                ok++;
            qb_ipcc_disconnect(c);
        }
        printf("%d\n", ok);
        return 0;
    }

    if (strcmp(mode, "bench") == 0 && argc > 5) {
        int id = atoi(argv[3]), n = atoi(argv[4]), threads = atoi(argv[5]);
        double *lat = calloc((size_t)n * threads, sizeof(double));
        pthread_t *tid = calloc(threads, sizeof(pthread_t));
        struct bench_arg *args = calloc(threads, sizeof(struct bench_arg));
        double t0 = now_us();
        for (int t = 0; t < threads; t++) {
            args[t] = (struct bench_arg){.name = name, .id = id, .n = n, .lat = lat + (size_t)t * n};
            pthread_create(&tid[t], NULL, bench_thread, &args[t]);
        }
        for (int t = 0; t < threads; t++)
            pthread_join(tid[t], NULL);
        double secs = (now_us() - t0) / 1e6;
        size_t total = (size_t)n * threads;
        qsort(lat, total, sizeof(double), cmp_double);
        printf("%.0f %.1f %.1f\n", total / secs, lat[total / 2], lat[(size_t)(total * 0.99)]);
        return 0;
    }

    if (strcmp(mode, "flood") == 0 && argc > 3) {
        int n = atoi(argv[3]);
        struct qb_ipc_request_header h = {.id = 1, .size = sizeof(h)};
        qb_ipcc_connection_t *c = connect_or_die(name);
        int sent = 0;
        for (int i = 0; i < n; i++) {
            if (qb_ipcc_send(c, &h, sizeof(h)) < 0)
                break;
            sent++;
        }
        printf("%d\n", sent);
        fflush(stdout);
        /* never read: wait until told to exit (stdin closed) */
        char x;
        while (read(0, &x, 1) > 0)
            ;
        qb_ipcc_disconnect(c);
        return 0;
    }

    qb_ipcc_connection_t *c = connect_or_die(name);
    for (;;) {
        uint32_t len;
        if (read_full(&len, 4) < 0)
            break;
        if (len == 0xffffffffu) {
            qb_ipcc_disconnect(c);
            c = connect_or_die(name);
            continue;
        }
        char *req = malloc(len ? len : 1);
        if (!req || read_full(req, len) < 0)
            return 4;
        struct iovec iov = {.iov_base = req, .iov_len = len};
        int32_t r = qb_ipcc_sendv_recv(c, &iov, 1, rbuf, sizeof(rbuf), 10000);
        write_full(&r, 4);
        if (r > 0)
            write_full(rbuf, r);
        free(req);
    }
    qb_ipcc_disconnect(c);
    return 0;
}
