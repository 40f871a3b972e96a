/*
 * keyroute: a RESP proxy that serves a Redis Cluster as one endpoint.
 *
 * Clients without cluster awareness connect here; each command goes to the node serving its
 * first key's slot (CRC16 of the key or its {hash tag}, mod 16384). Why C: a request costs this
 * process two syscalls amortised over every client that is ready at once, where a Python relay
 * costs more than the node itself (see engine/proxy/keyroute.py and bench/serverless.py).
 *
 * Design:
 * - One thread, level-triggered epoll. Client connections may speak TLS (OpenSSL); the nodes are
 *   reached in plain text on loopback (they listen privately).
 * - One multiplexed connection per node, shared by all clients: a node's replies come in the
 *   order it was sent commands, so a FIFO per node matches each reply to its request; a FIFO per
 *   client hands replies back in the client's order. Everything read in one loop iteration is
 *   written to each node with one write, and each client's replies with one write.
 * - Where a command's keys are is data, not code: the table file (--commands) is made from the
 *   node's own COMMAND INFO key specs by keyroute.py. Only the first key decides the node; a
 *   multi-key command whose keys span slots gets the node's own CROSSSLOT error.
 * - MOVED: the slot map is read again (CLUSTER SLOTS) and the command sent to the new owner; ASK:
 *   ASKING then the command to the importing node. The client never sees either.
 * - A reader listener sends keyed commands to a replica of the slot's shard (READONLY), or to the
 *   primary while the shard has none.
 * - Commands that change a connection's state on the node (MULTI, WATCH, blocking reads,
 *   subscriptions) would leak into the other clients sharing it: they are refused (`stateful`).
 *
 * Usage: keyroute --commands FILE --seed HOST:PORT [--seed ...] --listen HOST:PORT[/reader] ...
 *                 [--cert FILE --key FILE] [--backend-user USER] (password: env KEYROUTE_PASSWORD)
 *                 [--client-logins yes] (clients' AUTH / HELLO AUTH: their commands go over
 *                 connections logged in as they are, so the nodes' ACLs judge every command)
 *                 [--ecpu-file FILE] (the ECPU/s limit, read again on SIGHUP; see admit())
 * Prints "ready" on stdout once every listener is bound and the slot map is known.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 16384
#define MAX_NODES 1024
#define MAX_LISTEN 8
#define MAX_REDIRECTS 5
#define READ_CHUNK 65536
#define MAX_PENDING_BYTES (64u << 20) /* a client's unread replies beyond this: it is closed */
#define REFRESH_EVERY_MS 2000

/* ---- small helpers ------------------------------------------------------------------------ */

static void say(const char *fmt, va_list ap) {
    fprintf(stderr, "keyroute: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    exit(2);
}

static void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    char *data;
    size_t len, cap, off; /* bytes [off, len) are unconsumed */
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + extra <= b->cap) return;
    if (b->off > b->cap / 2) { /* compact before growing */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t cap = b->cap ? b->cap : (extra > 256 ? extra : 256);
    while (cap < b->len + extra) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) die("out of memory");
    b->data = d;
    b->cap = cap;
}

