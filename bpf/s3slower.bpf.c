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
 *  - A connection whose first egress bytes are a TLS record written outside
 *    any probed TLS call is "opaque" (see "opaque TLS" below): its first
 *    bytes go out once (TLS_HELLO), its bytes are counted in conn_t, and the
 *    counts go out at close and every 10 s (OPAQUE), never a record per
 *    call; any probed TLS call on it makes it an ordinary TLS connection.
 *
 * Compile-time knobs (-D): TRACE_ALL, RINGBUF_PAGES, MAX_CONNS (the collector's own pid is
 * the map self_pid, so one compiled object serves every start).
 */
#include <uapi/linux/ptrace.h>
#include <uapi/linux/uio.h>     /* struct iovec */
#include "s3slower.h"

/* The socket ABI this program reads, spelled out: <linux/socket.h> and
 * <linux/in.h> pull in most of the kernel's headers, and parsing them was a
 * third of clang's time on every start. These are user-space ABI, fixed. */
#define AF_INET 2
#define AF_INET6 10
#define SOCKADDR_IN_LEN 16      /* sizeof(struct sockaddr_in) */
#define SOCKADDR_IN6_LEN 28     /* sizeof(struct sockaddr_in6) */
struct user_msghdr {
    void *msg_name;
    int msg_namelen;
    struct iovec *msg_iov;
    __kernel_size_t msg_iovlen;
    void *msg_control;
    __kernel_size_t msg_controllen;
    unsigned int msg_flags;
};

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

/* What parse_head found and where its scan is, kept in map memory rather
 * than registers (the verifier then carries no state through its loop). */
#define MAX_LINES 64            /* header lines looked at in a head */
struct found_t {
    u64 mask;       /* newlines of the word at `base` not looked at yet (0x80 a byte) */
    u32 base;       /* offset of that word */
    u32 next;       /* offset of the next word to scan */
    u32 lim;        /* newlines from here on are not looked at */
    u32 end;        /* bytes of the head, through its empty line (0: not found) */
    u32 lines;      /* line starts looked at */
    u32 cl_at;      /* the Content-Length line's start */
    u32 cl_n;       /* Content-Length lines */
    u32 te;         /* Transfer-Encoding lines */
    u32 expect;     /* Expect lines */
    u32 status;     /* a response's status */
};

/* A head to frame, handed by a call's exit to the framing program (a tail
 * call: the parser is verified once, not in every program that emits). */
