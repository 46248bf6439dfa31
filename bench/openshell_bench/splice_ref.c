/*
 * splice_ref: a minimal CONNECT relay, for measurement only (the `splice-ref`
 * peer of bench/openshell_bench). Not a product component: no policy, no
 * logging, no DNS, no limits beyond a bounded request head.
 *
 * Why it exists: any proxy that relays bytes between two TCP connections pays
 * for two sockets' worth of kernel work per byte that a direct connection does
 * not. This relay does nothing else (one thread per direction, blocking
 * splice(2) socket -> pipe -> socket, 1 MiB pipe), so its throughput is the
 * ceiling such a proxy can reach on this machine, which is the honest yardstick
 * for the "raw tunnel >= 80 % of direct" target.
 *
 * Usage: splice-ref PORT   (listens on 127.0.0.1:PORT until killed)
 *
 * Per connection: read the request head (at most HEAD_MAX bytes); anything but
 * `CONNECT a.b.c.d:port HTTP/1.x` gets 400. Connect to that IPv4 address (502
 * if it fails), answer 200, relay until both directions reached EOF. An EOF is
 * passed on with shutdown(SHUT_WR) (half-close is kept); an error in either
 * direction shuts both sockets down so the other direction ends too.
 *
 * Build: gcc -O2 -pthread -o splice-ref splice_ref.c   (Linux only)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX 8192          /* bytes of request head accepted */
#define PIPE_SIZE (1 << 20)    /* bytes asked of F_SETPIPE_SZ (capped by pipe-max-size) */
#define THREAD_STACK (256 << 10)

static const char OK_200[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
static const char BAD_400[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
static const char BAD_502[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

struct direction {
    int src, dst;
};

static pthread_attr_t thread_attr;

static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Move bytes src -> pipe -> dst until EOF (returns 0) or an error (returns -1). */
static int splice_loop(int src, int dst)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    (void)fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE); /* a smaller pipe still works, only slower */
    int cap = fcntl(p[1], F_GETPIPE_SZ);
    size_t chunk = cap > 0 ? (size_t)cap : 65536;
    int rc = 0;
    for (;;) {
        ssize_t n = splice(src, NULL, p[1], NULL, chunk, SPLICE_F_MOVE);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -1;
            break;
        }
        while (n > 0) {
            ssize_t m = splice(p[0], NULL, dst, NULL, (size_t)n, SPLICE_F_MOVE);
            if (m < 0 && errno == EINTR)
                continue;
            if (m <= 0) {
                rc = -1;
                goto out;
            }
            n -= m;
        }
    }
out:
    close(p[0]);
    close(p[1]);
    return rc;
}

static void relay_direction(const struct direction *d)
{
    if (splice_loop(d->src, d->dst) == 0) {
        shutdown(d->dst, SHUT_WR);
    } else {
        /* Wake the other direction's blocking splice so the connection ends. */
        shutdown(d->src, SHUT_RDWR);
        shutdown(d->dst, SHUT_RDWR);
    }
}

static void *direction_thread(void *arg)
{
    relay_direction(arg);
    return NULL;
}

/* Parse `CONNECT a.b.c.d:port HTTP/1.x` (the request line, without CRLF) into addr. */
static int parse_connect(const char *line, size_t len, struct sockaddr_in *addr)
{
    static const char method[] = "CONNECT ";
    static const char version[] = " HTTP/1.";
    size_t mlen = sizeof method - 1, vlen = sizeof version - 1;
    if (len < mlen + vlen + 1 || memcmp(line, method, mlen) != 0)
        return -1;
    const char *end = line + len;
    if (end[-1] < '0' || end[-1] > '9' || memcmp(end - 1 - vlen, version, vlen) != 0)
        return -1;
    const char *auth = line + mlen, *auth_end = end - 1 - vlen;
    const char *colon = memrchr(auth, ':', (size_t)(auth_end - auth));
    if (colon == NULL || colon - auth > (ptrdiff_t)INET_ADDRSTRLEN - 1)
        return -1;
    char host[INET_ADDRSTRLEN];
    memcpy(host, auth, (size_t)(colon - auth));
    host[colon - auth] = '\0';
    long port = 0;
    const char *c = colon + 1;
    if (c == auth_end || auth_end - c > 5)
        return -1;
    for (; c < auth_end; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        port = port * 10 + (*c - '0');
    }
    if (port < 1 || port > 65535)
        return -1;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -1;
}

static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void handle(int client)
{
    char head[HEAD_MAX];
    size_t len = 0;
    char *eoh = NULL;
    while (eoh == NULL) {
        if (len == sizeof head) {
            send_all(client, BAD_400, sizeof BAD_400 - 1);
            return;
        }
        ssize_t n = recv(client, head + len, sizeof head - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        len += (size_t)n;
        eoh = memmem(head, len, "\r\n\r\n", 4);
    }
    struct sockaddr_in addr;
    char *eol = memmem(head, len, "\r\n", 2); /* found: eoh is one */
    if (parse_connect(head, (size_t)(eol - head), &addr) != 0) {
        send_all(client, BAD_400, sizeof BAD_400 - 1);
        return;
    }
    int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (upstream < 0)
        return;
    int rc;
    do {
        rc = connect(upstream, (struct sockaddr *)&addr, sizeof addr);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        send_all(client, BAD_502, sizeof BAD_502 - 1);
        close(upstream);
        return;
    }
    set_nodelay(client);
    set_nodelay(upstream);
    /* Bytes the client sent after the head belong to the tunnel. */
    char *rest = eoh + 4;
    size_t rest_len = len - (size_t)(rest - head);
    if (send_all(client, OK_200, sizeof OK_200 - 1) < 0 || (rest_len && send_all(upstream, rest, rest_len) < 0)) {
        close(upstream);
        return;
    }
    struct direction down = {upstream, client}, up = {client, upstream};
    pthread_t t;
    if (pthread_create(&t, &thread_attr, direction_thread, &down) != 0) {
        close(upstream);
        return;
    }
    relay_direction(&up);
    pthread_join(t, NULL);
    close(upstream);
}

static void *connection_thread(void *arg)
{
    int client = (int)(intptr_t)arg;
    handle(client);
    close(client);
    return NULL;
}

int main(int argc, char **argv)
{
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (argc != 2 || *argv[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "usage: %s PORT   (listens on 127.0.0.1:PORT)\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an error return, not a signal */
    pthread_attr_init(&thread_attr);
    pthread_attr_setstacksize(&thread_attr, THREAD_STACK);

    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, SOMAXCONN) < 0) {
        perror("splice-ref: listen");
        return 1;
    }
    pthread_attr_t detached;
    pthread_attr_init(&detached);
    pthread_attr_setstacksize(&detached, THREAD_STACK);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
                usleep(10000); /* out of resources: let connections finish instead of spinning */
            continue;
        }
        pthread_t t;
        if (pthread_create(&t, &detached, connection_thread, (void *)(intptr_t)c) != 0)
            close(c);
    }
}