static void buf_add(buf_t *b, const char *p, size_t n) {
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_str(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

static size_t buf_unread(const buf_t *b) { return b->len - b->off; }

static void buf_free(buf_t *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- RESP scanning ------------------------------------------------------------------------ */

/* Length of the line at p (up to and including CRLF), 0 when incomplete. */
static size_t line_len(const char *p, size_t n) {
    const char *cr = memchr(p, '\r', n);
    if (!cr || (size_t)(cr - p) + 1 >= n) return 0;
    return (size_t)(cr - p) + 2;
}

/* A decimal integer of at most 18 digits (every length and count RESP carries): parsed here
 * because strtoll needs a terminated copy, on every request. */
static int parse_ll(const char *p, size_t n, long long *out) {
    int neg = n > 0 && p[0] == '-';
    size_t i = (size_t)neg;
    if (n == i || n - i > 18) return -1;
    long long v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/* Length of one complete RESP2 or RESP3 value at p; 0 when incomplete; -1 on a protocol error. */
static long resp_len(const char *p, size_t n, int depth) {
    if (n == 0) return 0;
    if (depth > 64) return -1;
    size_t l = line_len(p, n);
    if (!l) return 0;
    long long v;
    switch (p[0]) {
    case '+': case '-': case ':': case '_': case '#': case ',': case '(':
        return (long)l;
    case '|': { /* attributes, then the value they describe: one reply */
        if (parse_ll(p + 1, l - 3, &v) < 0) return -1;
        size_t off = l;
        for (long long i = 0; i < 2 * v; i++) {
            long e = resp_len(p + off, n - off, depth + 1);
            if (e <= 0) return e;
            off += (size_t)e;
        }
        long e = resp_len(p + off, n - off, depth + 1);
        return e <= 0 ? e : (long)(off + (size_t)e);
    }
    case '$': case '!': case '=':
        if (parse_ll(p + 1, l - 3, &v) < 0) return -1;
        if (v < 0) return (long)l;
        if (l + (size_t)v + 2 > n) return 0;
        return (long)(l + (size_t)v + 2);
    case '*': case '%': case '~': case '>': {
        if (parse_ll(p + 1, l - 3, &v) < 0) return -1;
        if (p[0] == '%') v *= 2;
        size_t off = l;
        for (long long i = 0; i < v; i++) {
            long e = resp_len(p + off, n - off, depth + 1);
            if (e <= 0) return e;
            off += (size_t)e;
        }
        return (long)off;
    }
    default:
        return -1;
    }
}

typedef struct {
    const char *p;
    size_t len;
} arg_t;

typedef struct {
    arg_t *v;
    int n, cap;
} args_t;

static void args_push(args_t *a, const char *p, size_t len) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->v = realloc(a->v, sizeof(arg_t) * (size_t)a->cap);
        if (!a->v) die("out of memory");
    }
    a->v[a->n].p = p;
    a->v[a->n].len = len;
    a->n++;
}

/* One request at p: its length (0 incomplete, -1 bad), its arguments in a (pointing into p). */
static long parse_request(const char *p, size_t n, args_t *a) {
    a->n = 0;
    if (n == 0) return 0;
    if (p[0] != '*') { /* inline command: words up to the end of line */
        const char *nl = memchr(p, '\n', n);
        if (!nl) return n > 65536 ? -1 : 0;
        size_t end = (size_t)(nl - p);
        size_t stop = end && p[end - 1] == '\r' ? end - 1 : end;
        size_t i = 0;
        while (i < stop) {
            while (i < stop && (p[i] == ' ' || p[i] == '\t')) i++;
            size_t s = i;
            while (i < stop && p[i] != ' ' && p[i] != '\t') i++;
            if (i > s) args_push(a, p + s, i - s);
        }
        return (long)end + 1;
    }
    size_t l = line_len(p, n);
    if (!l) return n > 65536 ? -1 : 0;
    long long count;
    if (parse_ll(p + 1, l - 3, &count) < 0 || count > 1024 * 1024) return -1;
    size_t off = l;
    for (long long i = 0; i < count; i++) {
        size_t bl = line_len(p + off, n - off);
        if (!bl) return 0;
        long long len;
        if (p[off] != '$' || parse_ll(p + off + 1, bl - 3, &len) < 0 || len < 0 || len > 512LL * 1024 * 1024)
            return -1;
        if (off + bl + (size_t)len + 2 > n) return 0;
        args_push(a, p + off + bl, (size_t)len);
        off += bl + (size_t)len + 2;
    }
    return (long)off;
}

/* ---- slots -------------------------------------------------------------------------------- */

static uint16_t crc16(const char *buf, size_t len) { /* CRC16-CCITT (XMODEM), as Redis Cluster */
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)buf[i] << 8);
        for (int j = 0; j < 8; j++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

static int key_slot(const char *k, size_t len) {
    const char *open = memchr(k, '{', len);
    if (open) {
        size_t s = (size_t)(open - k) + 1;
        const char *close = memchr(k + s, '}', len - s);
        if (close && close > k + s) return crc16(k + s, (size_t)(close - (k + s))) & (SLOTS - 1);
    }
    return crc16(k, len) & (SLOTS - 1);
}

/* ---- the command table -------------------------------------------------------------------- */

enum { KS_NONE, KS_INDEX, KS_KEYWORD, KS_CONTAINER, KS_STATEFUL, KS_LOCAL };
enum { FK_RANGE, FK_KEYNUM };

typedef struct {
    char name[64];
    int kind;
    int index;        /* KS_INDEX: the argument the search starts at */
    char keyword[64]; /* KS_KEYWORD */
    int from;         /* KS_KEYWORD: where the search starts (negative: from the end, backwards) */
    int fk;           /* FK_RANGE: the key is where the search ended; FK_KEYNUM: see below */
    int keynumidx, firstkey;
    int used;
} spec_t;

#define TABLE_SIZE 4096
static spec_t table[TABLE_SIZE];

static unsigned hash_name(const char *s, size_t n) {
    unsigned h = 5381;
    for (size_t i = 0; i < n; i++) h = h * 33 + (unsigned)tolower((unsigned char)s[i]);
    return h;
}

static spec_t *table_find(const char *name, size_t n) {
    if (n >= sizeof table[0].name) return NULL;
    unsigned h = hash_name(name, n) & (TABLE_SIZE - 1);
    for (unsigned i = 0; i < TABLE_SIZE; i++) {
        spec_t *s = &table[(h + i) & (TABLE_SIZE - 1)];
        if (!s->used) return NULL;
        if (strlen(s->name) == n && strncasecmp(s->name, name, n) == 0) return s;
    }
    return NULL;
}

static spec_t *table_slot(const char *name) {
    size_t n = strlen(name);
    unsigned h = hash_name(name, n) & (TABLE_SIZE - 1);
    for (unsigned i = 0; i < TABLE_SIZE; i++) {
        spec_t *s = &table[(h + i) & (TABLE_SIZE - 1)];
        if (!s->used || strcasecmp(s->name, name) == 0) return s;
    }
    die("command table full");
    return NULL;
}

/* Lines: NAME none|container|stateful|local
 *        NAME index N range|keynum KNI FK
 *        NAME keyword KW FROM range|keynum KNI FK */
static void load_table(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot read %s: %s", path, strerror(errno));
    char line[512], name[64], kind[32], a[64], b[32], c[16], d[16], e[16];
    int count = 0;
    while (fgets(line, sizeof line, f)) {
        int got = sscanf(line, "%63s %31s %63s %31s %15s %15s %15s", name, kind, a, b, c, d, e);
        if (got < 2 || name[0] == '#') continue;
        spec_t *s = table_slot(name);
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", name);
        s->used = 1;
        count++;
        const char *fk = NULL, *kni = NULL, *first = NULL;
        if (!strcmp(kind, "none")) s->kind = KS_NONE;
        else if (!strcmp(kind, "container")) s->kind = KS_CONTAINER;
        else if (!strcmp(kind, "stateful")) s->kind = KS_STATEFUL;
        else if (!strcmp(kind, "local")) s->kind = KS_LOCAL;
        else if (!strcmp(kind, "index") && got >= 4) {
            s->kind = KS_INDEX;
            s->index = atoi(a);
            fk = b, kni = c, first = d;
            if (got < 6) kni = first = NULL;
        } else if (!strcmp(kind, "keyword") && got >= 5) {
            s->kind = KS_KEYWORD;
            snprintf(s->keyword, sizeof s->keyword, "%s", a);
            s->from = atoi(b);
            fk = c, kni = d, first = e;
            if (got < 7) kni = first = NULL;
        } else die("bad table line: %s", line);
        if (fk && !strcmp(fk, "keynum")) {
            if (!kni || !first) die("bad table line: %s", line);
            s->fk = FK_KEYNUM;
            s->keynumidx = atoi(kni);
            s->firstkey = atoi(first);
        }
    }
    fclose(f);
    if (!count) die("empty command table %s", path);
}

/* The first key of a request: its index in a, -1 when it has none, -2 stateful, -3 unknown
 * command, -4 answered here (local). */
static int first_key(const args_t *a, const spec_t **found) {
    const spec_t *s = table_find(a->v[0].p, a->v[0].len);
    if (s && s->kind == KS_CONTAINER && a->n > 1) {
        char full[128];
        size_t n0 = a->v[0].len, n1 = a->v[1].len;
        if (n0 + n1 + 2 < sizeof full) {
            memcpy(full, a->v[0].p, n0);
            full[n0] = '|';
            memcpy(full + n0 + 1, a->v[1].p, n1);
            const spec_t *sub = table_find(full, n0 + 1 + n1);
            if (sub) s = sub;
        }
    }
    *found = s;
    if (!s) return -3;
    int start = -1;
    switch (s->kind) {
    case KS_NONE: case KS_CONTAINER: return -1;
    case KS_STATEFUL: return -2;
    case KS_LOCAL: return -1; /* what answer_locally left to a node: keyless */
    case KS_INDEX:
        start = s->index;
        break;
    case KS_KEYWORD:
        if (s->from >= 0) {
            for (int i = s->from; i < a->n; i++)
                if (a->v[i].len == strlen(s->keyword) && !strncasecmp(a->v[i].p, s->keyword, a->v[i].len)) {
                    start = i + 1;
                    break;
                }
        } else {
            for (int i = a->n + s->from; i > 0; i--)
                if (a->v[i].len == strlen(s->keyword) && !strncasecmp(a->v[i].p, s->keyword, a->v[i].len)) {
                    start = i + 1;
                    break;
                }
        }
        if (start < 0) return -1;
        break;
    }
    if (s->fk == FK_KEYNUM) {
        int at = start + s->keynumidx;
        if (at >= a->n) return -1;
        long long keys;
        if (parse_ll(a->v[at].p, a->v[at].len, &keys) < 0 || keys <= 0) return -1;
        start = start + s->firstkey;
    }
    return start < a->n ? start : -1;
}

/* ---- connections -------------------------------------------------------------------------- */

typedef struct request request_t;
typedef struct client client_t;

typedef struct node {
    char host[64];
    int port;
    int fd;
    int connected;
    int reader; /* READONLY was sent: a connection for reads from a replica */
    buf_t out, in;
    request_t *head, *tail; /* waiting for a reply, in the order sent */
    int dirty;
    long long failed_at;
    uint32_t events; /* as for clients */
    int proto;          /* 2, or 3 for the clients that said HELLO 3 (HELLO 3 sent first) */
    int ident;          /* who the connection logs in as: 0 nobody (or --backend-user), else a client's login */
    struct node *base;  /* the node's first connection (proto 2, ident 0); NULL: this is it */
    struct node **twins; /* base only: its other connections by [proto 3?][ident], made when first needed */
} node_t;

/* The logins clients gave (AUTH / HELLO AUTH): each is a set of connections to the nodes, so the
 * nodes' own ACLs judge every command. Index 0 is "not logged in". */
#define MAX_IDENTS 256
static char *ident_user[MAX_IDENTS], *ident_pass[MAX_IDENTS];
static int ident_count = 1;
static int clients_log_in; /* --client-logins: connections of ident 0 carry no login of ours */

static int intern_ident(const arg_t *user, const arg_t *pass) {
    for (int i = 1; i < ident_count; i++)
        if (strlen(ident_user[i]) == user->len && !memcmp(ident_user[i], user->p, user->len) &&
            strlen(ident_pass[i]) == pass->len && !memcmp(ident_pass[i], pass->p, pass->len))
            return i;
    if (ident_count == MAX_IDENTS) return -1;
    ident_user[ident_count] = strndup(user->p, user->len);
    ident_pass[ident_count] = strndup(pass->p, pass->len);
    if (!ident_user[ident_count] || !ident_pass[ident_count]) die("out of memory");
    return ident_count++;
}

struct request {
    client_t *client; /* NULL: its client went away; the reply is dropped */
    request_t *next_client, *next_node;
    char *bytes;
    size_t len;
    buf_t reply;
    int done;
    int discard; /* an ASKING or login of ours: nobody waits for its reply */
    int redirects;
    int reader;
    int proto;
    int ident;
    int login; /* an AUTH / HELLO AUTH: refused, the client is logged out again */
    /* fan-out (a command every primary must run): the parent waits for its children */
    request_t *parent;
    int waiting, mode, shard;
    long long sum, items;
    int failed;
};

enum { FAN_SUM = 1, FAN_FIRST, FAN_CONCAT, FAN_SCAN };
#define SCAN_SHARDS 1024 /* a proxy cursor is the node's cursor * 1024 + the shard's index */

typedef struct listener {
    int fd;
    int reader;
} listener_t;

struct client {
    int fd;
    SSL *ssl;
    int reader;
    buf_t in, out;
    request_t *head, *tail;
    int closing;
    int dirty;
    int want_write; /* TLS needs the socket writable to go on */
    int proto;      /* 2 until the client says HELLO 3 */
    int ident;      /* its login (intern_ident), 0 until it logs in */
    int throttled;  /* its unread requests wait for ECPU tokens (on the throttled list) */
    client_t *next_throttled;
    client_t *next_dirty;
    struct tag_s *tag; /* what epoll hands back for this client */
    uint32_t events;   /* what epoll watches for now: changed only when it must (a syscall) */
};

static node_t *nodes[MAX_NODES];
static int node_count;
static int slot_primary[SLOTS];
static int slot_replicas[SLOTS][4];
static int slot_replica_count[SLOTS];
static unsigned rr;
static int epfd;
static SSL_CTX *tls;
static char *backend_user, *backend_password;
static char *seeds[64];
static int seed_count;
static int need_refresh;
static long long last_refresh;
static args_t scratch;
static client_t *dirty_clients;

static void node_watch(node_t *n);
static void client_close(client_t *c);

static int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void ep_set(int fd, void *ptr, uint32_t events, int add) {
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0 && !add)
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* epoll tags: the first byte of what data.ptr points at says what it is */
enum { TAG_LISTENER = 1, TAG_CLIENT, TAG_NODE };
typedef struct tag_s {
    int tag;
    void *what;
} tag_t;

static tag_t *tag_new(int tag, void *what) {
    tag_t *t = xmalloc(sizeof *t);
    t->tag = tag;
    t->what = what;
    return t;
}

static int split_addr(const char *s, char *host, size_t hostlen, int *port) {
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= hostlen) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    *port = atoi(colon + 1);
    return *port > 0 ? 0 : -1;
}

static int tcp_connect(const char *host, int port, int blocking) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!blocking) set_nonblock(fd);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static tag_t **node_tags;

