/*
 * envoygen-init: PID 1 of envoygen gateway images (part of envoygen).
 *
 *   envoygen-init [ENVOY ARGS...]       run Envoy with these arguments and supervise it
 *   envoygen-init probe [PORT [PATH]]   GET http://127.0.0.1:PORT/PATH; exit 0 on 200
 *
 * Stock Envoy stops at once on SIGTERM and cuts in-flight requests.  On the
 * first SIGTERM or SIGINT this program instead
 *   1. POSTs /healthcheck/fail to Envoy's admin endpoint: readiness turns 503
 *      and every response from then on carries "connection: close";
 *   2. POSTs /drain_listeners: the listeners stop accepting connections while
 *      the open ones carry on;
 *   3. waits until no downstream connection is open, at most
 *      ENVOYGEN_DRAIN_SECONDS;
 *   4. sends SIGTERM to Envoy and exits with Envoy's exit status.
 * A second SIGTERM/SIGINT cuts the wait short.  SIGHUP, SIGQUIT, SIGUSR1 and
 * SIGUSR2 are passed on to Envoy.  As PID 1 it also reaps orphans.
 *
 * Environment:
 *   ENVOYGEN_ENVOY          Envoy binary (default /usr/local/bin/envoy)
 *   ENVOYGEN_ADMIN_ADDRESS  admin address, an IPv4 or IPv6 literal (127.0.0.1)
 *   ENVOYGEN_ADMIN_PORT     admin port (15000)
 *   ENVOYGEN_DRAIN_SECONDS  longest drain, may be fractional (5); 0: no drain
 *   ENVOYGEN_READINESS_PORT port for "probe" (15021)
 *
 * Built with `cc -static`, so it needs no library and runs in a scratch image
 * beside any libc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RESPONSE_MAX (256 * 1024)

static void say(const char *fmt, ...)
{
    va_list ap;
    char line[512];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "envoygen-init: %s\n", line);
    fflush(stderr);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return (v && *v) ? v : fallback;
}

/* Decode a chunked HTTP body in place; returns its decoded length. */
static size_t dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    while (in < len) {
        char *end;
        unsigned long n = strtoul(body + in, &end, 16);
        char *crlf = memmem(body + in, len - in, "\r\n", 2);
        if (!crlf || end == body + in)
            break;
        in = (size_t)(crlf - body) + 2;
        if (n == 0 || n > len - in)
            break;
        memmove(body + out, body + in, n);
        out += n;
        in += n + 2;
    }
    body[out] = '\0';
    return out;
}

/*
 * One HTTP/1.1 request with "connection: close" to ADDR:PORT.  Returns the
 * status code, or -1 when nothing answered.  With body != NULL, *body is the
 * NUL-terminated response body (malloc'ed; the caller frees it).
 */
static int http_call(const char *addr, int port, const char *method, const char *path,
                     char **body, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int fd, status = -1;
    char req[512], *buf = NULL;
    size_t got = 0;
    struct timeval tv;

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    if (body)
        *body = NULL;
    memset(&ss, 0, sizeof ss);
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)port);
        if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
            return -1;
        sslen = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
            return -1;
        sslen = sizeof *s4;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&ss, sslen) != 0)
        goto out;
    snprintf(req, sizeof req,
             "%s %s HTTP/1.1\r\nhost: %s:%d\r\nuser-agent: envoygen-init\r\n"
             "connection: close\r\ncontent-length: 0\r\n\r\n",
             method, path, strchr(addr, ':') ? "localhost" : addr, port);
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
        goto out;
    buf = malloc(RESPONSE_MAX + 1);
    if (!buf)
        goto out;
    for (;;) {
        ssize_t n = recv(fd, buf + got, RESPONSE_MAX - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == RESPONSE_MAX)
            break;
    }
    buf[got] = '\0';
    if (got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0)
        status = atoi(buf + 9);
    if (status > 0 && body) {
        char *hdr_end = strstr(buf, "\r\n\r\n");
        if (hdr_end) {
            size_t hlen = (size_t)(hdr_end - buf) + 4, blen = got - hlen;
            int chunked;
            char *p;
            *hdr_end = '\0';
            for (p = buf; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p + 32);
            chunked = strstr(buf, "transfer-encoding: chunked") != NULL;
            memmove(buf, buf + hlen, blen);
            buf[blen] = '\0';
            if (chunked)
                dechunk(buf, blen);
            *body = buf;
            buf = NULL;
        }
    }
out:
    free(buf);
    close(fd);
    return status;
}

/*
 * Downstream connections open on Envoy's listeners, summed from the admin
 * /stats (listener.<name>.downstream_cx_active, without the admin listener and
 * the per-worker copies); -1 when the admin endpoint does not answer.
 */
static long active_connections(const char *addr, int port)
{
    static const char suffix[] = ".downstream_cx_active: ";
    char *body = NULL, *line, *save = NULL;
    long total = 0;
    int status = http_call(addr, port, "GET", "/stats?filter=downstream_cx_active$", &body, 1000);
    if (status != 200 || !body) {
        free(body);
        return -1;
    }
    for (line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *at = strstr(line, suffix);
        if (strncmp(line, "listener.", 9) != 0 || !at)
            continue;
        if (strncmp(line, "listener.admin.", 15) == 0 || strstr(line, ".worker_") ||
            strstr(line, ".main_thread."))
            continue;
        total += strtol(at + sizeof suffix - 1, NULL, 10);
    }
    free(body);
    return total;
}

