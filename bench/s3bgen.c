/* s3bgen: the benches' synthetic traffic, as cheap as a real client can be.
 *
 * Its executable name is its comm ("s3bgen"), so `--watch s3bgen` selects it.
 * Every mode talks to a server thread of its own over loopback TCP only, and
 * every loop is bounded by a count given on the command line or stdin.
 *
 *   s3bgen probe N          time N calls of s3b_target() and N getppid()
 *                           syscalls per "go" line on stdin (probe calibration)
 *   s3bgen blast RATE COUNT IOV
 *                           after "go" on stdin: connect, then COUNT HTTP-looking
 *                           records as writev() calls of IOV requests each, paced
 *                           at RATE records/s (0 = as fast as possible)
 *   s3bgen conns N          open N keep-alive connections, one request each;
 *                           then stdin: "run RATE COUNT" (COUNT request/response
 *                           pairs round-robin over the connections), "close"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 16\r\nETag: \"0123\"\r\n"
    "x-amz-request-id: s3bgen\r\n\r\n0123456789abcdef";
#define RESPONSE_LEN (sizeof(RESPONSE) - 1)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int listener(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 65535))
        die("listen");
    socklen_t l = sizeof(a);
    getsockname(s, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return s;
}

static int dial(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof(a)))
        die("connect");
    return s;
}

static void pace(uint64_t t0, uint64_t done, double rate)
{
    if (rate <= 0)
        return;
    uint64_t due = t0 + (uint64_t)(done / rate * 1e9);
    uint64_t now = now_ns();
    if (due > now + 200000) {
        struct timespec ts = {0, (long)(due - now)};
        nanosleep(&ts, 0);
    }
}

static int wait_line(char *buf, size_t n)
{
    return fgets(buf, n, stdin) != 0;
}

/* ---- probe: calibration target ----------------------------------------- */

__attribute__((noinline)) int s3b_target(int x)
{
    asm volatile("" ::: "memory");
    return x + 1;
}

static int mode_probe(long n)
{
    char line[64];
    printf("ready\n");
    fflush(stdout);
    while (wait_line(line, sizeof(line))) {
        volatile int acc = 0;
        uint64_t t0 = now_ns();
        for (long i = 0; i < n; i++)
            acc += s3b_target((int)i);
        uint64_t t1 = now_ns();
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid);
        uint64_t t2 = now_ns();
        printf("call_ns=%.2f sys_ns=%.2f\n", (double)(t1 - t0) / n, (double)(t2 - t1) / n);
        fflush(stdout);
    }
    return 0;
}

/* ---- blast: one connection, many writes --------------------------------- */

static void *drain(void *arg)
{
    int ls = (int)(intptr_t)arg;
    int c = accept(ls, 0, 0);
    static char buf[1 << 20];
    while (read(c, buf, sizeof(buf)) > 0)
        ;
    close(c);
    return 0;
}

static int mode_blast(double rate, long count, int iov)
{
    int port, ls = listener(&port);
    pthread_t th;
    pthread_create(&th, 0, drain, (void *)(intptr_t)ls);
    char line[64];
    printf("ready\n");
    fflush(stdout);
    if (!wait_line(line, sizeof(line)))
        return 1;
    int s = dial(port);
    static const char req[] =
        "GET /bench/obj-000001 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: s3bgen\r\n\r\n";
    struct iovec v[64];
    if (iov < 1 || iov > 64)
        iov = 1;
    for (int i = 0; i < iov; i++) {
        v[i].iov_base = (void *)req;
        v[i].iov_len = sizeof(req) - 1;
    }
    uint64_t t0 = now_ns();
    long sent = 0;
    while (sent < count) {
        if (writev(s, v, iov) < 0)
            die("writev");
        sent += iov;
        if ((sent & 255) < iov)
            pace(t0, sent, rate);
    }
    uint64_t t1 = now_ns();
    shutdown(s, SHUT_WR);
    pthread_join(th, 0);
    close(s);
    printf("sent=%ld ns=%lu\n", sent, (unsigned long)(t1 - t0));
    fflush(stdout);
    return 0;
}

/* ---- conns: many keep-alive connections, request/response --------------- */

static void *serve(void *arg)
{
    int ls = (int)(intptr_t)arg;
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
    struct epoll_event evs[256];
    static char buf[65536];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c = accept(ls, 0, 0);
                if (c < 0)
                    continue;
                struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                continue;
            }
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r <= 0) {
                close(fd);
                continue;
            }
            /* one response per request head seen in this read */
            for (char *p = buf; (p = memmem(p, buf + r - p, "\r\n\r\n", 4)); p += 4)
                if (write(fd, RESPONSE, RESPONSE_LEN) < 0)
                    break;
        }
    }
    return 0;
}

static int request(int s, long i, char *rbuf)
{
    char req[160];
    int n = snprintf(req, sizeof(req),
                     "GET /bench/obj-%06ld HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "User-Agent: s3bgen\r\n\r\n", i % 1000000);
    if (write(s, req, n) != n)
        return -1;
    size_t got = 0;
    while (got < RESPONSE_LEN) {
        ssize_t r = read(s, rbuf + got, RESPONSE_LEN - got);
        if (r <= 0)
            return -1;
        got += r;
    }
    return 0;
}

static int mode_conns(long nconn)
{
    /* client and server each hold nconn sockets: two processes, so that
     * each fits under a hard RLIMIT_NOFILE of ~2 x nconn */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)nconn + 64) {
        fprintf(stderr, "s3bgen: RLIMIT_NOFILE %lu < %ld connections\n",
                (unsigned long)rl.rlim_cur, nconn + 64);
        return 1;
    }
    int port, ls = listener(&port);
    pid_t server = fork();
    if (server == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        serve((void *)(intptr_t)ls);
        _exit(0);
    }
    close(ls);
    int *fds = calloc(nconn, sizeof(int));
    char rbuf[RESPONSE_LEN + 1];
    for (long i = 0; i < nconn; i++) {
        fds[i] = dial(port);
        if (request(fds[i], i, rbuf))
            die("first request");
    }
    printf("open %ld\n", nconn);
    fflush(stdout);
    char line[128];
    while (wait_line(line, sizeof(line))) {
        double rate;
        long count;
        if (sscanf(line, "run %lf %ld", &rate, &count) == 2) {
            uint64_t t0 = now_ns();
            long done = 0;
            for (; done < count; done++) {
                if (request(fds[done % nconn], done, rbuf))
                    die("request");
                if ((done & 63) == 0)
                    pace(t0, done, rate);
            }
            printf("done sent=%ld ns=%lu\n", done, (unsigned long)(now_ns() - t0));
            fflush(stdout);
        } else if (strncmp(line, "close", 5) == 0) {
            for (long i = 0; i < nconn; i++)
                close(fds[i]);
            printf("closed\n");
            fflush(stdout);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "probe"))
        return mode_probe(atol(argv[2]));
    if (argc >= 5 && !strcmp(argv[1], "blast"))
        return mode_blast(atof(argv[2]), atol(argv[3]), atoi(argv[4]));
    if (argc >= 3 && !strcmp(argv[1], "conns"))
        return mode_conns(atol(argv[2]));
    fprintf(stderr, "usage: s3bgen probe N | blast RATE COUNT IOV | conns N\n");
    return 2;
}