static node_t *node_new(const char *host, int port, int proto) {
    if (node_count == MAX_NODES) return NULL;
    node_t *n = xmalloc(sizeof *n);
    memset(n, 0, sizeof *n);
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    n->fd = -1;
    n->proto = proto;
    nodes[node_count++] = n;
    return n;
}

/* The (RESP2) node at an address, known from now on; -1 when there are too many. */
static int node_index(const char *host, int port) {
    for (int i = 0; i < node_count; i++)
        if (!nodes[i]->base && nodes[i]->port == port && !strcmp(nodes[i]->host, host)) return i;
    return node_new(host, port, 2) ? node_count - 1 : -1;
}

/* The connection to node `n` for a client speaking `proto` logged in as `ident`. */
static node_t *node_for(node_t *n, int proto, int ident) {
    if (!n) return NULL;
    node_t *base = n->base ? n->base : n;
    int slot = (proto == 3) * MAX_IDENTS + ident;
    if (slot == 0) return base;
    if (!base->twins) {
        base->twins = calloc(2 * MAX_IDENTS, sizeof(node_t *));
        if (!base->twins) die("out of memory");
    }
    if (!base->twins[slot]) {
        node_t *twin = node_new(base->host, base->port, proto == 3 ? 3 : 2);
        if (!twin) return NULL;
        twin->ident = ident;
        twin->base = base;
        base->twins[slot] = twin;
    }
    return base->twins[slot];
}

static void append_command(buf_t *b, int argc, const char **argv) {
    char hdr[32];
    snprintf(hdr, sizeof hdr, "*%d\r\n", argc);
    buf_str(b, hdr);
    for (int i = 0; i < argc; i++) {
        snprintf(hdr, sizeof hdr, "$%zu\r\n", strlen(argv[i]));
        buf_str(b, hdr);
        buf_str(b, argv[i]);
        buf_str(b, "\r\n");
    }
}

/* A request and a copy of its bytes (sent again after a MOVED or ASK), in one allocation. */
static request_t *request_new(const char *bytes, size_t len) {
    request_t *r = xmalloc(sizeof *r + len);
    memset(r, 0, sizeof *r);
    r->bytes = (char *)(r + 1);
    memcpy(r->bytes, bytes, len);
    r->len = len;
    return r;
}

static void request_free(request_t *r) {
    buf_free(&r->reply);
    free(r);
}

static void node_mark_dirty(node_t *n) { n->dirty = 1; }

/* Queue a request on a node: its bytes to send, the request at the end of the node's FIFO. */
static void node_send(node_t *n, request_t *r) {
    buf_add(&n->out, r->bytes, r->len);
    r->next_node = NULL;
    if (n->tail) n->tail->next_node = r;
    else n->head = r;
    n->tail = r;
    node_mark_dirty(n);
}

static void node_send_internal(node_t *n, int argc, const char **argv) {
    buf_t tmp = {0};
    append_command(&tmp, argc, argv);
    request_t *r = request_new(tmp.data, tmp.len);
    r->discard = 1;
    buf_free(&tmp);
    node_send(n, r);
}

static int node_open(node_t *n, int reader) {
    if (n->fd >= 0) return 0;
    n->fd = tcp_connect(n->host, n->port, 0);
    if (n->fd < 0) {
        n->failed_at = now_ms();
        return -1;
    }
    n->connected = 0;
    n->reader = reader;
    buf_t pre = {0}; /* the login, HELLO 3 and READONLY go before anything queued */
    int login = n->ident > 0 || (backend_user && backend_password && !clients_log_in);
    if (n->ident > 0) {
        const char *argv[] = {"AUTH", ident_user[n->ident], ident_pass[n->ident]};
        append_command(&pre, 3, argv);
    } else if (login) {
        const char *argv[] = {"AUTH", backend_user, backend_password};
        append_command(&pre, 3, argv);
    }
    if (n->proto == 3) {
        const char *argv[] = {"HELLO", "3"};
        append_command(&pre, 2, argv);
    }
    if (reader) {
        const char *argv[] = {"READONLY"};
        append_command(&pre, 1, argv);
    }
    if (pre.len) {
        /* our requests go first in both the bytes and the FIFO */
        int count = login + (n->proto == 3) + reader;
        request_t *first = NULL, *last = NULL;
        for (int i = 0; i < count; i++) {
            request_t *r = request_new("", 0);
            r->discard = 1;
            if (last) last->next_node = r;
            else first = r;
            last = r;
        }
        last->next_node = n->head;
        n->head = first;
        if (!n->tail) n->tail = last;
        buf_t merged = {0};
        buf_add(&merged, pre.data, pre.len);
        buf_add(&merged, n->out.data + n->out.off, buf_unread(&n->out));
        buf_free(&n->out);
        n->out = merged;
    }
    buf_free(&pre);
    node_watch(n);
    return 0;
}

static void mark_dirty(client_t *c) {
    if (!c->dirty) {
        c->dirty = 1;
        c->next_dirty = dirty_clients;
        dirty_clients = c;
    }
}

/* A request's reply: straight to its client's output when it is the oldest the client waits
 * for (the common case; no copy kept), else kept until those before it are answered. */
static void child_reply(request_t *r, const char *bytes, size_t len);

