/* s3slower kernel program (BCC).
 *
 * Invariants:
 *  - Only connections this program saw connect() (AF_INET/AF_INET6) are
 *    tracked; everything else costs one hash lookup per syscall and returns.
 *  - A tracked connection's raw bytes are classified once, on its first
 *    egress call: HTTP is followed, TLS records and anything else are muted.
 *    TLS plaintext (uprobes) is classified the same way, separately.
 *  - A TLS call learns its socket from the read/write syscall nested inside
 *    it, or from the socket last bound to the same TLS object in this process
 *    (checked against the connection's id, so a reused fd is not confused),
 *    or, for libraries fed from user-space buffers (node, s2n in the AWS CRT),
 *    from the TLS ciphertext this thread read just before the call.
 *  - Go crypto/tls state is keyed by goroutine (g, from R14), never by thread:
 *    a goroutine may park inside Read and resume on another thread.  The
 *    syscall tracepoints find the running goroutine from the user registers.
 *  - Per-thread state (the call in progress, the socket read last) is in
 *    task-local storage (`threads`), freed with the thread by the kernel;
 *    per-process state (traced_pids, go_pids) is deleted when the process
 *    exits, in the kernel itself.
 *  - Every map is bounded (LRU or per-thread) and every dropped record is
 *    counted in `lost` by slot.
 *
 * Compile-time knobs (-D): TRACE_ALL, SELF_PID, RINGBUF_PAGES, MAX_CONNS.
 */
#include <uapi/linux/ptrace.h>
#include <linux/socket.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/uio.h>
#include "s3slower.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 2048      /* 8 MiB: ~2 s of a 1 GB/s header stream */
#endif
#ifndef MAX_CONNS
#define MAX_CONNS 65536         /* tracked sockets, LRU-evicted beyond */
#endif
#define MAX_THREADS 16384       /* threads inside one traced call at once */
#define MAX_IOVECS 4            /* iovecs captured per call; rest counted */

/* Records wake the collector the kernel's adaptive way (flags 0): only a
 * record committed while the collector has drained everything, i.e. sleeps,
 * wakes it.  It then gathers for a moment before draining, so a busy ring
 * costs one wake-up per drain and an idle one none. */

#define EINPROGRESS 115
#define PROT_EXEC_BIT 0x4

/* slots of the `lost` counter array; mirrored in common/events.py */
#define LOST_RINGBUF 0          /* ring buffer full: record dropped */
#define LOST_TLS_NOFD 1         /* TLS plaintext with no known socket */
#define LOST_THREAD_STATE 2     /* no per-thread storage for a call */
#define LOST_SLOTS 4

enum conn_state { ST_UNKNOWN = 0, ST_HTTP = 1, ST_TLS = 2, ST_OTHER = 3 };

struct record {
    struct s3s_event h;
    /* twice the capture so a masked length is provably in bounds */
    u8 data[2 * S3S_MAX_CAPTURE];
};

/* Clamp a length for the verifier: the compiler may otherwise fold the
 * comparison away and leave the helper's size argument unbounded. */
static __always_inline u32 bounded(u32 n, u32 max)
{
    if (n > max)
        n = max;
    asm volatile("%0 &= 0x1fff" : "+r"(n));
    return n;
}

struct conn_t {
    u64 id;
    u8 raw;     /* enum conn_state of the bytes on the wire */
    u8 plain;   /* enum conn_state of TLS plaintext */
};

struct io_args_t {
    u64 start_ns;
    u64 buf;        /* buffer, iovec array or msghdr */
    u64 conn_id;
    u32 fd;
    u32 vlen;
    u8 dir;
    u8 shape;       /* SHAPE_* */
    u8 raw;         /* the connection's raw state at entry */
};
#define SHAPE_BUF 0
#define SHAPE_IOVEC 1
#define SHAPE_MSGHDR 2

struct connect_args_t {
    u64 addr;
    u32 fd;
};

struct tls_args_t {
    u64 start_ns;
    u64 buf;
    u64 ssl;
    u64 outlen;     /* size_t * of the _ex variants, else 0 */
    s32 fd;
    u8 fn;
    u8 dir;
    u8 source;
};

