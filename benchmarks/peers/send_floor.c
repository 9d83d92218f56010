/* The physical floor of per-connection delivery: one send() of a pre-framed WebSocket frame
 * per connection per broadcast, from C, over N loopback TCP connections it opens itself.
 *
 *   gcc -O2 -o send_floor send_floor.c && ./send_floor N ROUNDS [FRAME_BYTES [MODE [GAP_MS]]]
 *
 * Prints one JSON object: connections, rounds, frame_bytes, receivers, deliveries, send_cpu_s
 * (this thread's CPU time spent in the send loops only, CLOCK_THREAD_CPUTIME_ID),
 * cpu_us_per_delivery. On loopback the receiver's TCP work runs inside the sender's send(), as
 * it does for a server under the load generator.
 *
 * MODE "live" (the default): the receiving ends belong to a child process that reads them as
 * data arrives (epoll), as the load generator's subscribers do, so each send() also wakes a
 * waiting reader; rounds are GAP_MS apart (default 100: 10 broadcasts/s). MODE "drained": the
 * receiving ends stay in this process, asleep, and are drained between rounds outside the
 * measured time (no reader to wake: a lower floor than any server under live clients sees).
 * Errors: one line on stderr, exit 1 (2 for bad arguments). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "send_floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: send_floor N ROUNDS [FRAME_BYTES]\n");
        return 2;
    }
    long n = strtol(argv[1], NULL, 10), rounds = strtol(argv[2], NULL, 10);
    long size = argc > 3 ? strtol(argv[3], NULL, 10) : 120;
    int live = argc > 4 ? strcmp(argv[4], "drained") != 0 : 1;
    long gap_ms = argc > 5 ? strtol(argv[5], NULL, 10) : 100;
    if (n < 1 || rounds < 1 || size < 3 || size > 125 || gap_ms < 0 ||
        (argc > 4 && strcmp(argv[4], "live") != 0 && strcmp(argv[4], "drained") != 0)) {
        fprintf(stderr, "send_floor: need N >= 1, ROUNDS >= 1, 3 <= FRAME_BYTES <= 125, "
                        "MODE live|drained, GAP_MS >= 0\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int lst = socket(AF_INET, SOCK_STREAM, 0);
    if (lst < 0) die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lst, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    socklen_t alen = sizeof addr;
    if (getsockname(lst, (struct sockaddr *)&addr, &alen) < 0) die("getsockname");
    if (listen(lst, 4096) < 0) die("listen");
    int *srv = malloc(n * sizeof(int)), *cli = malloc(n * sizeof(int));
    if (!srv || !cli) die("malloc");
    for (long i = 0; i < n; i++) {
        cli[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (cli[i] < 0) die("socket (raise ulimit -n)");
        if (connect(cli[i], (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        srv[i] = accept(lst, NULL, NULL);
        if (srv[i] < 0) die("accept");
        int one = 1;
        setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    /* An unmasked server-to-client text frame: 2-byte header + payload = size bytes. */
    char frame[128], buf[65536];
    memset(frame, 'x', sizeof frame);
    frame[0] = (char)0x81;
    frame[1] = (char)(size - 2);
    double cpu = 0;
    if (live) {
        /* The receivers: a child reads every client end until all have reached EOF. */
        pid_t child = fork();
        if (child < 0) die("fork");
        if (child == 0) {
            for (long i = 0; i < n; i++) close(srv[i]);
            int ep = epoll_create1(0);
            if (ep < 0) die("epoll_create1");
            for (long i = 0; i < n; i++) {
                struct epoll_event ev = {.events = EPOLLIN, .data.fd = cli[i]};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, cli[i], &ev) < 0) die("epoll_ctl");
            }
            long open_ends = n;
            struct epoll_event evs[256];
            while (open_ends > 0) {
                int k = epoll_wait(ep, evs, 256, -1);
                if (k < 0 && errno == EINTR) continue;
                if (k < 0) die("epoll_wait");
                for (int j = 0; j < k; j++) {
                    ssize_t got = recv(evs[j].data.fd, buf, sizeof buf, 0);
                    if (got <= 0) {
                        epoll_ctl(ep, EPOLL_CTL_DEL, evs[j].data.fd, NULL);
                        close(evs[j].data.fd);
                        open_ends--;
                    }
                }
            }
            _exit(0);
        }
        for (long i = 0; i < n; i++) close(cli[i]);
        struct timespec gap = {.tv_sec = gap_ms / 1000, .tv_nsec = (gap_ms % 1000) * 1000000L};
        for (long r = 0; r < rounds; r++) {
            double t0 = cpu_now();
            for (long i = 0; i < n; i++)
                if (send(srv[i], frame, (size_t)size, MSG_NOSIGNAL) != size) die("send");
            cpu += cpu_now() - t0;
            nanosleep(&gap, NULL);
        }
        for (long i = 0; i < n; i++) close(srv[i]);
        int status;
        if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "send_floor: the receiving process failed\n");
            return 1;
        }
    }
    for (long r = 0; r < rounds && !live; r++) {
        double t0 = cpu_now();
        for (long i = 0; i < n; i++)
            if (send(srv[i], frame, (size_t)size, MSG_NOSIGNAL) != size) die("send");
        cpu += cpu_now() - t0;
        for (long i = 0; i < n; i++) {
            long got = 0;
            while (got < size) {
                ssize_t k = recv(cli[i], buf, sizeof buf, 0);
                if (k <= 0) die("recv");
                got += k;
            }
        }
    }
    double deliveries = (double)n * rounds;
    printf("{\"connections\": %ld, \"rounds\": %ld, \"frame_bytes\": %ld, \"receivers\": \"%s\", "
           "\"deliveries\": %.0f, \"send_cpu_s\": %.6f, \"cpu_us_per_delivery\": %.4f}\n",
           n, rounds, size, live ? "live" : "drained", deliveries, cpu, cpu / deliveries * 1e6);
    return 0;
}