static void reply_to(request_t *r, const char *bytes, size_t len) {
    if (r->parent) {
        child_reply(r, bytes, len);
        return;
    }
    client_t *c = r->client;
    if (c && r->login && (bytes[0] == '-' || bytes[0] == '!') && c->ident == r->ident) c->ident = 0;
    if (c && c->head == r) {
        buf_add(&c->out, bytes, len);
        c->head = r->next_client;
        if (!c->head) c->tail = NULL;
        request_free(r);
        mark_dirty(c);
        return;
    }
    buf_add(&r->reply, bytes, len);
    r->done = 1;
    if (c) mark_dirty(c);
}

static void node_fail(node_t *n, const char *why) {
    warn("node %s:%d: %s", n->host, n->port, why);
    if (n->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, n->fd, NULL);
        close(n->fd);
    }
    n->fd = -1;
    n->connected = 0;
    n->failed_at = now_ms();
    buf_free(&n->out);
    buf_free(&n->in);
    static const char lost[] = "-TRYAGAIN the connection to the node was lost; retry\r\n";
    request_t *r = n->head;
    while (r) {
        request_t *next = r->next_node;
        if (r->discard) request_free(r);
        else if (!r->client && !r->parent) request_free(r);
        else reply_to(r, lost, sizeof lost - 1);
        r = next;
    }
    n->head = n->tail = NULL;
    need_refresh = 1;
}

/* ---- the slot map ------------------------------------------------------------------------- */

typedef struct rv {
    char type;
    long long integer;
    const char *str;
    size_t len;
    struct rv *elems;
    long long n;
} rv_t;

static long rv_parse(const char *p, size_t n, rv_t *out) {
    size_t l = line_len(p, n);
    if (!l) return -1;
    memset(out, 0, sizeof *out);
    out->type = p[0];
    switch (p[0]) {
    case '+': case '-':
        out->str = p + 1;
        out->len = l - 3;
        return (long)l;
    case ':':
        if (parse_ll(p + 1, l - 3, &out->integer) < 0) return -1;
        return (long)l;
    case '$': {
        long long len;
        if (parse_ll(p + 1, l - 3, &len) < 0) return -1;
        if (len < 0) return (long)l;
        out->str = p + l;
        out->len = (size_t)len;
        return (long)(l + (size_t)len + 2);
    }
    case '*': {
        if (parse_ll(p + 1, l - 3, &out->n) < 0 || out->n < 0) return out->n < 0 ? (long)l : -1;
        out->elems = xmalloc(sizeof(rv_t) * (size_t)(out->n ? out->n : 1));
        size_t off = l;
        for (long long i = 0; i < out->n; i++) {
            long e = rv_parse(p + off, n - off, &out->elems[i]);
            if (e < 0) return -1;
            off += (size_t)e;
        }
        return (long)off;
    }
    }
    return -1;
}

static void rv_free(rv_t *v) {
    for (long long i = 0; i < v->n && v->elems; i++) rv_free(&v->elems[i]);
    free(v->elems);
}

/* A blocking round trip to one address (the slot map is read rarely and is small). */
static int ask_sync(const char *host, int port, int argc, const char **argv, buf_t *reply, long *vlen) {
    int fd = tcp_connect(host, port, 1);
    if (fd < 0) return -1;
    /* short: the loop waits for it, and a frozen node accepts connections but never answers;
     * a healthy node on this machine answers CLUSTER SLOTS in well under a millisecond */
    struct timeval tv = {.tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    buf_t out = {0};
    int replies = 1;
    if (backend_user && backend_password) {
        const char *auth[] = {"AUTH", backend_user, backend_password};
        append_command(&out, 3, auth);
        replies = 2;
    }
    append_command(&out, argc, argv);
    int ok = write(fd, out.data, out.len) == (ssize_t)out.len;
    buf_free(&out);
    reply->len = reply->off = 0;
    long total = 0;
    while (ok) {
        buf_reserve(reply, READ_CHUNK);
        ssize_t got = read(fd, reply->data + reply->len, reply->cap - reply->len);
        if (got <= 0) { ok = 0; break; }
        reply->len += (size_t)got;
        size_t off = 0;
        int seen = 0;
        long l = 0;
        while (seen < replies && (l = resp_len(reply->data + off, reply->len - off, 0)) > 0) {
            seen++;
            if (seen < replies) off += (size_t)l;
        }
        if (l < 0) { ok = 0; break; }
        if (seen == replies) {
            reply->off = off;
            total = l;
            break;
        }
    }
    close(fd);
    *vlen = total;
    return ok ? 0 : -1;
}

static int refresh_from(const char *host, int port) {
    const char *argv[] = {"CLUSTER", "SLOTS"};
    buf_t reply = {0};
    long len = 0;
    if (ask_sync(host, port, 2, argv, &reply, &len) < 0) {
        buf_free(&reply);
        return -1;
    }
    rv_t v;
    int ok = rv_parse(reply.data + reply.off, (size_t)len, &v) > 0 && v.type == '*';
    if (ok) {
        int primary[SLOTS], replicas[SLOTS][4], rcount[SLOTS];
        for (int s = 0; s < SLOTS; s++) primary[s] = -1, rcount[s] = 0;
        for (long long i = 0; i < v.n; i++) {
            rv_t *range = &v.elems[i];
            if (range->type != '*' || range->n < 3) continue;
            int lo = (int)range->elems[0].integer, hi = (int)range->elems[1].integer;
            int ids[5], k = 0;
            for (long long j = 2; j < range->n && k < 5; j++) {
                rv_t *node = &range->elems[j];
                if (node->type != '*' || node->n < 2 || node->elems[0].type != '$') continue;
                char h[64];
                size_t hl = node->elems[0].len < 63 ? node->elems[0].len : 63;
                memcpy(h, node->elems[0].str, hl);
                h[hl] = 0;
                if (!hl) snprintf(h, sizeof h, "%s", host); /* "" means the address asked */
                ids[k++] = node_index(h, (int)node->elems[1].integer);
            }
            if (k == 0 || ids[0] < 0) continue;
            for (int s = lo; s <= hi && s < SLOTS; s++) {
                if (s < 0) continue;
                primary[s] = ids[0];
                for (int j = 1; j < k && j <= 4; j++)
                    if (ids[j] >= 0) replicas[s][rcount[s]++] = ids[j];
            }
        }
        memcpy(slot_primary, primary, sizeof primary);
        memcpy(slot_replicas, replicas, sizeof replicas);
        memcpy(slot_replica_count, rcount, sizeof rcount);
    }
    if (v.type) rv_free(&v);
    buf_free(&reply);
    return ok ? 0 : -1;
}

static int refresh_slots(void) {
    last_refresh = now_ms();
    need_refresh = 0;
    /* the nodes known first (they follow failovers and resharding), then the seeds */
    for (int i = 0; i < node_count; i++) {
        if (!nodes[i]->base && refresh_from(nodes[i]->host, nodes[i]->port) == 0) return 0;
    }
    for (int i = 0; i < seed_count; i++) {
        char host[64];
        int port;
        if (split_addr(seeds[i], host, sizeof host, &port) == 0 && refresh_from(host, port) == 0) return 0;
    }
    need_refresh = 1;
    return -1;
}

/* ---- routing ------------------------------------------------------------------------------ */

static node_t *route(int slot, int reader, int *as_reader) {
    *as_reader = 0;
    if (reader && slot >= 0 && slot_replica_count[slot] > 0) {
        int idx = slot_replicas[slot][rr++ % (unsigned)slot_replica_count[slot]];
        *as_reader = 1;
        return nodes[idx];
    }
    if (slot < 0) { /* keyless: any primary, in turns */
        for (int tries = 0; tries < SLOTS; tries++) {
            int s = (int)((rr++ * 4099u) % SLOTS);
            if (slot_primary[s] >= 0) return nodes[slot_primary[s]];
        }
        return NULL;
    }
    return slot_primary[slot] >= 0 ? nodes[slot_primary[slot]] : NULL;
}

static int dispatch(request_t *r, int slot) {
    int as_reader;
    node_t *n = node_for(route(slot, r->reader, &as_reader), r->proto, r->ident);
    if (!n) return -1;
    if (n->fd < 0 && node_open(n, as_reader) < 0) return -1;
    node_send(n, r);
    return 0;
}

/* ---- clients ------------------------------------------------------------------------------ */

static void client_queue(client_t *c, request_t *r) {
    r->client = c;
    if (c->tail) c->tail->next_client = r;
    else c->head = r;
    c->tail = r;
}

static void local_reply(client_t *c, const char *bytes, size_t len) {
    request_t *r = request_new("", 0);
    client_queue(c, r);
    reply_to(r, bytes, len);
}

static void local_error(client_t *c, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg + 1, sizeof msg - 3, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof msg - 4) n = (int)sizeof msg - 4;
    msg[0] = '-';
    memcpy(msg + 1 + n, "\r\n", 2);
    local_reply(c, msg, (size_t)n + 3);
}