/* Per-thread state, in task-local storage: one pointer away from the task
 * (no hashing, no locks, no free list), and freed by the kernel with the
 * thread.  in_* say which call is in progress. */
struct thread_t {
    struct io_args_t io;
    struct connect_args_t connect;
    struct tls_args_t tls;
    s32 last_rx;    /* fd of the TLS ciphertext read last, until a TLS call consumes it */
    u8 in_io;
    u8 in_connect;
    u8 in_tls;
    u8 has_rx;
};

struct ssl_key_t {
    u64 ssl;
    u32 pid;
    u32 pad;
};

/* the socket a TLS object was last seen on; conn_id guards fd reuse */
struct ssl_fd_t {
    u64 conn_id;
    s32 fd;
    u32 pad;
};

struct go_key_t {
    u64 g;          /* goroutine: runtime.g pointer (R14 with regabi) */
    u32 pid;
    u32 pad;
};

struct comm_key_t {
    char c[S3S_COMM_LEN];
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(scratch, struct record, 1);
BPF_PERCPU_ARRAY(lost, u64, LOST_SLOTS);
BPF_HASH(traced_pids, u32, u8, 65536);
BPF_TABLE("lru_hash", u32, u8, seen_pids, 65536);
BPF_TABLE("lru_hash", u64, struct conn_t, conns, MAX_CONNS);
BPF_TASK_STORAGE(threads, struct thread_t);
BPF_TABLE("lru_hash", struct ssl_key_t, struct ssl_fd_t, ssl_fds, MAX_CONNS);
BPF_TABLE("lru_hash", struct go_key_t, struct tls_args_t, active_go, MAX_THREADS);
BPF_HASH(go_pids, u32, u8, 65536);          /* processes inside Go crypto/tls */
BPF_HASH(watch_comms, struct comm_key_t, u8, 1024); /* traced from exec on */

static __always_inline void count_lost(u32 slot)
{
    u64 *v = lost.lookup(&slot);
    if (v)
        *v += 1;
}

/* The calling thread's state; create: allocate it on first use (a failure
 * is counted: that call goes unseen). */
static __always_inline struct thread_t *thread_state(int create)
{
    struct thread_t *th = threads.task_storage_get(
        bpf_get_current_task_btf(), 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
    if (!th && create)
        count_lost(LOST_THREAD_STATE);
    return th;
}

static __always_inline int pid_traced(u32 tgid)
{
#ifdef SELF_PID
    if (tgid == SELF_PID)
        return 0;
#endif
#ifdef TRACE_ALL
    return 1;
#else
    return traced_pids.lookup(&tgid) != 0;
#endif
}

static __always_inline u64 conn_key(u32 tgid, u32 fd)
{
    return ((u64)tgid << 32) | fd;
}

/* First bytes of a connection: an HTTP/1.x request, a TLS record, or other. */
static __always_inline u8 classify(const u8 *d, u32 cap)
{
    if (cap < 4)
        return ST_OTHER;
    if (d[0] == 0x16 && d[1] == 0x03)
        return ST_TLS;
    u32 w = d[0] | (d[1] << 8) | (d[2] << 16) | ((u32)d[3] << 24);
    switch (w) {
    case 0x20544547: /* "GET " */
    case 0x20545550: /* "PUT " */
    case 0x54534f50: /* "POST" */
    case 0x44414548: /* "HEAD" */
    case 0x454c4544: /* "DELE" */
    case 0x4954504f: /* "OPTI" */
    case 0x43544150: /* "PATC" */
        return ST_HTTP;
    }
    return ST_OTHER;
}

/* Copy one buffer into a record and submit it.  `state` is the connection's
 * raw or plain classification, updated on the first egress bytes. */
static __always_inline void emit_data(u64 conn_id, u8 *state, u64 start,
                                      u64 end, u32 fd, u8 dir, u8 source,
                                      const void *buf, u32 len)
{
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (!r)
        return;
    u32 cap = bounded(len, S3S_MAX_CAPTURE);
    if (!buf)
        cap = 0;
    if (cap > 0 && bpf_probe_read_user(r->data, cap, buf) != 0)
        cap = 0;
    if (*state == ST_UNKNOWN) {
        if (dir != S3S_EGRESS)
            return;
        *state = classify(r->data, cap);
    }
    if (*state != ST_HTTP)
        return;

    u64 pt = bpf_get_current_pid_tgid();
    r->h.start_ns = start;
    r->h.end_ns = end;
    r->h.conn_id = conn_id;
    r->h.pid = pt >> 32;
    r->h.tid = (u32)pt;
    r->h.fd = fd;
    r->h.len = len;
    r->h.cap_len = cap;
    r->h.kind = S3S_EV_DATA;
    r->h.dir = dir;
    r->h.source = source;
    r->h.tail_len = 0;
    if (buf && len > cap && len >= S3S_TAIL_LEN) {
        if (bpf_probe_read_user(r->h.tail, S3S_TAIL_LEN,
                                (const u8 *)buf + len - S3S_TAIL_LEN) == 0)
            r->h.tail_len = S3S_TAIL_LEN;
    }
    bpf_get_current_comm(r->h.comm, sizeof(r->h.comm));
    if (events.ringbuf_output(r, sizeof(struct s3s_event) + bounded(cap, S3S_MAX_CAPTURE), 0) != 0)
        count_lost(LOST_RINGBUF);
}

static __always_inline void emit_simple(u8 kind, u32 fd, u64 conn_id,
                                        const void *kdata, u32 klen)
{
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (!r)
        return;
    u64 pt = bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    __builtin_memset(&r->h, 0, sizeof(r->h));
    r->h.start_ns = now;
    r->h.end_ns = now;
    r->h.conn_id = conn_id;
    r->h.pid = pt >> 32;
    r->h.tid = (u32)pt;
    r->h.fd = fd;
    r->h.kind = kind;
    bpf_get_current_comm(r->h.comm, sizeof(r->h.comm));
    u32 cap = bounded(klen, 256);
    if (kdata && cap > 0 && bpf_probe_read_user(r->data, cap, kdata) != 0)
        cap = 0;
    r->h.cap_len = cap;
    r->h.len = cap;
    if (events.ringbuf_output(r, sizeof(struct s3s_event) + bounded(cap, 256), 0) != 0)
        count_lost(LOST_RINGBUF);
}

/* ---- read/write family ------------------------------------------------ */

/* The Go crypto/tls call the running goroutine is inside, if any.  Only for
 * processes that entered Go TLS code (go_pids): reads R14 of the user
 * registers saved at syscall entry (x86-64 regabi keeps g there). */
static __always_inline struct tls_args_t *go_call_here(u32 tgid)
{
#ifdef __x86_64__
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
    struct go_key_t k = {};
    if (bpf_probe_read_kernel(&k.g, sizeof(k.g), &regs->r14) != 0)
        return 0;
    k.pid = tgid;
    return active_go.lookup(&k);
#else
    return 0;
#endif
}

static __always_inline int io_enter(u32 fd, u64 buf, u32 vlen, u8 dir, u8 shape)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u64 key = conn_key(tgid, fd);
    struct conn_t *c = conns.lookup(&key);
    if (!c)
        return 0;
    struct thread_t *th = thread_state(1);
    if (!th)
        return 0;
    /* plain HTTP on the wire cannot be a TLS call's ciphertext: the fast
     * path skips the TLS lookups */
    if (c->raw != ST_HTTP) {
        struct tls_args_t *t = th->in_tls ? &th->tls : 0;
        if (!t && go_pids.lookup(&tgid))
            t = go_call_here(tgid);
        if (t) {
            /* ciphertext of a TLS call: name its socket, never emit it */
            if (t->fd < 0)
                t->fd = fd;
            c->raw = ST_TLS;
            return 0;
        }
        if (c->raw == ST_TLS) {
            if (dir == S3S_INGRESS) {
                th->last_rx = fd;
                th->has_rx = 1;
            }
            return 0;
        }
        if (c->raw == ST_OTHER)
            return 0;
    }
    th->io.start_ns = bpf_ktime_get_ns();
    th->io.buf = buf;
    th->io.conn_id = c->id;
    th->io.fd = fd;
    th->io.vlen = vlen;
    th->io.dir = dir;
    th->io.shape = shape;
    th->io.raw = c->raw;
    th->in_io = 1;
    return 0;
}

static __always_inline void emit_iovecs(u8 *state, struct io_args_t *a, u64 end,
                                        const struct iovec *vec, u32 vlen,
                                        u32 remaining)
{
#pragma unroll
    for (int i = 0; i < MAX_IOVECS; i++) {
        if (i >= vlen || remaining == 0)
            break;
        struct iovec iov = {};
        if (bpf_probe_read_user(&iov, sizeof(iov), &vec[i]) != 0)
            break;
        u32 n = iov.iov_len < remaining ? iov.iov_len : remaining;
        emit_data(a->conn_id, state, a->start_ns, end, a->fd, a->dir, S3S_SRC_SYSCALL,
                  iov.iov_base, n);
        remaining -= n;
    }
    if (remaining > 0)  /* bytes we cannot show are still counted */
        emit_data(a->conn_id, state, a->start_ns, end, a->fd, a->dir, S3S_SRC_SYSCALL,
                  0, remaining);
}

static __always_inline int io_exit(long ret)
{
    struct thread_t *th = thread_state(0);
    if (!th || !th->in_io)
        return 0;
    th->in_io = 0;
    if (ret <= 0)
        return 0;
    u64 end = bpf_ktime_get_ns();
    struct io_args_t *a = &th->io;
    /* A connection already known to carry HTTP stays so; an unclassified
     * one is classified by these bytes, in the map. */
    u8 http = ST_HTTP;
    u8 *state = &http;
    if (a->raw != ST_HTTP) {
        u64 key = conn_key(bpf_get_current_pid_tgid() >> 32, a->fd);
        struct conn_t *c = conns.lookup(&key);
        if (!c || c->id != a->conn_id)
            return 0;
        state = &c->raw;
    }
    if (a->shape == SHAPE_BUF) {
        emit_data(a->conn_id, state, a->start_ns, end, a->fd, a->dir, S3S_SRC_SYSCALL,
                  (const void *)a->buf, (u32)ret);
    } else if (a->shape == SHAPE_IOVEC) {
        emit_iovecs(state, a, end, (const struct iovec *)a->buf, a->vlen, (u32)ret);
    } else {
        struct user_msghdr m = {};
        if (bpf_probe_read_user(&m, sizeof(m), (const void *)a->buf) != 0)
            return 0;
        emit_iovecs(state, a, end, m.msg_iov, (u32)m.msg_iovlen, (u32)ret);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_write) {
    return io_enter(args->fd, (u64)args->buf, 0, S3S_EGRESS, SHAPE_BUF);
}
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_writev) {
    return io_enter(args->fd, (u64)args->vec, args->vlen, S3S_EGRESS, SHAPE_IOVEC);
}
TRACEPOINT_PROBE(syscalls, sys_exit_writev) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendto) {
    return io_enter(args->fd, (u64)args->buff, 0, S3S_EGRESS, SHAPE_BUF);
}
TRACEPOINT_PROBE(syscalls, sys_exit_sendto) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg) {
    return io_enter(args->fd, (u64)args->msg, 0, S3S_EGRESS, SHAPE_MSGHDR);
}
TRACEPOINT_PROBE(syscalls, sys_exit_sendmsg) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_read) {
    return io_enter(args->fd, (u64)args->buf, 0, S3S_INGRESS, SHAPE_BUF);
}
TRACEPOINT_PROBE(syscalls, sys_exit_read) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_readv) {
    return io_enter(args->fd, (u64)args->vec, args->vlen, S3S_INGRESS, SHAPE_IOVEC);
}
TRACEPOINT_PROBE(syscalls, sys_exit_readv) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom) {
    return io_enter(args->fd, (u64)args->ubuf, 0, S3S_INGRESS, SHAPE_BUF);
}
TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom) { return io_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg) {
    return io_enter(args->fd, (u64)args->msg, 0, S3S_INGRESS, SHAPE_MSGHDR);
}
TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg) { return io_exit(args->ret); }