#define JOB_NONE 0
#define JOB_HERE 1      /* the head's bytes are in r->data */
#define JOB_REREAD 2    /* ... at `buf` (a vector's first buffer: r->data was reused) */
struct job_t {
    u64 conn_key;
    u64 conn_id;
    u64 buf;
    u32 cap;        /* bytes of the head's buffer captured */
    u32 len;        /* bytes the whole call moved, from the head on */
    u8 kind;        /* JOB_* */
    u8 dir;
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

struct record {
    struct s3s_event h;
    /* twice the capture so a masked length is provably in bounds */
    u8 data[2 * S3S_MAX_CAPTURE];
    struct found_t found;
    struct job_t job;
    struct io_args_t io;    /* the call a syscall exit hands to io_exit_tp */
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

/* Body framing, per direction of an HTTP connection (see "framing" below). */
#define FR_HEAD 0       /* a message head comes next */
#define FR_COUNT 1      /* in a Content-Length body: counted, one record at its end */
#define FR_COPY 2       /* in a Content-Length body that is copied (an error's, a POST's answer) */
#define FR_PASS 3       /* framing not followed here: every call goes out as it is */

struct frame_t {
    u64 left;       /* FR_COUNT, FR_COPY: body bytes still to come */
    u64 start_ns;   /* FR_COUNT: entry of the first body call not yet sent */
    u64 held;       /* FR_COUNT: body bytes moved and not yet sent */
    u64 end_ns;     /* FR_COUNT: return of the last call held */
    u64 moved;      /* body bytes of this message moved so far */
    u8 mode;        /* FR_* */
    u8 expect;      /* egress: this request said Expect: 100-continue */
    u8 head_req;    /* egress: this request is a HEAD (its response has no body) */
    u8 post;        /* egress: this request is a POST (a small answer is copied) */
    u8 source;      /* FR_COUNT: enum s3s_source of the calls held */
};

/* An opaque connection's counts (raw ST_TLS, `opaque` set). */
struct opaque_t {
    u64 sent;
    u64 received;
    u64 reported_ns;    /* the last OPAQUE record (or the TLS_HELLO) */
};

struct conn_t {
    u64 id;
    u8 raw;     /* enum conn_state of the bytes on the wire */
    u8 plain;   /* enum conn_state of TLS plaintext */
    u8 pending; /* tiny head reads are held in `tiny` */
    u8 opaque;  /* TLS that no probed call has touched yet: counted in `o` */
    struct frame_t f[2];    /* by enum s3s_dir */
    struct opaque_t o;
};

/* Tiny reads of a head in progress (boto3 reads `100 Continue` a byte per
 * call), held until the head is complete and sent as one record. */
#define TINY_MAX 32
#define TINY_MASK 63            /* lengths and indexes in tiny_t.data, for the verifier */
struct tiny_t {
    u64 start_ns;   /* entry of the first call held */
    u64 end_ns;     /* return of the last */
    u32 len;
    u8 source;
    u8 data[3 * TINY_MAX];  /* held bytes at [0, TINY_MAX); room for masked copies */
};


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
    u8 sent;        /* Go Write: its plaintext went out at its first ciphertext write */
    u32 len;        /* Go Write: bytes asked to write (all of them, or an error) */
};

/* Per-thread state, in task-local storage: one pointer away from the task
 * (no hashing, no locks, no free list), and freed by the kernel with the
 * thread.  in_* say which call is in progress. */
struct thread_t {
    struct io_args_t io;
    struct connect_args_t connect;
    struct tls_args_t tls;
    s32 last_rx;    /* fd of the TLS ciphertext read last, until a TLS call consumes it */
    u32 tls_n;      /* plaintext bytes of the TLS call that ended (tls_done) */
    u8 in_io;
    u8 in_connect;
    u8 in_tls;
    u8 has_rx;
    u8 tls_done;    /* `tls` ended, tls_n moved: for the shared TLS exit program */
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
BPF_TABLE("lru_hash", u64, struct tiny_t, tiny_heads, 4096);  /* by conn id */
BPF_PROG_ARRAY(frame_tp, 1);    /* the framing program for syscall tracepoints */
BPF_PROG_ARRAY(frame_up, 1);    /* ... for uprobes */
BPF_TASK_STORAGE(threads, struct thread_t);
BPF_TABLE("lru_hash", struct ssl_key_t, struct ssl_fd_t, ssl_fds, MAX_CONNS);
BPF_TABLE("lru_hash", struct go_key_t, struct tls_args_t, active_go, MAX_THREADS);
BPF_HASH(go_pids, u32, u8, 65536);          /* processes inside Go crypto/tls */
BPF_HASH(watch_comms, struct comm_key_t, u8, 1024); /* traced from exec on */
BPF_ARRAY(self_pid, u32, 1);                 /* set at load: the collector */

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
    u32 zero = 0;
    u32 *self = self_pid.lookup(&zero);     /* the collector's own traffic is not traced */
    if (self && *self == tgid)
        return 0;
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

/* Fill a record's header and submit it: `len` bytes moved, the first `cap`
 * of them in r->data; the tail comes from the end of `buf` (buf_len bytes)
 * when not all was captured. */
static __always_inline void put_kind(struct record *r, u8 kind, u64 conn_id, u64 start,
                                     u64 end, u32 fd, u8 dir, u8 source, u32 len,
                                     u32 cap, const void *buf, u32 buf_len)
{
    u64 pt = bpf_get_current_pid_tgid();
    r->h.start_ns = start;
    r->h.end_ns = end;
    r->h.conn_id = conn_id;
    r->h.pid = pt >> 32;
    r->h.tid = (u32)pt;
    r->h.fd = fd;
    r->h.len = len;
    r->h.cap_len = cap;
    r->h.kind = kind;
    r->h.dir = dir;
    r->h.source = source;
    r->h.tail_len = 0;
    if (buf && len > cap && buf_len >= S3S_TAIL_LEN) {
        if (bpf_probe_read_user(r->h.tail, S3S_TAIL_LEN,
                                (const u8 *)buf + buf_len - S3S_TAIL_LEN) == 0)
            r->h.tail_len = S3S_TAIL_LEN;
    }
    bpf_get_current_comm(r->h.comm, sizeof(r->h.comm));
    if (events.ringbuf_output(r, sizeof(struct s3s_event) + bounded(cap, S3S_MAX_CAPTURE), 0) != 0)
        count_lost(LOST_RINGBUF);
}

static __always_inline void put_record(struct record *r, u64 conn_id, u64 start,
                                       u64 end, u32 fd, u8 dir, u8 source, u32 len,
                                       u32 cap, const void *buf, u32 buf_len)
{
    put_kind(r, S3S_EV_DATA, conn_id, start, end, fd, dir, source, len, cap, buf, buf_len);
}

/* ---- opaque TLS: connections no probe reads ------------------------------
 * A connection that opens with a TLS record (0x16 0x03) written by a plain
 * syscall, no probed TLS call in progress, may be a library s3slower cannot
 * read (rustls, Java's JSSE, a static build).  Its first call's bytes (the
 * ClientHello: the aggregator reads the SNI from them) go out once as
 * TLS_HELLO; from then on its calls only add to conn_t's counts, and one
 * OPAQUE record carries them at close and every S3S_OPAQUE_EVERY_NS.  A
 * probed library's handshake looks the same at first (OpenSSL's
 * SSL_do_handshake is not probed): its first probed call on the connection
 * clears `opaque`, and the connection costs what any TLS one does. */
static __always_inline void opaque_start(struct record *r, struct conn_t *c, u64 start,
                                         u64 end, u32 fd, u32 cap, u32 len)
{
    c->opaque = 1;
    c->o.sent = len;
    c->o.received = 0;
    c->o.reported_ns = end;
    put_kind(r, S3S_EV_TLS_HELLO, c->id, start, end, fd, S3S_EGRESS, S3S_SRC_SYSCALL,
             len, cap, 0, 0);
}

/* ---- framing: bodies counted in the kernel -------------------------------
 * A Content-Length body of a 2xx/3xx message is not copied: its bytes are
 * counted and one record goes out when it ends (entry of its first call,
 * return of its last, every byte in `len`, none captured), so a 32 MiB GET
 * is one record, not two thousand.  The rules are aggregator/framing.py's
 * `body_framing`; whatever they do not cover plainly (chunked, no length, a
 * head not within one call, bytes past a message's end in the same call)
 * turns framing off for that direction of the connection: every call goes
 * out as it is, as before.  Error bodies (>= 400) are copied (their XML
 * names the error), and so is a 2xx/3xx answer to a POST of at most
 * POST_COPY_MAX bytes (CreateMultipartUpload's names its UploadId,
 * CompleteMultipartUpload's may be an error); a larger one is counted.  A
 * request head on a connection whose egress is not framed (FR_PASS: an
 * aws-chunked upload went before) is still looked at for its method, so
 * its response is framed by what it answers. */
#define PARSE_MAX 2048          /* a head is looked for in this many bytes */
#define HELD_MAX (1U << 30)     /* body bytes one record stands for, at most */
#define POST_COPY_MAX 4096      /* a POST's 2xx/3xx answer copied up to this size */
#define CL_NONE (-1)
#define CL_BAD (-2)

struct head_t {
    s64 cl;         /* Content-Length, CL_NONE or CL_BAD */
    u32 end;        /* bytes of the head, through its empty line */
    u16 status;     /* a response's */
    u8 te;          /* a Transfer-Encoding header */
    u8 expect;      /* Expect: (100-continue) */
};

/* What its response's framing needs of a request's method (d: its head). */
static __always_inline void note_method(struct frame_t *f, const u8 *d)
{
    f->head_req = d[0] == 'H' && d[1] == 'E' && d[2] == 'A' && d[3] == 'D' && d[4] == ' ';
    f->post = d[0] == 'P' && d[1] == 'O' && d[2] == 'S' && d[3] == 'T' && d[4] == ' ';
}

/* Little-endian words of lower-cased header names (| 0x20 lower-cases
 * letters and leaves '-' and ':' as they are). */
#define W_CONTENT_ 0x2d746e65746e6f63ULL        /* "content-" */
#define W_LENGTH 0x003a6874676e656cULL          /* "length:" */
#define W_TRANSFER 0x726566736e617274ULL        /* "transfer" */
#define W_EXPECT 0x003a746365707865ULL          /* "expect:" */
#define LOWER8 0x2020202020202020ULL
#define MASK7 0x00ffffffffffffffULL

/* Content-Length's value at d[at]: leading blanks, then digits to the first
 * non-digit (a list's first value counts); CL_BAD when there are none. */
static __always_inline s64 length_at(const u8 *d, u32 at)
{
    u64 v = 0;
    u32 digits = 0;
#pragma unroll
    for (int k = 0; k < 24; k++) {
        u8 ch = d[(at + k) & 0xfff];
        if (ch >= '0' && ch <= '9') {
            if (++digits > 18)
                return CL_BAD;
            v = v * 10 + (ch - '0');
        } else if (digits || (ch != ' ' && ch != '\t')) {
            break;
        }
    }
    return digits ? (s64)v : CL_BAD;
}

/* The 8 bytes at d[i], one load (x86-64 and arm64 load unaligned words;
 * the verifier checks alignment only on machines that cannot). */
static __always_inline u64 raw_word(const u8 *d, u32 i)
{
    return *(const u64 *)(d + (i & 0xfff));
}

/* The bytes of w that are '\n', as 0x80 in each (exact: no borrow crosses
 * bytes, so a later byte is never flagged by an earlier one). */
#define NL8 0x0a0a0a0a0a0a0a0aULL
#define LOW7 0x7f7f7f7f7f7f7f7fULL
#define HIGH8 0x8080808080808080ULL
static __always_inline u64 newlines(u64 w)
{
    w ^= NL8;
    return ~(((w & LOW7) + LOW7) | w) & HIGH8;
}

/* Index (0-7) of the lowest flagged byte of a nonzero newlines() mask:
 * (its bit >> 7) is 1 << 8k, and multiplying shifts the byte k of a table
 * (0x00 01 ... 07, high to low) into the top byte. */
static __always_inline u32 first_byte(u64 m)
{
    return (u32)((((m & -m) >> 7) * 0x0001020304050607ULL) >> 56);
}

/* Parse the head at the start of r->data[0, cap): 1 when its end is there.
 * The head is scanned 8 bytes at a time for newlines (a word without one,
 * most of a head, costs a load and a few ALU operations); at each newline
 * either the empty line ends the head or the next line's name is looked at
 * (Content-Length, Transfer-Encoding, Expect: the framing facts).  One
 * loop, each turn either up to SCAN_WORDS words to the next one with a
 * newline, or one newline; what it found goes to memory (r->found) between
 * turns, so the verifier walks each turn once, no state riding through in
 * registers (8 words a turn verified 1.5 x longer, 2 words 2 x).  Turns:
 * at most 2 x MAX_LINES for the lines (a word, a newline), PARSE_MAX /
 * (8 x SCAN_WORDS) for words without one, one to end.  Semantics as the
 * byte-by-byte scan it replaces: newlines from offset 12 up to
 * min(cap - 2, PARSE_MAX) are looked at; a head with MAX_LINES or more
 * lines before its empty line is not framed. */
#define SCAN_WORDS 4            /* words a turn scans for a newline, at most */
#define SCAN_STEPS (2 * MAX_LINES + PARSE_MAX / (8 * SCAN_WORDS) + 4)
static __always_inline int parse_head(struct record *r, u32 cap, u8 dir, struct head_t *h)
{
    const u8 *d = r->data;
    volatile struct found_t *fo = &r->found;
    /* h is filled after the scan, and what the direction decides goes to
     * memory: both directions enter the loop in one state (verified once) */
    h->cl = CL_NONE;
    h->end = 0;
    h->te = 0;
    h->expect = 0;
    fo->status = 0;
    if (cap < 16)
        return 0;
    if (dir == S3S_INGRESS) {
        u8 a = d[9] - '0', b = d[10] - '0', c = d[11] - '0';
        if (d[0] != 'H' || d[4] != '/' || d[8] != ' ' || a > 9 || b > 9 || c > 9)
            return 0;
        fo->status = a * 100 + b * 10 + c;
    } else {
        if (classify(d, cap) != ST_HTTP)    /* a request starts with its method */
            return 0;
    }
    /* "\n\r\n" must fit: the last newline looked at is cap - 3 */
    fo->lim = cap - 2 < PARSE_MAX ? cap - 2 : PARSE_MAX;
    fo->next = 12;
    fo->mask = 0;
    fo->end = 0;
    fo->lines = 0;
    fo->cl_n = 0;
    fo->te = 0;
    fo->expect = 0;
    for (u32 s = 0; s < SCAN_STEPS; s++) {
        u64 m = fo->mask;
        if (!m) {                       /* the next word with a newline */
            u32 base = fo->next;
            if (base >= fo->lim)
                return 0;               /* no empty line where it is looked for */
#pragma unroll
            for (int j = 0; j < SCAN_WORDS; j++) {
                m = newlines(raw_word(d, base));
                if (m)
                    break;
                base += 8;
            }
            fo->mask = m;
            fo->base = base;
            fo->next = m ? base + 8 : base;
            continue;
        }
        fo->mask = m & (m - 1);
        u32 at = fo->base + first_byte(m) + 1;     /* the byte after the newline */
        if (at > fo->lim)
            return 0;                   /* past where newlines are looked at */
        if (d[at & 0xfff] == '\r' && d[(at + 1) & 0xfff] == '\n') {   /* the empty line */
            fo->end = at + 2;
            break;
        }
        u32 n = fo->lines + 1;
        if (n >= MAX_LINES)
            return 0;                   /* more lines than are looked at */
        fo->lines = n;
        u64 w = raw_word(d, at) | LOWER8;
        u64 w2 = raw_word(d, at + 8) | LOWER8;
        if (w == W_CONTENT_ && (w2 & MASK7) == W_LENGTH) {
            if (fo->cl_n++ == 0)
                fo->cl_at = at;
        } else if (w == W_TRANSFER && (w2 & 0xff) == '-') {
            fo->te = 1;
        } else if ((w & MASK7) == W_EXPECT) {
            fo->expect = 1;
        }
    }
    u32 end = fo->end;
    if (!end || end > cap)
        return 0;
    h->end = end;
    h->status = fo->status;
    h->te = fo->te != 0;
    h->expect = fo->expect != 0;
    u32 cls = fo->cl_n;
    if (cls > 1)
        h->cl = CL_BAD;                 /* more than one: not followed here */
    else if (cls == 1)
        h->cl = length_at(d, fo->cl_at + 15);
    return 1;
}

/* A head was sent or received in one call of `len` bytes: how its body, if
 * any, is framed from here. */
static __always_inline void frame_head(struct record *r, struct conn_t *c,
                                       struct frame_t *f, u8 dir, u32 cap, u32 len)
{
    struct head_t h;
    h.status = 0;
    if (dir == S3S_EGRESS)
        note_method(f, r->data);
    int ok = parse_head(r, cap, dir, &h);
    /* the direction again, from memory: not carried through the scan */
    dir = *(volatile u8 *)&r->job.dir & 1;
    f = &c->f[dir];
    if (!ok) {
        f->mode = FR_PASS;
        return;
    }
    u64 after = len - h.end;    /* bytes after the head in this call */
    u64 body = 0;
    u8 mode = FR_COUNT;
    if (dir == S3S_EGRESS) {
        f->expect = h.expect;
        if (h.te || h.cl == CL_BAD) {
            f->mode = FR_PASS;
            return;
        }
        body = h.cl > 0 ? h.cl : 0;     /* a request without a length has no body */
    } else {
        if (h.status < 200) {           /* interim (100 Continue): the final head follows */
            f->mode = after ? FR_PASS : FR_HEAD;
            return;
        }
        /* a final answer to a request waiting for 100-continue that sent
         * nothing of its body: it sends none now (aggregator: refuse_body) */
        struct frame_t *q = &c->f[S3S_EGRESS];
        if (q->mode == FR_COUNT && q->expect && q->moved == 0) {
            q->mode = FR_HEAD;
            q->left = 0;
        }
        if (h.status == 204 || h.status == 304 || q->head_req) {
            body = 0;
        } else if (h.te || h.cl < 0) {  /* chunked, until close, or a bad length */
            f->mode = FR_PASS;
            return;
        } else {
            body = h.cl;
        }
        if (h.status >= 400 || (q->post && body <= POST_COPY_MAX))
            mode = FR_COPY;
    }
    if (after > body) {                 /* more than this message in one call */
        f->mode = FR_PASS;
        return;
    }
    if (after == body) {
        f->mode = FR_HEAD;
        return;
    }
    f->mode = mode;
    f->left = body - after;
    f->moved = after;
    f->held = 0;
}

/* Send the body bytes counted and not yet sent, as one record. */
static __always_inline void send_held(struct record *r, struct conn_t *c, struct frame_t *f,
                                      u32 fd, u8 dir, u8 source)
{
    if (!f->held)
        return;
    put_record(r, c->id, f->start_ns, f->end_ns, fd, dir, source, (u32)f->held, 0, 0, 0);
    f->held = 0;
}

/* A call inside a counted body: 1 when it is done with (held, or the body's
 * last call sent as its one record), 0 when it must go out as it is. */
static __always_inline int count_body(struct record *r, struct conn_t *c, struct frame_t *f,
                                      u64 start, u64 end, u32 fd, u8 dir, u8 source,
                                      const void *buf, u32 len)
{
    if (len > f->left) {                /* the body ends inside this call */
        send_held(r, c, f, fd, dir, source);
        f->mode = FR_PASS;
        return 0;
    }
    if (f->held + len > HELD_MAX)
        send_held(r, c, f, fd, dir, source);
    if (!f->held)
        f->start_ns = start;
    f->source = source;
    f->held += len;
    f->end_ns = end;
    f->left -= len;
    f->moved += len;
    if (f->left)
        return 1;
    put_record(r, c->id, f->start_ns, end, fd, dir, source, (u32)f->held, 0, buf, len);
    f->held = 0;
    f->mode = FR_HEAD;
    return 1;
}

/* Send the tiny reads held for a head that will not be completed. */
static __always_inline void send_tiny(struct record *r, struct conn_t *c, u32 fd)
{
    if (!c->pending)
        return;
    c->pending = 0;
    u64 id = c->id;
    struct tiny_t *t = tiny_heads.lookup(&id);
    if (!t)
        return;
    u32 n = t->len & TINY_MASK;
    if (n && bpf_probe_read_kernel(r->data, n, t->data) == 0)
        put_record(r, id, t->start_ns, t->end_ns, fd, S3S_INGRESS, t->source, n, n, 0, 0);
    tiny_heads.delete(&id);
}

/* What hold_tiny (NOT_HELD, HELD, HELD_SENT) and hold_tiny_user (TINY_FALLBACK,
 * HELD, TINY_GATHERED) answer: see each. */
enum { NOT_HELD = 0, HELD = 1, HELD_SENT = 2 };
enum { TINY_FALLBACK = 0, TINY_GATHERED = 2 };

/* The connection's held tiny reads, made empty when there are none yet. */
static __always_inline struct tiny_t *tiny_entry(struct conn_t *c)
{
    u64 id = c->id;
    struct tiny_t *t = tiny_heads.lookup(&id);
    if (!t) {
        struct tiny_t fresh = {};
        tiny_heads.update(&id, &fresh);
        t = tiny_heads.lookup(&id);
    }
    return t;
}

/* A first tiny read starts what is held (from its start, its source). */
static __always_inline void tiny_begin(struct conn_t *c, struct tiny_t *t, u64 start, u8 source)
{
    if (c->pending)
        return;
    t->len = 0;
    t->start_ns = start;
    t->source = source;
    c->pending = 1;
}

/* The held bytes now end at len (at end): HELD while the head is not whole;
 * TINY_GATHERED when it is, gathered into r->data (*cap, *start: the first
 * read's); TINY_FALLBACK when it could not be gathered. */
static __always_inline int tiny_add(struct record *r, struct conn_t *c, struct tiny_t *t,
                                    u64 *start, u64 end, u32 len, u32 *cap)
{
    t->len = len;
    t->end_ns = end;
    u32 k = t->len & TINY_MASK;
    if (k < 4 || t->data[(k - 4) & TINY_MASK] != '\r' || t->data[(k - 3) & TINY_MASK] != '\n' ||
        t->data[(k - 2) & TINY_MASK] != '\r' || t->data[(k - 1) & TINY_MASK] != '\n')
        return HELD;
    if (bpf_probe_read_kernel(r->data, k, t->data) != 0)
        return TINY_FALLBACK;
    *cap = k;
    *start = t->start_ns;
    c->pending = 0;
    return TINY_GATHERED;
}

/* Tiny reads while a head is due (*cap == len <= TINY_MAX, in r->data): held
 * until the head ends.  HELD: held; NOT_HELD: go on with r->data, *cap,
 * *start (the whole head gathered); HELD_SENT: too long to hold, what was
 * held went out as it was (through r->data, so this call's bytes must be
 * read again) and framing is off. */
static __always_inline int hold_tiny(struct record *r, struct conn_t *c, u64 *start,
                                     u64 end, u32 fd, u8 source, u32 *cap)
{
    struct tiny_t *t = tiny_entry(c);
    if (!t)
        return NOT_HELD;
    tiny_begin(c, t, *start, source);
    u32 off = t->len & (TINY_MAX - 1);
    u32 n = *cap & (2 * TINY_MAX - 1);
    if (off + n > TINY_MAX) {           /* longer than is held: framing off */
        send_tiny(r, c, fd);
        c->f[S3S_INGRESS].mode = FR_PASS;
        return HELD_SENT;
    }
    if (n && bpf_probe_read_kernel(t->data + off, n, r->data) != 0)
        return NOT_HELD;
    /* gathered or not, the call goes on with r->data */
    return tiny_add(r, c, t, start, end, off + n, cap) == HELD ? HELD : NOT_HELD;
}

/* hold_tiny for a call of len <= TINY_MAX bytes not read yet (at buf): its
 * bytes go from user memory straight to where they are held, not through
 * r->data (one copy a read, not two).  TINY_GATHERED: the head is whole, in
 * r->data (*cap, *start as hold_tiny leaves them); TINY_FALLBACK: the call
 * goes out as hold_tiny would leave it (held bytes sent and framing off, or
 * not held at all): read it into r->data as any call; HELD: held. */
static __always_inline int hold_tiny_user(struct record *r, struct conn_t *c, u64 *start,
                                          u64 end, u32 fd, u8 source, const void *buf,
                                          u32 len, u32 *cap)
{
    struct tiny_t *t = tiny_entry(c);
    if (!t)
        return TINY_FALLBACK;
    u32 off = c->pending ? t->len & (TINY_MAX - 1) : 0;
    u32 n = len;
    asm volatile("%0 &= 63" : "+r"(n));     /* 2 * TINY_MAX - 1, kept for the verifier */
    /* read first: a call whose bytes cannot be read is not held (as before) */
    if (bpf_probe_read_user(t->data + off, n, buf) != 0)
        return TINY_FALLBACK;
    tiny_begin(c, t, *start, source);
    if (off + n > TINY_MAX) {           /* longer than is held: framing off */
        send_tiny(r, c, fd);
        c->f[S3S_INGRESS].mode = FR_PASS;
        return TINY_FALLBACK;
    }
    return tiny_add(r, c, t, start, end, off + n, cap);
}

/* A connection closes: what it holds goes out before its CLOSE record. */
static __always_inline void send_all_held(struct conn_t *c, u32 fd)
{
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (!r)
        return;
    send_tiny(r, c, fd);
    send_held(r, c, &c->f[S3S_EGRESS], fd, S3S_EGRESS, c->f[S3S_EGRESS].source);
    send_held(r, c, &c->f[S3S_INGRESS], fd, S3S_INGRESS, c->f[S3S_INGRESS].source);
}

/* One call's bytes on an HTTP connection (or the first on an unclassified
 * one, which classifies it by its first egress bytes): framed, and copied
 * into a record where they go out.  `state` is c's raw or plain state. */
static __always_inline void emit_data(struct conn_t *c, u8 *state, u64 start,
                                      u64 end, u32 fd, u8 dir, u8 source,
                                      const void *buf, u32 len, u8 job, u32 job_len)
{
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (!r)
        return;
    dir &= 1;
    struct frame_t *f = &c->f[dir];
    if (*state == ST_HTTP) {
        if (dir == S3S_EGRESS)
            send_tiny(r, c, fd);        /* a head the peer never finished */
        if (f->mode == FR_COUNT && count_body(r, c, f, start, end, fd, dir, source, buf, len))
            return;
    }
    u32 cap = 0;
    int tiny = -1;                      /* hold_tiny_user's answer, -1: not asked */
    if (*state == ST_HTTP && dir == S3S_INGRESS && f->mode == FR_HEAD && buf &&
        len <= TINY_MAX) {
        tiny = hold_tiny_user(r, c, &start, end, fd, source, buf, len, &cap);
        if (tiny == HELD)
            return;
    }
    if (tiny != TINY_GATHERED) {
        cap = bounded(len, S3S_MAX_CAPTURE);
        if (!buf)
            cap = 0;
        if (cap > 0 && bpf_probe_read_user(r->data, cap, buf) != 0)
            cap = 0;
    }
    if (*state == ST_UNKNOWN) {
        if (dir != S3S_EGRESS)
            return;
        *state = classify(r->data, cap);
        if (*state == ST_TLS && source == S3S_SRC_SYSCALL)
            opaque_start(r, c, start, end, fd, cap, job_len);
    }
    if (*state != ST_HTTP)
        return;
    if (dir == S3S_EGRESS && f->mode == FR_PASS && cap >= 5 && classify(r->data, cap) == ST_HTTP)
        note_method(f, r->data);        /* an unframed request: its response's framing */
    u32 moved = len;
    if (tiny == TINY_GATHERED) {
        moved = cap;                    /* the gathered head */
    } else if (tiny < 0 && dir == S3S_INGRESS && f->mode == FR_HEAD && cap == len &&
               (c->pending || len <= TINY_MAX)) {
        int held = hold_tiny(r, c, &start, end, fd, source, &cap);
        if (held == HELD)
            return;
        /* the held bytes went out through r->data: this call's again */
        if (held == HELD_SENT && (cap = bounded(cap, S3S_MAX_CAPTURE)) > 0 &&
            bpf_probe_read_user(r->data, cap, buf) != 0)
            cap = 0;
        if (f->mode == FR_HEAD)
            moved = cap;                /* the gathered head */
    }
    put_record(r, c->id, start, end, fd, dir, source, moved, cap, buf, len);
    if (f->mode == FR_COPY) {
        if (len < f->left)
            f->left -= len;
        else
            f->mode = len == f->left ? FR_HEAD : FR_PASS;
    } else if (f->mode == FR_HEAD && job != JOB_NONE) {
        r->job.conn_key = conn_key(bpf_get_current_pid_tgid() >> 32, fd);
        r->job.conn_id = c->id;
        r->job.buf = (u64)buf;
        r->job.cap = cap;
        r->job.len = job == JOB_HERE && moved != len ? moved : job_len;
        r->job.dir = dir;
        r->job.kind = job;
    } else if (f->mode == FR_HEAD && r->job.kind == JOB_NONE) {
        f->mode = FR_PASS;              /* a head past a vector's first buffer */
    }
}

/* The framing program's work: frame the head the call's exit left in r->job. */
static __always_inline int run_frame_job(void)
{
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (!r || r->job.kind == JOB_NONE)
        return 0;
    u8 kind = r->job.kind;
    r->job.kind = JOB_NONE;
    u32 cap = bounded(r->job.cap, S3S_MAX_CAPTURE);
    if (kind == JOB_REREAD &&
        (cap == 0 || bpf_probe_read_user(r->data, cap, (const void *)r->job.buf) != 0))
        return 0;
    u64 key = r->job.conn_key;
    struct conn_t *c = conns.lookup(&key);
    if (!c || c->id != r->job.conn_id)
        return 0;
    u8 dir = r->job.dir & 1;
    struct frame_t *f = &c->f[dir];
    if (f->mode == FR_HEAD)
        frame_head(r, c, f, dir, cap, r->job.len);
    return 0;
}

int frame_head_tp(void *ctx) { return run_frame_job(); }
int frame_head_up(struct pt_regs *ctx) { return run_frame_job(); }

/* A call's exit starts with no job pending. */
static __always_inline struct record *job_clear(void)
{
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (r)
        r->job.kind = JOB_NONE;
    return r;
}

/* The scratch record with a header of `kind` and no data, or 0. */
static __always_inline struct record *simple_head(u8 kind, u32 fd, u64 conn_id)
{
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (!r)
        return 0;
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
    return r;
}

static __always_inline void emit_simple(u8 kind, u32 fd, u64 conn_id,
                                        const void *kdata, u32 klen)
{
    struct record *r = simple_head(kind, fd, conn_id);
    if (!r)
        return;
    u32 cap = bounded(klen, 256);
    if (kdata && cap > 0 && bpf_probe_read_user(r->data, cap, kdata) != 0)
        cap = 0;
    r->h.cap_len = cap;
    r->h.len = cap;
    if (events.ringbuf_output(r, sizeof(struct s3s_event) + bounded(cap, 256), 0) != 0)
        count_lost(LOST_RINGBUF);
}

/* An opaque connection's counts so far (opaque TLS, above). */
static __always_inline void opaque_report(struct conn_t *c, u32 fd, u32 closed)
{
    struct record *r = simple_head(S3S_EV_OPAQUE, fd, c->id);
    if (!r)
        return;
    struct s3s_opaque *o = (struct s3s_opaque *)r->data;
    o->bytes_sent = c->o.sent;
    o->bytes_received = c->o.received;
    o->closed = closed;
    o->pad = 0;
    r->h.start_ns = c->id;
    r->h.cap_len = sizeof(*o);
    r->h.len = sizeof(*o);
    if (events.ringbuf_output(r, sizeof(struct s3s_event) + sizeof(*o), 0) != 0)
        count_lost(LOST_RINGBUF);
}

/* A call on an opaque connection: counted; every S3S_OPAQUE_EVERY_NS the
 * counts go out. */
static __always_inline void opaque_count(struct conn_t *c, u32 fd, u8 dir, u32 n, u64 end)
{
    if (dir == S3S_EGRESS)
        c->o.sent += n;
    else
        c->o.received += n;
    if (end - c->o.reported_ns >= S3S_OPAQUE_EVERY_NS) {
        c->o.reported_ns = end;
        opaque_report(c, fd, 0);
    }
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

/* The program that sends a Go Write's plaintext (go_send_tp), tail-called
 * from the syscall that is about to put its first ciphertext on the wire. */
BPF_PROG_ARRAY(go_sends, 1);

static __always_inline int io_enter(void *ctx, u32 fd, u64 buf, u32 vlen, u8 dir, u8 shape)
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
            c->opaque = 0;      /* a probed library's: not opaque */
            if (dir == S3S_EGRESS && t->source == S3S_SRC_GO && t->dir == S3S_EGRESS && !t->sent)
                go_sends.call(ctx, 0);
            return 0;
        }
        if (c->raw == ST_TLS) {
            if (dir == S3S_INGRESS) {
                th->last_rx = fd;
                th->has_rx = 1;
            }
            if (!c->opaque)
                return 0;
            /* else counted at exit (opaque TLS) */
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

static __always_inline void emit_iovecs(struct conn_t *c, struct io_args_t *a, u64 end,
                                        const struct iovec *vec, u32 vlen,
                                        u32 remaining)
{
    /* not unrolled: the verifier walks each turn anyway, and unrolled this
     * was four more copies of emit_data (compile 0.3 s longer) */
#pragma clang loop unroll(disable)
    for (int i = 0; i < MAX_IOVECS; i++) {
        if (i >= vlen || remaining == 0)
            break;
        struct iovec iov = {};
        if (bpf_probe_read_user(&iov, sizeof(iov), &vec[i]) != 0)
            break;
        u32 n = iov.iov_len < remaining ? iov.iov_len : remaining;
        emit_data(c, &c->raw, a->start_ns, end, a->fd, a->dir, S3S_SRC_SYSCALL,
                  iov.iov_base, n, i == 0 ? JOB_REREAD : JOB_NONE, remaining);
        remaining -= n;
    }
    if (remaining > 0)  /* bytes we cannot show are still counted */
        emit_data(c, &c->raw, a->start_ns, end, a->fd, a->dir, S3S_SRC_SYSCALL,
                  0, remaining, JOB_NONE, 0);
}

/* A read/write-family call on a followed connection returned ret > 0 bytes;
 * its entry's arguments are in the scratch record (r->io), put there by
 * to_io_exit. */
static __always_inline int io_exit(void *ctx, long ret)
{
    u64 end = bpf_ktime_get_ns();
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (!r)
        return 0;
    struct io_args_t *a = &r->io;
    /* the connection (its framing; an unclassified one is classified by
     * these bytes), unless it closed meanwhile */
    u64 key = conn_key(bpf_get_current_pid_tgid() >> 32, a->fd);
    struct conn_t *c = conns.lookup(&key);
    if (!c || c->id != a->conn_id)
        return 0;
    if (a->raw == ST_TLS) {             /* opaque TLS: counted, no record */
        if (c->opaque)
            opaque_count(c, a->fd, a->dir, (u32)ret, end);
        return 0;
    }
    r->job.kind = JOB_NONE;
    if (a->shape == SHAPE_BUF) {
        emit_data(c, &c->raw, a->start_ns, end, a->fd, a->dir, S3S_SRC_SYSCALL,
                  (const void *)a->buf, (u32)ret, JOB_HERE, (u32)ret);
    } else {
        /* a msghdr is its iovec array: one copy of the vector code */
        const struct iovec *vec = (const struct iovec *)a->buf;
        u32 vlen = a->vlen;
        if (a->shape != SHAPE_IOVEC) {
            struct user_msghdr m = {};
            if (bpf_probe_read_user(&m, sizeof(m), (const void *)a->buf) != 0)
                return 0;
            vec = m.msg_iov;
            vlen = (u32)m.msg_iovlen;
        }
        emit_iovecs(c, a, end, vec, vlen, (u32)ret);
    }
    if (r->job.kind != JOB_NONE)
        frame_tp.call(ctx, 0);          /* does not return when it runs */
    return 0;
}

/* Every read/write-family exit runs the one shared exit program (a tail
 * call: their records have one layout), so its code is compiled and
 * verified once, not once per syscall; only calls on followed connections
 * that moved bytes get that far, their entry's arguments handed over in the
 * per-CPU scratch record (a tail call stays on this CPU), so the exit
 * program does not look the thread's state up again. */
BPF_PROG_ARRAY(io_exits, 1);

static __always_inline int to_io_exit(void *ctx, long ret)
{
    struct thread_t *th = thread_state(0);
    if (!th || !th->in_io)
        return 0;
    th->in_io = 0;
    if (ret <= 0)
        return 0;
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (!r)
        return 0;
    r->io = th->io;
    io_exits.call(ctx, 0);
    return 0;
}

/* the record of every sys_exit_* tracepoint (tracefs format: ret at 16) */
struct sys_exit_rec {
    u64 common;
    s32 syscall_nr;
    s32 pad;
    long ret;
};

int io_exit_tp(struct sys_exit_rec *args)
{
    return io_exit(args, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_write) {
    return io_enter(args, args->fd, (u64)args->buf, 0, S3S_EGRESS, SHAPE_BUF);
}
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return to_io_exit(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_writev) {
    return io_enter(args, args->fd, (u64)args->vec, args->vlen, S3S_EGRESS, SHAPE_IOVEC);
}
TRACEPOINT_PROBE(syscalls, sys_exit_writev) { return to_io_exit(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendto) {
    return io_enter(args, args->fd, (u64)args->buff, 0, S3S_EGRESS, SHAPE_BUF);
}
TRACEPOINT_PROBE(syscalls, sys_exit_sendto) { return to_io_exit(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg) {
    return io_enter(args, args->fd, (u64)args->msg, 0, S3S_EGRESS, SHAPE_MSGHDR);
}
TRACEPOINT_PROBE(syscalls, sys_exit_sendmsg) { return to_io_exit(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_read) {
    return io_enter(args, args->fd, (u64)args->buf, 0, S3S_INGRESS, SHAPE_BUF);
}
TRACEPOINT_PROBE(syscalls, sys_exit_read) { return to_io_exit(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_readv) {
    return io_enter(args, args->fd, (u64)args->vec, args->vlen, S3S_INGRESS, SHAPE_IOVEC);
}
TRACEPOINT_PROBE(syscalls, sys_exit_readv) { return to_io_exit(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom) {
    return io_enter(args, args->fd, (u64)args->ubuf, 0, S3S_INGRESS, SHAPE_BUF);
}
TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom) { return to_io_exit(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg) {
    return io_enter(args, args->fd, (u64)args->msg, 0, S3S_INGRESS, SHAPE_MSGHDR);
}
TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg) { return to_io_exit(args, args->ret); }

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
                family == AF_INET ? SOCKADDR_IN_LEN : SOCKADDR_IN6_LEN);
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
    if (followed)
        send_all_held(c, args->fd);
    if (c->opaque)
        opaque_report(c, args->fd, 1);
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
    struct ssl_fd_t *b = ssl_fds.lookup(&sk);
    if (a->fd < 0) {
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
    /* bound already (every call after the first): no update, which in an
     * LRU map costs several times a lookup */
    if (c && !(b && b->fd == a->fd && b->conn_id == c->id)) {
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
    if (c)
        c->opaque = 0;  /* a probed library's: not opaque */
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
    job_clear();
    emit_data(c, &c->plain, a->start_ns, bpf_ktime_get_ns(), a->fd, a->dir,
              a->source, (const void *)a->buf, n, JOB_HERE, n);
    return 0;
}

BPF_PROG_ARRAY(tls_exits, 1);   /* the shared TLS exit program, tls_exit_up */

/* After a TLS call's bytes went out: frame the head they began, if any. */
static __always_inline void frame_if_asked(struct pt_regs *ctx)
{
    u32 zero = 0;
    struct record *r = scratch.lookup(&zero);
    if (r && r->job.kind != JOB_NONE)
        frame_up.call(ctx, 0);
}

/* ret: the function's return value, already narrowed to its C type (an
 * `int` result leaves the upper half of RAX undefined: -1 is 0xffffffff). */
static __always_inline int tls_exit(struct pt_regs *ctx, u8 fn, long ret)
{
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
    th->tls_n = n;
    th->tls_done = 1;
    tls_exits.call(ctx, 0);
    return 0;
}

/* The one program that finishes every TLS call (a tail call from each
 * library's return probe), so its code is compiled and verified once. */
int tls_exit_up(struct pt_regs *ctx)
{
    struct thread_t *th = thread_state(0);
    if (!th || !th->tls_done)
        return 0;
    th->tls_done = 0;
    struct tls_args_t a = th->tls;
    tls_finish(&a, bpf_get_current_pid_tgid() >> 32, th, th->tls_n);
    frame_if_asked(ctx);
    return 0;
}

/* OpenSSL / BoringSSL / LibreSSL */
int ssl_write_enter(struct pt_regs *ctx) {
    return tls_enter(FN_SSL_WRITE, S3S_EGRESS, S3S_SRC_OPENSSL, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int ssl_write_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_SSL_WRITE, (int)PT_REGS_RC(ctx)); }
int ssl_read_enter(struct pt_regs *ctx) {
    return tls_enter(FN_SSL_READ, S3S_INGRESS, S3S_SRC_OPENSSL, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int ssl_read_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_SSL_READ, (int)PT_REGS_RC(ctx)); }
int ssl_write_ex_enter(struct pt_regs *ctx) {
    return tls_enter(FN_SSL_WRITE_EX, S3S_EGRESS, S3S_SRC_OPENSSL, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx));
}
int ssl_write_ex_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_SSL_WRITE_EX, (int)PT_REGS_RC(ctx)); }
int ssl_read_ex_enter(struct pt_regs *ctx) {
    return tls_enter(FN_SSL_READ_EX, S3S_INGRESS, S3S_SRC_OPENSSL, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx));
}
int ssl_read_ex_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_SSL_READ_EX, (int)PT_REGS_RC(ctx)); }

/* GnuTLS: ssize_t gnutls_record_send/recv(session, data, size) */
int gnutls_send_enter(struct pt_regs *ctx) {
    return tls_enter(FN_GNUTLS_SEND, S3S_EGRESS, S3S_SRC_GNUTLS, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int gnutls_send_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_GNUTLS_SEND, PT_REGS_RC(ctx)); }
int gnutls_recv_enter(struct pt_regs *ctx) {
    return tls_enter(FN_GNUTLS_RECV, S3S_INGRESS, S3S_SRC_GNUTLS, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int gnutls_recv_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_GNUTLS_RECV, PT_REGS_RC(ctx)); }

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
int pr_write_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_PR_WRITE, (int)PT_REGS_RC(ctx)); }
int pr_read_enter(struct pt_regs *ctx) { return nss_enter(ctx, FN_PR_READ, S3S_INGRESS); }
int pr_read_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_PR_READ, (int)PT_REGS_RC(ctx)); }
int pr_send_enter(struct pt_regs *ctx) { return nss_enter(ctx, FN_PR_SEND, S3S_EGRESS); }
int pr_send_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_PR_SEND, (int)PT_REGS_RC(ctx)); }
int pr_recv_enter(struct pt_regs *ctx) { return nss_enter(ctx, FN_PR_RECV, S3S_INGRESS); }
int pr_recv_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_PR_RECV, (int)PT_REGS_RC(ctx)); }