static int arg_is(const arg_t *a, const char *s) { return a->len == strlen(s) && !strncasecmp(a->p, s, a->len); }

static void cluster_answer(client_t *c, const args_t *a) {
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    char host[64] = "127.0.0.1";
    int port = 0;
    if (getsockname(c->fd, (struct sockaddr *)&sa, &sl) == 0) {
        inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
        port = ntohs(sa.sin_port);
    }
    buf_t b = {0};
    char tmp[256];
    if (a->n > 1 && arg_is(&a->v[1], "SLOTS")) {
        snprintf(tmp, sizeof tmp, "*1\r\n*3\r\n:0\r\n:%d\r\n*3\r\n$%zu\r\n%s\r\n:%d\r\n$40\r\n%040d\r\n",
                 SLOTS - 1, strlen(host), host, port, 0);
        buf_str(&b, tmp);
    } else if (a->n > 1 && arg_is(&a->v[1], "INFO")) {
        const char *info = "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\n"
                           "cluster_slots_ok:16384\r\ncluster_known_nodes:1\r\ncluster_size:1\r\n";
        snprintf(tmp, sizeof tmp, "$%zu\r\n", strlen(info));
        buf_str(&b, tmp);
        buf_str(&b, info);
        buf_str(&b, "\r\n");
    } else if (a->n > 1 && arg_is(&a->v[1], "MYID")) {
        snprintf(tmp, sizeof tmp, "$40\r\n%040d\r\n", 0);
        buf_str(&b, tmp);
    } else {
        local_error(c, "ERR this CLUSTER subcommand is not available through this endpoint");
        return;
    }
    local_reply(c, b.data, b.len);
    buf_free(&b);
}

/* Commands this endpoint answers itself; 1 when answered. */
static int answer_locally(client_t *c, const args_t *a) {
    const arg_t *cmd = &a->v[0];
    if (arg_is(cmd, "PING")) {
        if (a->n == 1) {
            local_reply(c, "+PONG\r\n", 7);
        } else {
            char hdr[32];
            buf_t b = {0};
            snprintf(hdr, sizeof hdr, "$%zu\r\n", a->v[1].len);
            buf_str(&b, hdr);
            buf_add(&b, a->v[1].p, a->v[1].len);
            buf_str(&b, "\r\n");
            local_reply(c, b.data, b.len);
            buf_free(&b);
        }
        return 1;
    }
    if (arg_is(cmd, "QUIT")) {
        local_reply(c, "+OK\r\n", 5);
        c->closing = 1;
        return 1;
    }
    if (arg_is(cmd, "SELECT")) {
        if (a->n == 2 && a->v[1].len == 1 && a->v[1].p[0] == '0') local_reply(c, "+OK\r\n", 5);
        else local_error(c, "ERR SELECT is not allowed in cluster mode");
        return 1;
    }
    if (arg_is(cmd, "READONLY") || arg_is(cmd, "READWRITE")) {
        local_reply(c, "+OK\r\n", 5);
        return 1;
    }
    if (arg_is(cmd, "CLUSTER")) {
        cluster_answer(c, a);
        return 1;
    }
    if (arg_is(cmd, "HELLO")) {
        if (a->n > 1 && !arg_is(&a->v[1], "2") && !arg_is(&a->v[1], "3")) {
            local_error(c, "NOPROTO unsupported protocol version");
            return 1;
        }
        if (a->n > 2) {
            /* HELLO protover AUTH user password [SETNAME name]: the login as for AUTH; SETNAME
             * names a shared connection, so it is dropped */
            if (a->n < 5 || !arg_is(&a->v[2], "AUTH") || (a->n != 5 && !(a->n == 7 && arg_is(&a->v[5], "SETNAME")))) {
                local_error(c, "ERR HELLO takes AUTH (and SETNAME) only through this endpoint");
                return 1;
            }
            int id = intern_ident(&a->v[3], &a->v[4]);
            if (id < 0) {
                local_error(c, "ERR too many different logins on this endpoint");
                return 1;
            }
            c->ident = id;
            c->proto = a->v[1].p[0] == '3' ? 3 : 2;
            return -5; /* sent on as HELLO protover AUTH user password */
        }
        /* from this command on, the client's commands go over connections speaking its
         * protocol; the node's own HELLO reply (on such a connection) answers it */
        if (a->n > 1) c->proto = a->v[1].p[0] == '3' ? 3 : 2;
        return 0;
    }
    if (arg_is(cmd, "CLIENT") && a->n > 1) {
        if (arg_is(&a->v[1], "SETNAME") || arg_is(&a->v[1], "SETINFO")) {
            local_reply(c, "+OK\r\n", 5);
            return 1;
        }
        if (arg_is(&a->v[1], "ID")) {
            char tmp[32];
            int n = snprintf(tmp, sizeof tmp, ":%d\r\n", c->fd);
            local_reply(c, tmp, (size_t)n);
            return 1;
        }
        local_error(c, "ERR CLIENT %.*s is not available through this endpoint", (int)a->v[1].len, a->v[1].p);
        return 1;
    }
    if (arg_is(cmd, "AUTH")) {
        /* AUTH [user] password: from now on the client's commands go over connections logged in
         * as it; the AUTH itself goes to a node on one of them, whose answer is the client's */
        if (a->n < 2 || a->n > 3) return 0; /* the node's own arity error */
        arg_t deflt = {"default", 7};
        int id = intern_ident(a->n == 3 ? &a->v[1] : &deflt, &a->v[a->n - 1]);
        if (id < 0) {
            local_error(c, "ERR too many different logins on this endpoint");
            return 1;
        }
        c->ident = id;
        return 0;
    }
    return 0;
}

/* The arguments as a RESP command; `swap`, when set, stands in for argument `at`. */
static void encode_args(buf_t *b, const args_t *a, int at, const arg_t *swap) {
    char hdr[48];
    snprintf(hdr, sizeof hdr, "*%d\r\n", a->n);
    buf_str(b, hdr);
    for (int i = 0; i < a->n; i++) {
        const arg_t *arg = swap && i == at ? swap : &a->v[i];
        snprintf(hdr, sizeof hdr, "$%zu\r\n", arg->len);
        buf_str(b, hdr);
        buf_add(b, arg->p, arg->len);
        buf_str(b, "\r\n");
    }
}

/* A client's request, queued for its reply and sent to the node of `slot` (-1: any primary). */
static void send_request(client_t *c, const char *bytes, size_t len, int slot, int login, const char *none) {
    request_t *r = request_new(bytes, len);
    r->reader = c->reader;
    r->proto = c->proto;
    r->ident = c->ident;
    r->login = login;
    client_queue(c, r);
    if (dispatch(r, slot) < 0) reply_to(r, none, strlen(none));
}

/* ---- fan-out: commands about the whole cache ---------------------------------------------- */

/* The distinct primaries, in slot order (a SCAN cursor names one by its place here). */
static int primaries(int *out) {
    int n = 0;
    for (int s = 0; s < SLOTS; s++) {
        int p = slot_primary[s], seen = 0;
        if (p < 0) continue;
        for (int i = 0; i < n && !seen; i++) seen = out[i] == p;
        if (!seen && n < MAX_NODES) out[n++] = p;
    }
    return n;
}