/* ---- connection lifetime ---------------------------------------------- */

TRACEPOINT_PROBE(syscalls, sys_enter_connect) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!pid_traced(tgid))
        return 0;
    struct thread_t *th = thread_state(1);
    if (!th)
        return 0;
    th->connect.addr = (u64)args->uservaddr;
    th->connect.fd = args->fd;
    th->in_connect = 1;
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_connect) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 tgid = pt >> 32;
    struct thread_t *th = thread_state(0);
    if (!th || !th->in_connect)
        return 0;
    th->in_connect = 0;
    struct connect_args_t a = th->connect;
    if (args->ret != 0 && args->ret != -EINPROGRESS)
        return 0;
    u16 family = 0;
    bpf_probe_read_user(&family, sizeof(family), (const void *)a.addr);
    if (family != AF_INET && family != AF_INET6)
        return 0;
    struct conn_t c = {};
    c.id = bpf_ktime_get_ns();
    u64 key = conn_key(tgid, a.fd);
    conns.update(&key, &c);
    u8 one = 1;
    seen_pids.update(&tgid, &one);
    emit_simple(S3S_EV_CONNECT, a.fd, c.id, (const void *)a.addr,
                family == AF_INET ? sizeof(struct sockaddr_in)
                                  : sizeof(struct sockaddr_in6));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_close) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 tgid = pt >> 32;
    u64 key = conn_key(tgid, args->fd);
    struct conn_t *c = conns.lookup(&key);
    if (!c)
        return 0;
    u64 id = c->id;
    int followed = c->raw == ST_HTTP || c->plain == ST_HTTP;
    conns.delete(&key);
    if (followed)
        emit_simple(S3S_EV_CLOSE, args->fd, id, 0, 0);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec) {
    u32 off = args->data_loc_filename & 0xFFFF;
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (!r)
        return 0;
    u64 pt = bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    __builtin_memset(&r->h, 0, sizeof(r->h));
    r->h.start_ns = now;
    r->h.end_ns = now;
    r->h.pid = pt >> 32;
    r->h.tid = (u32)pt;
    r->h.fd = -1;
    r->h.kind = S3S_EV_EXEC;
    bpf_get_current_comm(r->h.comm, sizeof(r->h.comm));
#ifndef TRACE_ALL
    /* a watched name is traced from its first syscall on, before the
     * collector has even seen this record */
    struct comm_key_t ck = {};
    __builtin_memcpy(ck.c, r->h.comm, sizeof(ck.c));
    if (watch_comms.lookup(&ck)) {
        u8 one = 1;
        u32 tgid = pt >> 32;
        traced_pids.update(&tgid, &one);
    }
#endif
    int n = bpf_probe_read_kernel_str(r->data, 256, (void *)args + off);
    u32 cap = n > 0 ? bounded(n, 256) : 0;
    r->h.cap_len = cap;
    r->h.len = cap;
    if (events.ringbuf_output(r, sizeof(struct s3s_event) + bounded(cap, 256), 0) != 0)
        count_lost(LOST_RINGBUF);
    return 0;
}