static int probe(int argc, char **argv)
{
    int port = atoi(argc > 2 ? argv[2] : env_or("ENVOYGEN_READINESS_PORT", "15021"));
    const char *path = argc > 3 ? argv[3] : "/healthz/ready";
    int status = http_call("127.0.0.1", port, "GET", path, NULL, 2000);
    if (status != 200) {
        say("probe http://127.0.0.1:%d%s: %s (%d)", port, path,
            status < 0 ? "no answer" : "not ready", status);
        return 1;
    }
    return 0;
}

static void on_signal(int sig) { (void)sig; }

int main(int argc, char **argv)
{
    static const int handled[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD};
    sigset_t set, old;
    struct sigaction sa;
    pid_t child;
    size_t i;
    const char *envoy = env_or("ENVOYGEN_ENVOY", "/usr/local/bin/envoy");
    const char *admin = env_or("ENVOYGEN_ADMIN_ADDRESS", "127.0.0.1");
    int admin_port = atoi(env_or("ENVOYGEN_ADMIN_PORT", "15000"));
    double drain_s = atof(env_or("ENVOYGEN_DRAIN_SECONDS", "5"));
    enum { RUNNING, DRAINING, STOPPING } state = RUNNING;
    double deadline = 0, stop_at = 0;

    if (argc >= 2 && strcmp(argv[1], "probe") == 0)
        return probe(argc, argv);

    /* The signals stay blocked and are taken with sigtimedwait() below; the
     * do-nothing handlers matter for PID 1, whose SIG_DFL signals the kernel
     * may drop. */
    sigemptyset(&set);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    for (i = 0; i < sizeof handled / sizeof handled[0]; i++) {
        sigaddset(&set, handled[i]);
        sigaction(handled[i], &sa, NULL);
    }
    sigprocmask(SIG_BLOCK, &set, &old);

    child = fork();
    if (child < 0) {
        say("fork: %s", strerror(errno));
        return 1;
    }
    if (child == 0) {
        /* Own process group: a terminal's ^C reaches envoygen-init alone,
         * which drains before Envoy hears of it. */
        setpgid(0, 0);
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        for (i = 0; i < sizeof handled / sizeof handled[0]; i++)
            sigaction(handled[i], &sa, NULL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        argv[0] = (char *)envoy;
        execv(envoy, argv);
        say("cannot run %s: %s", envoy, strerror(errno));
        _exit(127);
    }

    for (;;) {
        siginfo_t info;
        struct timespec wait_ts;
        int sig, status;
        pid_t pid;

        wait_ts.tv_sec = state == DRAINING ? 0 : 1;
        wait_ts.tv_nsec = state == DRAINING ? 200L * 1000 * 1000 : 0;
        sig = sigtimedwait(&set, &info, &wait_ts);

        /* Reap whatever exited; Envoy's exit ends this program. */
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid != child)
                continue;
            if (state != RUNNING)
                say("envoy exited %.1f s after the stop signal", now_s() - stop_at);
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
            return 1;
        }

        if (sig == SIGTERM || sig == SIGINT) {
            if (state == RUNNING && drain_s > 0) {
                int hc, dl;
                stop_at = now_s();
                hc = http_call(admin, admin_port, "POST", "/healthcheck/fail", NULL, 1000);
                dl = http_call(admin, admin_port, "POST", "/drain_listeners", NULL, 1000);
                if (hc == 200 && dl == 200) {
                    say("%s: draining: listeners closed to new connections, "
                        "waiting up to %g s for the open ones", strsignal(sig), drain_s);
                    state = DRAINING;
                    deadline = stop_at + drain_s;
                } else {
                    say("%s: Envoy's admin endpoint %s:%d did not answer (%d, %d); "
                        "stopping Envoy without draining", strsignal(sig), admin, admin_port, hc, dl);
                    kill(child, SIGTERM);
                    state = STOPPING;
                }
            } else if (state == RUNNING) {
                stop_at = now_s();
                say("%s: stopping Envoy (ENVOYGEN_DRAIN_SECONDS=0: no drain)", strsignal(sig));
                kill(child, SIGTERM);
                state = STOPPING;
            } else if (state == DRAINING) {
                say("%s again: stopping Envoy now", strsignal(sig));
                kill(child, SIGTERM);
                state = STOPPING;
            } else {
                kill(child, sig);
            }
        } else if (sig > 0 && sig != SIGCHLD) {
            kill(child, sig);
        }

        if (state == DRAINING) {
            long open = active_connections(admin, admin_port);
            if (open == 0) {
                say("drained after %.1f s; stopping Envoy", now_s() - stop_at);
                kill(child, SIGTERM);
                state = STOPPING;
            } else if (now_s() >= deadline) {
                say("drain time of %g s is over with %ld connection(s) open; stopping Envoy",
                    drain_s, open);
                kill(child, SIGTERM);
                state = STOPPING;
            }
        }
    }
}