static void finish_fan_out(request_t *p) {
    buf_t out = {0};
    char hdr[64];
    if (p->failed) {
        buf_add(&out, p->reply.data + p->reply.off, buf_unread(&p->reply));
    } else if (p->mode == FAN_SUM) {
        snprintf(hdr, sizeof hdr, ":%lld\r\n", p->sum);
        buf_str(&out, hdr);
    } else if (p->mode == FAN_CONCAT) {
        snprintf(hdr, sizeof hdr, "*%lld\r\n", p->items);
        buf_str(&out, hdr);
        buf_add(&out, p->reply.data + p->reply.off, buf_unread(&p->reply));
    } else {
        buf_add(&out, p->reply.data + p->reply.off, buf_unread(&p->reply));
    }
    buf_free(&p->reply);
    if (p->client) reply_to(p, out.data, out.len);
    else request_free(p);
    buf_free(&out);
}

/* One primary's reply to a fan-out: folded into the parent's. */
static void child_reply(request_t *r, const char *bytes, size_t len) {
    request_t *p = r->parent;
    size_t l = line_len(bytes, len);
    long long v = 0;
    if (bytes[0] == '-' || bytes[0] == '!') {
        if (!p->failed) {
            p->failed = 1;
            buf_free(&p->reply);
            buf_add(&p->reply, bytes, len);
        }
    } else if (p->failed) {
        /* an error already answers it */
    } else if (p->mode == FAN_SUM) {
        if (bytes[0] == ':' && parse_ll(bytes + 1, l - 3, &v) == 0) p->sum += v;
    } else if (p->mode == FAN_FIRST) {
        if (!buf_unread(&p->reply)) buf_add(&p->reply, bytes, len);
    } else if (p->mode == FAN_CONCAT) {
        if ((bytes[0] == '*' || bytes[0] == '~') && parse_ll(bytes + 1, l - 3, &v) == 0 && v > 0) {
            p->items += v;
            buf_add(&p->reply, bytes + l, len - l);
        }
    } else if (p->mode == FAN_SCAN) {
        /* *2 $<n> <cursor> <keys>: the node's cursor becomes ours */
        size_t bl = line_len(bytes + l, len - l);
        long long n = 0, cursor = 0;
        if (bytes[0] == '*' && bl && parse_ll(bytes + l + 1, bl - 3, &n) == 0 && n >= 0 &&
            parse_ll(bytes + l + bl, (size_t)n, &cursor) == 0) {
            long long ours = cursor ? cursor * SCAN_SHARDS + p->shard
                                    : (p->shard + 1 < p->sum ? p->shard + 1 : 0);
            char num[32], hdr[64];
            int nl = snprintf(num, sizeof num, "%lld", ours);
            snprintf(hdr, sizeof hdr, "*2\r\n$%d\r\n%s\r\n", nl, num);
            buf_str(&p->reply, hdr);
            size_t rest = l + bl + (size_t)n + 2;
            buf_add(&p->reply, bytes + rest, len - rest);
        } else {
            p->failed = 1;
            buf_str(&p->reply, "-ERR unexpected SCAN reply from a node\r\n");
        }
    }
    request_free(r);
    if (--p->waiting == 0) finish_fan_out(p);
}

static void send_child(request_t *parent, int node, const char *bytes, size_t len) {
    request_t *child = request_new(bytes, len);
    child->parent = parent;
    child->proto = parent->proto;
    child->ident = parent->ident;
    node_t *n = node_for(nodes[node], parent->proto, parent->ident);
    if (!n || (n->fd < 0 && node_open(n, 0) < 0)) {
        static const char down[] = "-TRYAGAIN a node of this cache cannot be reached; retry\r\n";
        child_reply(child, down, sizeof down - 1);
        return;
    }
    node_send(n, child);
}

static int fan_mode(const args_t *a) {
    const arg_t *cmd = &a->v[0];
    if (arg_is(cmd, "DBSIZE")) return FAN_SUM;
    if (arg_is(cmd, "KEYS")) return FAN_CONCAT;
    if (arg_is(cmd, "SCAN")) return FAN_SCAN;
    if (arg_is(cmd, "FLUSHALL") || arg_is(cmd, "FLUSHDB")) return FAN_FIRST;
    if (a->n > 1 && arg_is(cmd, "SCRIPT") && (arg_is(&a->v[1], "LOAD") || arg_is(&a->v[1], "FLUSH")))
        return FAN_FIRST; /* EVALSHA runs where its key is: every primary needs the script */
    if (a->n > 1 && arg_is(cmd, "FUNCTION") &&
        (arg_is(&a->v[1], "LOAD") || arg_is(&a->v[1], "DELETE") || arg_is(&a->v[1], "FLUSH") ||
         arg_is(&a->v[1], "RESTORE")))
        return FAN_FIRST;
    return 0;
}

static void fan_out(client_t *c, const char *bytes, size_t len, const args_t *a, int mode) {
    int ids[MAX_NODES];
    int n = primaries(ids);
    request_t *p = request_new("", 0);
    p->proto = c->proto;
    p->ident = c->ident;
    p->mode = mode;
    client_queue(c, p);
    if (n == 0) {
        reply_to(p, "-CLUSTERDOWN no node serves this cache\r\n", 40);
        return;
    }
    if (mode != FAN_SCAN) {
        p->waiting = n;
        for (int i = 0; i < n; i++) send_child(p, ids[i], bytes, len);
        return;
    }
    long long cursor = -1;
    if (a->n < 2 || parse_ll(a->v[1].p, a->v[1].len, &cursor) < 0 || cursor < 0 || cursor % SCAN_SHARDS >= n) {
        p->waiting = 1; /* a cursor this endpoint did not give */
        p->failed = 1;
        buf_str(&p->reply, "-ERR invalid cursor\r\n");
        finish_fan_out(p);
        return;
    }
    p->shard = (int)(cursor % SCAN_SHARDS);
    p->sum = n;
    p->waiting = 1;
    char num[32];
    arg_t node_cursor = {num, (size_t)snprintf(num, sizeof num, "%lld", cursor / SCAN_SHARDS)};
    buf_t cmd = {0};
    encode_args(&cmd, a, 1, &node_cursor);
    send_child(p, ids[p->shard], cmd.data, cmd.len);
    buf_free(&cmd);
}

static void handle_request(client_t *c, const char *bytes, size_t len, const args_t *a) {
    if (a->n == 0) return;
    int local = answer_locally(c, a);
    if (local == -5) {
        args_t hello = *a; /* HELLO protover AUTH user password, SETNAME dropped */
        hello.n = 5;
        buf_t cmd = {0};
        encode_args(&cmd, &hello, -1, NULL);
        send_request(c, cmd.data, cmd.len, -1, 1, "-CLUSTERDOWN no node serves this cache\r\n");
        buf_free(&cmd);
        return;
    }
    if (local) return;
    int mode = fan_mode(a);
    if (mode) {
        fan_out(c, bytes, len, a, mode);
        return;
    }
    const spec_t *spec = NULL;
    int k = first_key(a, &spec);
    if (k == -3) {
        local_error(c, "ERR unknown command '%.*s'", (int)(a->v[0].len > 128 ? 128 : a->v[0].len), a->v[0].p);
        return;
    }
    if (k == -2 || k == -4) {
        local_error(c, "ERR %.*s is not available through this endpoint (it holds state on a shared "
                       "connection)", (int)(a->v[0].len > 64 ? 64 : a->v[0].len), a->v[0].p);
        return;
    }
    if (spec && (!strcasecmp(spec->name, "xread") || !strcasecmp(spec->name, "xreadgroup")))
        for (int i = 1; i < a->n; i++)
            if (arg_is(&a->v[i], "BLOCK")) { /* it would stall the node's shared connection */
                local_error(c, "ERR XREAD BLOCK is not available through this endpoint");
                return;
            }
    int slot = k >= 0 ? key_slot(a->v[k].p, a->v[k].len) : -1;
    send_request(c, bytes, len, slot, arg_is(&a->v[0], "AUTH"), "-CLUSTERDOWN no node serves this key's slot\r\n");
}