/* Executable file mappings of traced processes: the collector looks at the
 * process's maps again (a dlopen'ed TLS library is probed before its first
 * call, not seconds later). */
TRACEPOINT_PROBE(syscalls, sys_enter_mmap) {
    if (!(args->prot & PROT_EXEC_BIT) || (long)args->fd < 0)
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!pid_traced(tgid))
        return 0;
    emit_simple(S3S_EV_MMAP, (u32)args->fd, 0, 0, 0);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 tgid = pt >> 32, tid = (u32)pt;
    /* per-thread state (`threads`) dies with the thread by itself */
    if (tgid != tid)
        return 0;   /* a thread, not the group leader */
    int known = seen_pids.lookup(&tgid) != 0 || traced_pids.lookup(&tgid) != 0;
    seen_pids.delete(&tgid);
    traced_pids.delete(&tgid);
    go_pids.delete(&tgid);
    if (known)
        emit_simple(S3S_EV_EXIT, -1, 0, 0, 0);
    return 0;
}

/* ---- TLS libraries: plaintext at the library boundary ------------------ */
/* (One translation unit on purpose: BCC rewrites and loads only what is in
 * its main file, so these probes cannot move to a header.) */

/* One id per probed function: an exit only completes its own entry. */
#define FN_SSL_WRITE 1
#define FN_SSL_READ 2
#define FN_SSL_WRITE_EX 3
#define FN_SSL_READ_EX 4
#define FN_GNUTLS_SEND 5
#define FN_GNUTLS_RECV 6
#define FN_PR_WRITE 7
#define FN_PR_READ 8
#define FN_PR_SEND 9
#define FN_PR_RECV 10
#define FN_S2N_SEND 11
#define FN_S2N_RECV 12
#define FN_GO_WRITE 13
#define FN_GO_READ 14