/* s2n: ssize_t s2n_send/s2n_recv(conn, buf, size, blocked) */
int s2n_send_enter(struct pt_regs *ctx) {
    return tls_enter(FN_S2N_SEND, S3S_EGRESS, S3S_SRC_S2N, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int s2n_send_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_S2N_SEND, PT_REGS_RC(ctx)); }
int s2n_recv_enter(struct pt_regs *ctx) {
    return tls_enter(FN_S2N_RECV, S3S_INGRESS, S3S_SRC_S2N, PT_REGS_PARM1(ctx),
                     PT_REGS_PARM2(ctx), 0);
}
int s2n_recv_return(struct pt_regs *ctx) { return tls_exit(ctx, FN_S2N_RECV, PT_REGS_RC(ctx)); }

/* Go crypto/tls.(*Conn).Write/Read, register ABI (amd64): receiver in RAX,
 * slice b in RBX (ptr) and RCX (len); n returned in RAX; g in R14.  Entry
 * probes may fire twice (stack growth re-enters the function): the later
 * one wins.  Exits are uprobes on each RET instruction, never uretprobes.
 *
 * A Write's plaintext goes out when the Write's first ciphertext syscall is
 * entered, not at its return: Go's HTTP client writes a connection from one
 * goroutine and reads it from another, on other threads, so the response
 * can be read, and its Read return, before the Write has returned (or ever
 * does: the process may exit first).  Records of a connection must reach
 * the ring in the order the bytes crossed (the first egress bytes classify
 * it, a HEAD request frames its response, a request pairs with its answer).
 * Write(b) sends all of b or fails, so its length is known at entry; a
 * Write whose syscall is not seen from its goroutine still goes out at its
 * return. */
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
    a.len = (u32)ctx->cx;
    active_go.update(&k, &a);
    u8 one = 1;
    if (!go_pids.lookup(&tgid))         /* an update costs several lookups */
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
    if (a.sent)
        return 0;       /* went out at its first ciphertext write (go_send_tp) */
    s64 ret = (s64)ctx->ax;
    struct thread_t *th = thread_state(1);
    if (!th)
        return 0;
    th->tls = a;
    th->tls_n = ret > 0 ? (u32)ret : 0;
    th->tls_done = 1;
    tls_exits.call(ctx, 0);
    return 0;
}