/* ---- ECPU throttling ---------------------------------------------------------------------- */
/* AWS's serverless limit ECPUPerSecond: past it, requests are throttled (held, not refused). A
 * request costs 1 ECPU per KB it carries (at least 1), a reply 1 per KB more; the bucket holds
 * one second of them. The limit is read from --ecpu-file at start and on SIGHUP (0: none). */
static const char *ecpu_file;
static double ecpu_rate, ecpu_tokens;
static long long ecpu_refilled_ms;
static unsigned long long throttled_cmds;
static client_t *throttled_clients;

static void load_ecpu(void) {
    if (!ecpu_file) return;
    FILE *f = fopen(ecpu_file, "r");
    double rate = 0;
    if (f) {
        if (fscanf(f, "%lf", &rate) != 1) rate = 0;
        fclose(f);
    }
    ecpu_rate = rate > 0 ? rate : 0;
    if (ecpu_tokens > ecpu_rate) ecpu_tokens = ecpu_rate;
}

static void refill_ecpu(long long now) {
    if (ecpu_rate <= 0) return;
    ecpu_tokens += ecpu_rate * (double)(now - ecpu_refilled_ms) / 1000.0;
    if (ecpu_tokens > ecpu_rate) ecpu_tokens = ecpu_rate;
    ecpu_refilled_ms = now;
}

static int admit(size_t bytes) {
    if (ecpu_rate <= 0) return 1;
    if (ecpu_tokens < 1) return 0;
    ecpu_tokens -= 1 + (double)(bytes / 1024);
    return 1;
}

static void charge_reply(size_t bytes) {
    if (ecpu_rate > 0 && bytes >= 1024) ecpu_tokens -= (double)(bytes / 1024);
}

static void client_parse(client_t *c) {
    while (buf_unread(&c->in) && c->closing == 0) {
        const char *p = c->in.data + c->in.off;
        long l = parse_request(p, buf_unread(&c->in), &scratch);
        if (l == 0) break;
        if (l < 0) {
            local_error(c, "ERR Protocol error");
            c->closing = 1;
            break;
        }
        if (!admit((size_t)l)) {
            throttled_cmds++;
            if (!c->throttled) {
                c->throttled = 1;
                c->next_throttled = throttled_clients;
                throttled_clients = c;
            }
            break;
        }
        handle_request(c, p, (size_t)l, &scratch);
        c->in.off += (size_t)l;
    }
}

/* Clients whose requests waited for tokens go on, as far as the tokens reach. */
static void resume_throttled(void) {
    client_t *list = throttled_clients;
    throttled_clients = NULL;
    while (list) {
        client_t *c = list;
        list = c->next_throttled;
        c->throttled = 0;
        client_parse(c);
        mark_dirty(c);
    }
}

static void client_read(client_t *c) {
    for (;;) {
        buf_reserve(&c->in, READ_CHUNK);
        ssize_t got;
        if (c->ssl) {
            ERR_clear_error();
            int n = SSL_read(c->ssl, c->in.data + c->in.len, (int)(c->in.cap - c->in.len));
            if (n <= 0) {
                int e = SSL_get_error(c->ssl, n);
                if (e == SSL_ERROR_WANT_READ) break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    c->want_write = 1;
                    break;
                }
                c->closing = 2;
                return;
            }
            got = n;
        } else {
            got = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
            if (got <= 0) {
                c->closing = 2;
                return;
            }
        }
        c->in.len += (size_t)got;
        if (!c->ssl && (size_t)got < READ_CHUNK) break; /* TLS: read until OpenSSL holds nothing */
    }
    if (!c->throttled) client_parse(c); /* a throttled client's turn comes with the tokens */
}

static int client_flush(client_t *c) {
    while (c->head && c->head->done) {
        request_t *r = c->head;
        c->head = r->next_client;
        if (!c->head) c->tail = NULL;
        buf_add(&c->out, r->reply.data + r->reply.off, buf_unread(&r->reply));
        request_free(r);
    }
    while (buf_unread(&c->out)) {
        const char *p = c->out.data + c->out.off;
        size_t n = buf_unread(&c->out);
        ssize_t put;
        if (c->ssl) {
            ERR_clear_error();
            int w = SSL_write(c->ssl, p, (int)(n > (1u << 30) ? (1u << 30) : n));
            if (w <= 0) {
                int e = SSL_get_error(c->ssl, w);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
                return -1;
            }
            put = w;
        } else {
            put = write(c->fd, p, n);
            if (put < 0 && (errno == EAGAIN || errno == EINTR)) break;
            if (put <= 0) return -1;
        }
        c->out.off += (size_t)put;
    }
    if (buf_unread(&c->out) > MAX_PENDING_BYTES) return -1;
    return buf_unread(&c->out) > 0 || c->want_write;
}

static void client_update_events(client_t *c, int pending) {
    uint32_t want = EPOLLIN | (pending ? EPOLLOUT : 0);
    if (want != c->events) {
        ep_set(c->fd, c->tag, want, 0);
        c->events = want;
    }
}

/* ---- client bookkeeping ------------------------------------------------------------------- */

static void client_close(client_t *c) {
    if (c->throttled) {
        client_t **pp = &throttled_clients;
        while (*pp && *pp != c) pp = &(*pp)->next_throttled;
        if (*pp) *pp = c->next_throttled;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) SSL_free(c->ssl);
    close(c->fd);
    request_t *r = c->head;
    while (r) { /* those still at a node are freed when their reply comes */
        request_t *next = r->next_client;
        if (r->done) request_free(r);
        else r->client = NULL;
        r = next;
    }
    buf_free(&c->in);
    buf_free(&c->out);
    free(c->tag);
    free(c);
}

static void accept_clients(listener_t *l) {
    for (int i = 0; i < 64; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        client_t *c = xmalloc(sizeof *c);
        memset(c, 0, sizeof *c);
        c->fd = fd;
        c->reader = l->reader;
        c->proto = 2;
        if (tls) {
            c->ssl = SSL_new(tls);
            SSL_set_fd(c->ssl, fd);
            SSL_set_accept_state(c->ssl);
        }
        c->tag = tag_new(TAG_CLIENT, c);
        c->events = EPOLLIN;
        ep_set(fd, c->tag, EPOLLIN, 1);
    }
}

/* ---- nodes -------------------------------------------------------------------------------- */

static void node_watch(node_t *n) {
    if (!node_tags) {
        node_tags = xmalloc(sizeof(tag_t *) * MAX_NODES);
        memset(node_tags, 0, sizeof(tag_t *) * MAX_NODES);
    }
    int i;
    for (i = 0; i < node_count && nodes[i] != n; i++) {
    }
    if (!node_tags[i]) node_tags[i] = tag_new(TAG_NODE, n);
    n->events = EPOLLIN | EPOLLOUT;
    ep_set(n->fd, node_tags[i], n->events, 1);
}

static void redirect(request_t *r, const char *err, size_t len) {
    /* "-MOVED 3999 127.0.0.1:6381" or "-ASK 3999 127.0.0.1:6381" */
    int ask = len > 5 && !strncmp(err, "-ASK ", 5);
    char text[128];
    size_t tl = len - 2 < sizeof text - 1 ? len - 2 : sizeof text - 1;
    memcpy(text, err, tl);
    text[tl] = 0;
    char *addr = strrchr(text, ' ');
    char host[64];
    int port;
    int alive = r->client || r->parent;
    if (!alive || !addr || split_addr(addr + 1, host, sizeof host, &port) < 0 || r->redirects >= MAX_REDIRECTS) {
        if (alive) reply_to(r, err, len);
        else request_free(r);
        return;
    }
    r->redirects++;
    int idx = node_index(host, port);
    node_t *n = idx < 0 ? NULL : node_for(nodes[idx], r->proto, r->ident);
    if (!n) {
        reply_to(r, err, len);
        return;
    }
    if (n->fd < 0 && node_open(n, r->reader) < 0) {
        reply_to(r, "-TRYAGAIN the node of this slot cannot be reached; retry\r\n", 58);
        return;
    }
    if (ask) {
        const char *argv[] = {"ASKING"};
        node_send_internal(n, 1, argv);
    } else {
        need_refresh = 1;
    }
    node_send(n, r);
}