#define PR_DESC_LAYERED 4       /* NSPR PRDescType of an I/O layer (SSL) */

static __always_inline void tls_args(struct tls_args_t *a, u8 fn, u8 dir,
                                     u8 source, u64 ssl, u64 buf, u64 outlen)
{
    a->start_ns = bpf_ktime_get_ns();
    a->buf = buf;
    a->ssl = ssl;
    a->outlen = outlen;
    a->fd = -1;
    a->fn = fn;
    a->dir = dir;
    a->source = source;
}

static __always_inline int tls_enter(u8 fn, u8 dir, u8 source, u64 ssl,
                                     u64 buf, u64 outlen)
{
    struct thread_t *th = thread_state(1);
    /* a TLS function calling another keeps the outer call's record */
    if (!th || th->in_tls)
        return 0;
    tls_args(&th->tls, fn, dir, source, ssl, buf, outlen);
    th->in_tls = 1;
    return 0;
}

/* The tracked connection a finished TLS call belongs to, binding the TLS
 * object to it for later calls without a nested syscall.  Every TLS call
 * consumes the thread's last_rx: a library fed from memory (node) runs its
 * TLS calls for a socket right after reading that socket's ciphertext, so a
 * not-yet-bound object takes the socket read just before, and never one
 * that an earlier TLS call already answered for. */
