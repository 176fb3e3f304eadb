/* s3slower event ABI: the one layout shared by the kernel program and
 * s3slower.common.events (which mirrors it; tests/test_events_abi.py pins it).
 *
 * Every ring-buffer record is a struct s3s_event header followed by cap_len
 * bytes of data.  Change a field here and the Python mirror must change too.
 */
#ifndef S3SLOWER_H
#define S3SLOWER_H

#define S3S_COMM_LEN 16
#define S3S_TAIL_LEN 16
/* Bytes of one call's buffer copied to user space: enough for the request
 * line, SigV4 headers and an S3 XML error document; bodies beyond that are
 * counted by length only (SPEC §8: payload is not stored). */
#define S3S_MAX_CAPTURE 4096

enum s3s_kind {
    S3S_EV_DATA = 1,     /* bytes moved on a tracked connection */
    S3S_EV_CONNECT = 2,  /* connect() succeeded; data = struct sockaddr */
    S3S_EV_CLOSE = 3,    /* close() of a tracked connection */
    S3S_EV_EXEC = 4,     /* a process exec'd; data = filename */
    S3S_EV_EXIT = 5,     /* a thread group ended */
    S3S_EV_MMAP = 6,     /* a traced process mapped a file executable (a
                            library loaded, maybe by dlopen); fd = its fd.
                            Read by the collector only, never forwarded. */
    S3S_EV_TLS_HELLO = 7, /* a connection's first bytes were a TLS handshake
                            record sent outside any probed TLS call (an
                            "opaque" connection until a probe fires on it):
                            data = those bytes (its ClientHello), len = the
                            bytes of that call */
    S3S_EV_OPAQUE = 8,   /* an opaque connection's byte counts; data =
                            struct s3s_opaque; start_ns = its connect */
};

enum s3s_dir { S3S_EGRESS = 0, S3S_INGRESS = 1 };

enum s3s_source {
    S3S_SRC_SYSCALL = 0,
    S3S_SRC_OPENSSL = 1,
    S3S_SRC_GNUTLS = 2,
    S3S_SRC_NSS = 3,
    S3S_SRC_GO = 4,
    S3S_SRC_S2N = 5,
};

struct s3s_event {
    __u64 start_ns;   /* monotonic ns at entry of the call */
    __u64 end_ns;     /* monotonic ns at return of the call */
    __u64 conn_id;    /* unique per connection (monotonic ns of connect) */
    __u32 pid;        /* thread group id */
    __u32 tid;
    __s32 fd;
    __u32 len;        /* bytes moved by the call (its return value) */
    __u32 cap_len;    /* bytes of data[] that follow this header */
    __u8 kind;        /* enum s3s_kind */
    __u8 dir;         /* enum s3s_dir */
    __u8 source;      /* enum s3s_source */
    __u8 tail_len;    /* valid bytes in tail[] (only when len > cap_len) */
    char comm[S3S_COMM_LEN];
    __u8 tail[S3S_TAIL_LEN]; /* last bytes of the buffer when truncated */
};

/* The data of an S3S_EV_OPAQUE record: sent at close (closed = 1) and
 * every S3S_OPAQUE_EVERY_NS while open (closed = 0), counts so far. */
struct s3s_opaque {
    __u64 bytes_sent;
    __u64 bytes_received;
    __u32 closed;
    __u32 pad;
};
#define S3S_OPAQUE_EVERY_NS 10000000000ULL

#endif