static void node_read(node_t *n) {
    for (;;) {
        buf_reserve(&n->in, READ_CHUNK);
        ssize_t got = read(n->fd, n->in.data + n->in.len, n->in.cap - n->in.len);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (got <= 0) {
            node_fail(n, got == 0 ? "closed the connection" : strerror(errno));
            return;
        }
        n->in.len += (size_t)got;
        if ((size_t)got < READ_CHUNK) break;
    }
    while (buf_unread(&n->in)) {
        const char *p = n->in.data + n->in.off;
        long l = resp_len(p, buf_unread(&n->in), 0);
        if (l == 0) break;
        request_t *r = n->head;
        if (l < 0 || !r) {
            node_fail(n, l < 0 ? "protocol error" : "a reply nobody asked for");
            return;
        }
        n->head = r->next_node;
        if (!n->head) n->tail = NULL;
        n->in.off += (size_t)l;
        if (r->discard) {
            if (p[0] == '-') warn("node %s:%d refused our own command: %.*s", n->host, n->port, (int)l - 2, p);
            request_free(r);
        } else if (p[0] == '-' && ((l > 7 && !strncmp(p, "-MOVED ", 7)) || (l > 5 && !strncmp(p, "-ASK ", 5)))) {
            redirect(r, p, (size_t)l);
        } else if (!r->client && !r->parent) {
            request_free(r);
        } else {
            charge_reply((size_t)l);
            reply_to(r, p, (size_t)l);
        }
    }
}

/* ---- main --------------------------------------------------------------------------------- */

static int listen_on(const char *addr) {
    char host[64];
    int port;
    if (split_addr(addr, host, sizeof host, &port) < 0) die("bad address %s", addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("bad address %s", addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("cannot bind %s: %s", addr, strerror(errno));
    if (listen(fd, 1024) < 0) die("cannot listen on %s: %s", addr, strerror(errno));
    return fd;
}

static volatile sig_atomic_t stop, hup;
static void on_signal(int sig) {
    if (sig == SIGHUP) hup = 1;
    else stop = 1;
}

int main(int argc, char **argv) {
    const char *commands = NULL, *cert = NULL, *key = NULL;
    const char *listens[MAX_LISTEN];
    int listen_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) die("%s needs a value", a);
        if (!strcmp(a, "--commands")) commands = v;
        else if (!strcmp(a, "--seed") && seed_count < 64) seeds[seed_count++] = (char *)v;
        else if (!strcmp(a, "--listen") && listen_count < MAX_LISTEN) listens[listen_count++] = v;
        else if (!strcmp(a, "--cert")) cert = v;
        else if (!strcmp(a, "--key")) key = v;
        else if (!strcmp(a, "--backend-user")) backend_user = (char *)v;
        else if (!strcmp(a, "--client-logins")) clients_log_in = !strcmp(v, "yes");
        else if (!strcmp(a, "--ecpu-file")) ecpu_file = v;
        else die("unknown option %s", a);
        i++;
    }
    if (!commands || !seed_count || !listen_count) die("usage: keyroute --commands FILE --seed HOST:PORT --listen HOST:PORT[/reader]");
    backend_password = getenv("KEYROUTE_PASSWORD");
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    load_table(commands);
    load_ecpu();
    ecpu_tokens = ecpu_rate;
    ecpu_refilled_ms = now_ms();
    if (cert || key) {
        if (!cert || !key) die("--cert and --key go together");
        tls = SSL_CTX_new(TLS_server_method());
        SSL_CTX_set_min_proto_version(tls, TLS1_2_VERSION);
        SSL_CTX_set_mode(tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (SSL_CTX_use_certificate_chain_file(tls, cert) != 1 || SSL_CTX_use_PrivateKey_file(tls, key, SSL_FILETYPE_PEM) != 1)
            die("cannot load the certificate %s / key %s", cert, key);
    }
    for (int s = 0; s < SLOTS; s++) slot_primary[s] = -1;
    for (int tries = 0; refresh_slots() < 0; tries++) {
        if (tries >= 50) die("no seed answered CLUSTER SLOTS");
        usleep(100000);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    listener_t ls[MAX_LISTEN];
    for (int i = 0; i < listen_count; i++) {
        char addr[128];
        snprintf(addr, sizeof addr, "%s", listens[i]);
        char *slash = strchr(addr, '/');
        ls[i].reader = slash && !strcmp(slash + 1, "reader");
        if (slash) *slash = 0;
        ls[i].fd = listen_on(addr);
        ep_set(ls[i].fd, tag_new(TAG_LISTENER, &ls[i]), EPOLLIN, 1);
    }
    printf("ready\n");
    fflush(stdout);
    struct epoll_event events[256];
    while (!stop) {
        if (hup) {
            hup = 0;
            need_refresh = 1;
            load_ecpu();
        }
        long long now = now_ms();
        if ((need_refresh && now - last_refresh >= 100) || now - last_refresh >= REFRESH_EVERY_MS) refresh_slots();
        refill_ecpu(now);
        if (throttled_clients && ecpu_tokens >= 1) resume_throttled();
        int n = epoll_wait(epfd, events, 256, throttled_clients ? 1 : 100);
        for (int i = 0; i < n; i++) {
            tag_t *t = events[i].data.ptr;
            if (t->tag == TAG_LISTENER) {
                accept_clients(t->what);
            } else if (t->tag == TAG_NODE) {
                node_t *nd = t->what;
                if (nd->fd < 0) continue;
                if (events[i].events & (EPOLLERR | EPOLLHUP) && !(events[i].events & EPOLLIN)) {
                    node_fail(nd, "connection error");
                    continue;
                }
                if (events[i].events & EPOLLOUT) {
                    nd->connected = 1;
                    nd->dirty = 1;
                }
                if (events[i].events & EPOLLIN) node_read(nd);
            } else {
                client_t *c = t->what;
                int resume = 0;
                if (events[i].events & EPOLLOUT) {
                    resume = c->want_write; /* a TLS read that waited for the socket to drain */
                    c->want_write = 0;
                    mark_dirty(c);
                }
                if (resume || events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) client_read(c);
                if (c->closing == 2) {
                    /* remove from the dirty list before freeing */
                    client_t **pp = &dirty_clients;
                    while (*pp) {
                        if (*pp == c) {
                            *pp = c->next_dirty;
                            break;
                        }
                        pp = &(*pp)->next_dirty;
                    }
                    client_close(c);
                    continue;
                }
                mark_dirty(c);
            }
        }
        /* one write per node, then one per client, for everything this iteration produced */
        for (int i = 0; i < node_count; i++) {
            node_t *nd = nodes[i];
            if (!nd->dirty || nd->fd < 0) continue;
            nd->dirty = 0;
            while (buf_unread(&nd->out)) {
                ssize_t put = write(nd->fd, nd->out.data + nd->out.off, buf_unread(&nd->out));
                if (put < 0 && (errno == EAGAIN || errno == EINTR || errno == ENOTCONN)) break;
                if (put <= 0) {
                    node_fail(nd, strerror(errno));
                    break;
                }
                nd->out.off += (size_t)put;
            }
            uint32_t want = EPOLLIN | (buf_unread(&nd->out) ? EPOLLOUT : 0);
            if (nd->fd >= 0 && want != nd->events) {
                ep_set(nd->fd, node_tags[i], want, 0);
                nd->events = want;
            }
        }
        while (dirty_clients) {
            client_t *c = dirty_clients;
            dirty_clients = c->next_dirty;
            c->dirty = 0;
            int pending = client_flush(c);
            if (pending < 0 || (c->closing && !pending && !c->head)) {
                client_close(c);
                continue;
            }
            client_update_events(c, pending);
        }
    }
    if (throttled_cmds) warn("%llu commands waited for ECPU tokens", throttled_cmds);
    return 0;
}