int go_write_enter(struct pt_regs *ctx) { return go_enter(ctx, FN_GO_WRITE, S3S_EGRESS); }
int go_write_return(struct pt_regs *ctx) { return go_exit(ctx, FN_GO_WRITE); }
int go_read_enter(struct pt_regs *ctx) { return go_enter(ctx, FN_GO_READ, S3S_INGRESS); }
int go_read_return(struct pt_regs *ctx) { return go_exit(ctx, FN_GO_READ); }
#endif

/* A Go Write's first ciphertext syscall is being entered: its plaintext goes
 * out now, all of it (see above). */
int go_send_tp(void *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct tls_args_t *t = go_call_here(tgid);
    if (!t || t->sent || t->fn != FN_GO_WRITE || t->fd < 0)
        return 0;
    t->sent = 1;
    struct tls_args_t a = *t;
    struct conn_t *c = tls_conn(&a, tgid, thread_state(0));
    struct record *r = job_clear();
    if (!c || !r || !a.len)
        return 0;
    /* constant direction and source: the compiler drops the ingress paths */
    emit_data(c, &c->plain, a.start_ns, bpf_ktime_get_ns(), a.fd, S3S_EGRESS, S3S_SRC_GO,
              (const void *)a.buf, a.len, JOB_HERE, a.len);
    if (r->job.kind != JOB_NONE)
        frame_tp.call(ctx, 0);
    return 0;
}