static __always_inline struct conn_t *tls_conn(struct tls_args_t *a, u32 tgid,
                                               struct thread_t *th)
{
    s32 rx = -1;
    if (th && th->has_rx) {
        rx = th->last_rx;
        th->has_rx = 0;
    }
    struct ssl_key_t sk = {};
    sk.ssl = a->ssl;
    sk.pid = tgid;
    u64 key;
    struct conn_t *c = 0;
    if (a->fd < 0) {
        struct ssl_fd_t *b = ssl_fds.lookup(&sk);
        if (b) {
            key = conn_key(tgid, b->fd);
            c = conns.lookup(&key);
            if (c && c->id == b->conn_id) {
                a->fd = b->fd;
                return c;
            }
            /* else: that socket was closed (and its fd maybe reused) */
        }
        if (rx < 0)
            return 0;
        a->fd = rx;
    }
    key = conn_key(tgid, a->fd);    /* nested syscall, or the read just before */
    c = conns.lookup(&key);
    if (c) {
        struct ssl_fd_t v = {};
        v.conn_id = c->id;
        v.fd = a->fd;
        ssl_fds.update(&sk, &v);
    }
    return c;
}

/* Finish a TLS call: n = plaintext bytes moved (0 when it failed; a failed
 * call still binds its object to a socket, and a retried write is emitted
 * once, by the call that succeeds). */
static __always_inline int tls_finish(struct tls_args_t *a, u32 tgid,
                                      struct thread_t *th, u32 n)
{
    int had_fd = a->fd >= 0;
    struct conn_t *c = tls_conn(a, tgid, th);
    if (n == 0)
        return 0;
    if (!c) {
        /* only a process that opened a connection can lose its plaintext:
         * TLS servers on this host (accepted sockets) are not ours */
        if (!had_fd && pid_traced(tgid) && seen_pids.lookup(&tgid))
            count_lost(LOST_TLS_NOFD);
        return 0;   /* or not a connection this host opened (a server) */
    }
    c->raw = ST_TLS;
    emit_data(c->id, &c->plain, a->start_ns, bpf_ktime_get_ns(), a->fd, a->dir,
              a->source, (const void *)a->buf, n);
    return 0;
}

/* ret: the function's return value, already narrowed to its C type (an
 * `int` result leaves the upper half of RAX undefined: -1 is 0xffffffff). */
static __always_inline int tls_exit(u8 fn, long ret)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct thread_t *th = thread_state(0);
    if (!th || !th->in_tls || th->tls.fn != fn)
        return 0;
    struct tls_args_t a = th->tls;
    th->in_tls = 0;
    u32 n = 0;
    if (a.outlen) {                     /* SSL_*_ex: 1 and *outlen */
        if (ret == 1) {
            u64 v = 0;
            bpf_probe_read_user(&v, sizeof(v), (const void *)a.outlen);
            n = (u32)v;
        }
    } else if (ret > 0) {
        n = (u32)ret;
    }
    return tls_finish(&a, tgid, th, n);
}

/* OpenSSL / BoringSSL / LibreSSL */
int ssl_write_enter(struct pt_regs *ctx) {
    return tls_enter(FN_SSL_WRITE, S3S_EGRESS, S3S_SRC_OPENSSL, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int ssl_write_return(struct pt_regs *ctx) { return tls_exit(FN_SSL_WRITE, (int)PT_REGS_RC(ctx)); }
int ssl_read_enter(struct pt_regs *ctx) {
    return tls_enter(FN_SSL_READ, S3S_INGRESS, S3S_SRC_OPENSSL, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int ssl_read_return(struct pt_regs *ctx) { return tls_exit(FN_SSL_READ, (int)PT_REGS_RC(ctx)); }
int ssl_write_ex_enter(struct pt_regs *ctx) {
    return tls_enter(FN_SSL_WRITE_EX, S3S_EGRESS, S3S_SRC_OPENSSL, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx));
}
int ssl_write_ex_return(struct pt_regs *ctx) { return tls_exit(FN_SSL_WRITE_EX, (int)PT_REGS_RC(ctx)); }
int ssl_read_ex_enter(struct pt_regs *ctx) {
    return tls_enter(FN_SSL_READ_EX, S3S_INGRESS, S3S_SRC_OPENSSL, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx));
}
int ssl_read_ex_return(struct pt_regs *ctx) { return tls_exit(FN_SSL_READ_EX, (int)PT_REGS_RC(ctx)); }

/* GnuTLS: ssize_t gnutls_record_send/recv(session, data, size) */
int gnutls_send_enter(struct pt_regs *ctx) {
    return tls_enter(FN_GNUTLS_SEND, S3S_EGRESS, S3S_SRC_GNUTLS, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int gnutls_send_return(struct pt_regs *ctx) { return tls_exit(FN_GNUTLS_SEND, PT_REGS_RC(ctx)); }
int gnutls_recv_enter(struct pt_regs *ctx) {
    return tls_enter(FN_GNUTLS_RECV, S3S_INGRESS, S3S_SRC_GNUTLS, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int gnutls_recv_return(struct pt_regs *ctx) { return tls_exit(FN_GNUTLS_RECV, PT_REGS_RC(ctx)); }

/* NSPR: PRInt32 PR_Write/PR_Read/PR_Send/PR_Recv(PRFileDesc *fd, buf, amount, ...).
 * Only an I/O layer (NSS's SSL layer) carries plaintext; a bare NSPR socket
 * or file is left to the syscall tracepoints. */
static __always_inline int nss_enter(struct pt_regs *ctx, u8 fn, u8 dir)
{
    u64 fd = PT_REGS_PARM1(ctx), methods = 0;
    s32 type = 0;
    if (bpf_probe_read_user(&methods, sizeof(methods), (const void *)fd) != 0 ||
        bpf_probe_read_user(&type, sizeof(type), (const void *)methods) != 0 ||
        type != PR_DESC_LAYERED)
        return 0;
    return tls_enter(fn, dir, S3S_SRC_NSS, fd, PT_REGS_PARM2(ctx), 0);
}
int pr_write_enter(struct pt_regs *ctx) { return nss_enter(ctx, FN_PR_WRITE, S3S_EGRESS); }
int pr_write_return(struct pt_regs *ctx) { return tls_exit(FN_PR_WRITE, (int)PT_REGS_RC(ctx)); }
int pr_read_enter(struct pt_regs *ctx) { return nss_enter(ctx, FN_PR_READ, S3S_INGRESS); }
int pr_read_return(struct pt_regs *ctx) { return tls_exit(FN_PR_READ, (int)PT_REGS_RC(ctx)); }
int pr_send_enter(struct pt_regs *ctx) { return nss_enter(ctx, FN_PR_SEND, S3S_EGRESS); }
int pr_send_return(struct pt_regs *ctx) { return tls_exit(FN_PR_SEND, (int)PT_REGS_RC(ctx)); }
int pr_recv_enter(struct pt_regs *ctx) { return nss_enter(ctx, FN_PR_RECV, S3S_INGRESS); }
int pr_recv_return(struct pt_regs *ctx) { return tls_exit(FN_PR_RECV, (int)PT_REGS_RC(ctx)); }

/* s2n: ssize_t s2n_send/s2n_recv(conn, buf, size, blocked) */
int s2n_send_enter(struct pt_regs *ctx) {
    return tls_enter(FN_S2N_SEND, S3S_EGRESS, S3S_SRC_S2N, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int s2n_send_return(struct pt_regs *ctx) { return tls_exit(FN_S2N_SEND, PT_REGS_RC(ctx)); }
int s2n_recv_enter(struct pt_regs *ctx) {
    return tls_enter(FN_S2N_RECV, S3S_INGRESS, S3S_SRC_S2N, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int s2n_recv_return(struct pt_regs *ctx) { return tls_exit(FN_S2N_RECV, PT_REGS_RC(ctx)); }

/* Go crypto/tls.(*Conn).Write/Read, register ABI (amd64): receiver in RAX,
 * slice b in RBX (ptr) and RCX (len); n returned in RAX; g in R14.  Entry
 * probes may fire twice (stack growth re-enters the function): the later
 * one wins.  Exits are uprobes on each RET instruction, never uretprobes. */
#ifdef __x86_64__
static __always_inline int go_enter(struct pt_regs *ctx, u8 fn, u8 dir)
{
    u64 pt = bpf_get_current_pid_tgid();
    u32 tgid = pt >> 32;
    struct go_key_t k = {};
    k.g = ctx->r14;
    k.pid = tgid;
    struct tls_args_t a = {};
    tls_args(&a, fn, dir, S3S_SRC_GO, ctx->ax, ctx->bx, 0);
    active_go.update(&k, &a);
    u8 one = 1;
    go_pids.update(&tgid, &one);
    return 0;
}

static __always_inline int go_exit(struct pt_regs *ctx, u8 fn)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct go_key_t k = {};
    k.g = ctx->r14;
    k.pid = tgid;
    struct tls_args_t *ap = active_go.lookup(&k);
    if (!ap || ap->fn != fn)
        return 0;
    struct tls_args_t a = *ap;
    active_go.delete(&k);
    s64 ret = (s64)ctx->ax;
    return tls_finish(&a, tgid, thread_state(0), ret > 0 ? (u32)ret : 0);
}

int go_write_enter(struct pt_regs *ctx) { return go_enter(ctx, FN_GO_WRITE, S3S_EGRESS); }
int go_write_return(struct pt_regs *ctx) { return go_exit(ctx, FN_GO_WRITE); }
int go_read_enter(struct pt_regs *ctx) { return go_enter(ctx, FN_GO_READ, S3S_INGRESS); }
int go_read_return(struct pt_regs *ctx) { return go_exit(ctx, FN_GO_READ); }
#endif
