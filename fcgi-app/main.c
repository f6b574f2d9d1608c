/* ai-relay: the FastCGI worker process.
 *
 * Start-up: options, config (refuse to run without valid secrets), the
 * listen socket (fd 0 from lighttpd/spawn-fcgi, or --listen), then
 * WORKER_THREADS threads looping on FCGX_Accept_r. Signals are blocked in
 * every thread and taken by sigwait in the main thread: SIGHUP reloads the
 * config, SIGTERM/SIGINT stop accepting and drain in-flight requests up to
 * SHUTDOWN_GRACE_SECONDS. With --processes N a supervisor forks N such
 * processes and restarts one that dies. */
#include <curl/curl.h>
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "build-config.h"
#include "config.h"
#include "handlers.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "pg.h"
#include "pricing.h"
#include "usage.h"
#include "worker.h"

extern char **environ;

struct options {
    const char *listen;
    const char *config_file;
    int config_required;
    long processes;
    int check_config;
    int print_sample;
};

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: ai-relay [OPTIONS]\n"
        "FastCGI worker of ai-relay-service, a relay for Anthropic's Claude API.\n\n"
        "  --listen unix:PATH | --listen 127.0.0.1:PORT\n"
        "                         listen on this socket; without it, serve the FastCGI\n"
        "                         socket on fd 0 (lighttpd bin-path, spawn-fcgi)\n"
        "  --config FILE          env-style config file (default: .env if present)\n"
        "  --processes N          supervise N worker processes, restarting dead ones\n"
        "  --check-config         print the effective config (secrets masked), exit 0/1\n"
        "  --print-sample-config  print the annotated sample config\n"
        "  --version, --help\n\n"
        "Configuration variables (environment or config file):\n");
    ars_config_print_help(f);
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "config", required_argument, NULL, 'c' },
        { "processes", required_argument, NULL, 'p' },
        { "check-config", no_argument, NULL, 'C' },
        { "print-sample-config", no_argument, NULL, 'S' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    memset(o, 0, sizeof(*o));
    o->config_file = ".env";
    o->processes = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': o->listen = optarg; break;
        case 'c': o->config_file = optarg; o->config_required = 1; break;
        case 'p': {
            char *end;
            o->processes = strtol(optarg, &end, 10);
            if (*end || o->processes < 1 || o->processes > 256) {
                fprintf(stderr, "ai-relay: --processes must be 1..256\n");
                return -1;
            }
            break;
        }
        case 'C': o->check_config = 1; break;
        case 'S': o->print_sample = 1; break;
        case 'V': printf("ai-relay %s\n", PACKAGE_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ai-relay: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* ---- listen socket ---- */

static char unix_path[4096];
static ino_t unix_inode;

/* LISTEN_SOCKET_GROUP as a gid: a group name or a number; -1 with a
 * message when the system has no such group. */
static int socket_group(const char *name, gid_t *gid)
{
    char *end;
    unsigned long n = strtoul(name, &end, 10);
    if (*name && !*end && n < 0xffffffffUL) {
        *gid = (gid_t)n;
        return 0;
    }
    char buf[16384];
    struct group gr, *found = NULL;
    if (getgrnam_r(name, &gr, buf, sizeof(buf), &found) != 0 || !found) {
        fprintf(stderr, "ai-relay: LISTEN_SOCKET_GROUP: no group named '%s' (getent group %s)\n", name, name);
        return -1;
    }
    *gid = found->gr_gid;
    return 0;
}

static int open_listen(const char *spec)
{
    if (!spec) {
        if (FCGX_IsCGI()) {
            fprintf(stderr, "ai-relay: fd 0 is not a FastCGI socket; pass --listen unix:PATH or "
                            "--listen 127.0.0.1:PORT, or start it from lighttpd/spawn-fcgi\n");
            return -1;
        }
        return 0;
    }
    int fd;
    if (strncmp(spec, "unix:", 5) == 0) {
        const char *path = spec + 5;
        if (path[0] != '/' || strlen(path) >= 108) {
            fprintf(stderr, "ai-relay: --listen unix:PATH needs an absolute path shorter than 108 bytes\n");
            return -1;
        }
        /* Connecting needs write permission on the socket: 0660, never
         * 0666, or any local user could talk FastCGI to the relay and set
         * any param. The web server's workers reach it through the group
         * (LISTEN_SOCKET_GROUP). The umask makes bind() create it so, with
         * no moment at which it is open to all. */
        const char *group = ars_config_current()->listen_socket_group;
        gid_t gid = (gid_t)-1;
        if (group && *group && socket_group(group, &gid))
            return -1;
        mode_t old_mask = umask(0117);
        fd = FCGX_OpenSocket(path, 1024);
        umask(old_mask);
        if (fd >= 0) {
            if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) || chmod(path, 0660) != 0) {
                fprintf(stderr, "ai-relay: cannot give %s to group %s (mode 0660): %s\n", path,
                        group && *group ? group : "-", strerror(errno));
                close(fd);
                unlink(path);
                return -1;
            }
            struct stat st;
            if (stat(path, &st) == 0)
                unix_inode = st.st_ino;
            snprintf(unix_path, sizeof(unix_path), "%s", path);
        }
    } else if (strchr(spec, ':') && spec[0] != ':') {
        fd = FCGX_OpenSocket(spec, 1024);
    } else {
        fprintf(stderr, "ai-relay: --listen takes unix:PATH or HOST:PORT (e.g. 127.0.0.1:9000)\n");
        return -1;
    }
    if (fd < 0) {
        fprintf(stderr, "ai-relay: cannot listen on %s: %s\n", spec, strerror(errno));
        return -1;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

/* Unlink our socket only if it is still ours: a newer instance may have
 * bound the same path meanwhile. */
static void remove_socket(void)
{
    struct stat st;
    if (unix_path[0] && stat(unix_path, &st) == 0 && st.st_ino == unix_inode)
        unlink(unix_path);
}

/* ---- crash reporting ---- */

static void write_str(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

/* A crash kills the whole process (threads share memory); say so on
 * stderr with the request it happened in, using only async-signal-safe
 * calls, then die with the same signal so the supervisor sees it. */
static void on_crash(int sig)
{
    write_str("level=error event=crash msg=\"worker process crashed\" signal=");
    char num[8];
    int n = 0, s = sig;
    char tmp[8];
    do { tmp[n++] = (char)('0' + s % 10); s /= 10; } while (s && n < 7);
    for (int i = 0; i < n; i++)
        num[i] = tmp[n - 1 - i];
    num[n] = '\0';
    write_str(num);
    if (ars_current_request_id) {
        write_str(" req_id=");
        write_str(ars_current_request_id);
    }
    if (ars_current_route) {
        write_str(" route=");
        write_str(ars_current_route);
    }
    write_str("\n");
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_crash_handlers(void)
{
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
}

/* ---- worker process ---- */

static struct options opts;
static atomic_int workers_alive;
static pthread_mutex_t alive_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t alive_cond = PTHREAD_COND_INITIALIZER;

static void *worker_thread(void *arg)
{
    struct ars_worker *w = arg;
    ars_worker_main(w);
    pthread_mutex_lock(&alive_lock);
    atomic_fetch_sub(&workers_alive, 1);
    pthread_cond_broadcast(&alive_cond);
    pthread_mutex_unlock(&alive_lock);
    return NULL;
}

static void apply_logging(const struct ars_config *cfg)
{
    ars_log_setup((enum ars_log_level)cfg->log_level, (enum ars_log_format)cfg->log_format);
}

/* Loads the price table named by the config and makes it current. */
static int load_pricing(const struct ars_config *cfg, char *err, size_t errlen)
{
    struct ars_pricing *p;
    if (ars_pricing_load(cfg->pricing_file, &p, err, errlen) != ARS_OK)
        return -1;
    ars_pricing_install(p);
    return 0;
}

static void reload_config(void)
{
    char err[512];
    struct ars_config *cfg;
    if (ars_config_load(opts.config_file, opts.config_required, environ, &cfg, err, sizeof(err))) {
        ars_log_msg(ARS_LOG_ERROR, NULL, "config_reload_failed", err);
        return;
    }
    if (load_pricing(cfg, err, sizeof(err))) {
        ars_log_msg(ARS_LOG_ERROR, NULL, "pricing_reload_failed", err);
        ars_config_free(cfg);
        return;
    }
    const struct ars_config *old = ars_config_current();
    if (cfg->worker_threads != old->worker_threads || cfg->worker_stack_kb != old->worker_stack_kb)
        ars_log_msg(ARS_LOG_WARN, NULL, "config_reload",
                    "WORKER_THREADS and WORKER_STACK_KB take effect after a restart");
    apply_logging(cfg);
    ars_config_install(cfg);
    ars_log_msg(ARS_LOG_INFO, NULL, "config_reloaded", NULL);
}

/* Waits for every worker to return, until the grace deadline. Returns the
 * number still busy when it gave up. */
static int drain(long long grace_s)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)grace_s;
    pthread_mutex_lock(&alive_lock);
    while (atomic_load(&workers_alive) > 0) {
        if (pthread_cond_timedwait(&alive_cond, &alive_lock, &deadline) == ETIMEDOUT)
            break;
    }
    int left = atomic_load(&workers_alive);
    pthread_mutex_unlock(&alive_lock);
    return left;
}

static int run_workers(int listen_fd)
{
    const struct ars_config *cfg = ars_config_current();
    int nthreads = (int)cfg->worker_threads;
    struct ars_server srv = { listen_fd, ars_routes, ars_routes_count };
    ars_worker_set_server(&srv);
    ars_worker_set_threads(nthreads);
    ars_metrics_init(ars_routes, ars_routes_count, nthreads);

    struct ars_worker *workers = calloc((size_t)nthreads, sizeof(*workers));
    if (!workers) {
        ars_log_msg(ARS_LOG_ERROR, NULL, "startup_failed", "out of memory for workers");
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, (size_t)cfg->worker_stack_kb * 1024);
    int started = 0;
    for (int i = 0; i < nthreads; i++) {
        if (ars_worker_init(&workers[i], i) != 0)
            break;
        atomic_fetch_add(&workers_alive, 1);
        if (pthread_create(&workers[i].thread, &attr, worker_thread, &workers[i]) != 0) {
            atomic_fetch_sub(&workers_alive, 1);
            ars_worker_deinit(&workers[i]);
            break;
        }
        started++;
    }
    pthread_attr_destroy(&attr);
    ars_worker_set_threads(started);   /* the reserve is kept out of the threads that run */
    if (started < nthreads) {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, NULL, "startup");
        ars_log_str(&l, "msg", "fewer worker threads than configured");
        ars_log_int(&l, "started", started);
        ars_log_int(&l, "configured", nthreads);
        ars_log_end(&l);
        if (!started)
            return 1;
    }
    /* Usage records Redis could not take are retried (and spooled) here. */
    if (ars_usage_start() != 0)
        ars_log_msg(ARS_LOG_WARN, NULL, "startup", "usage retry thread did not start");
    /* Replays PostgreSQL writes that were queued while it was down. */
    if (ars_outbox_thread_start() != 0)
        ars_log_msg(ARS_LOG_WARN, NULL, "startup", "outbox thread did not start: queued PG writes wait for a restart");
    {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_INFO, NULL, "started");
        ars_log_str(&l, "version", PACKAGE_VERSION);
        ars_log_int(&l, "pid", (long long)getpid());
        ars_log_int(&l, "threads", started);
        ars_log_str(&l, "listen", opts.listen ? opts.listen : "fd 0");
        ars_log_end(&l);
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload_config();
            continue;
        }
        break;
    }

    /* Stop accepting: the flag makes libfcgi give up, and shutdown()
     * wakes the thread blocked in accept(). In-flight requests go on. */
    ars_log_msg(ARS_LOG_INFO, NULL, "shutdown", "stopping: no new requests, draining in-flight ones");
    FCGX_ShutdownPending();
    shutdown(listen_fd, SHUT_RDWR);
    int left = drain(ars_config_current()->shutdown_grace_seconds);
    if (left) {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, NULL, "shutdown");
        ars_log_str(&l, "msg", "grace period over, exiting with requests still running");
        ars_log_int(&l, "busy_workers", left);
        ars_log_end(&l);
        ars_usage_stop();   /* queued usage goes to the spool, not lost */
        remove_socket();
        _exit(0);
    }
    for (int i = 0; i < started; i++) {
        pthread_join(workers[i].thread, NULL);
        ars_worker_deinit(&workers[i]);
    }
    ars_outbox_thread_stop();
    ars_usage_stop();
    free(workers);
    remove_socket();
    ars_pg_pool_shutdown();
    ars_log_msg(ARS_LOG_INFO, NULL, "stopped", NULL);
    return 0;
}

/* ---- supervisor (--processes N) ---- */

static pid_t spawn_child(int listen_fd)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(run_workers(listen_fd));
    return pid;
}

static int supervise(int listen_fd, int n)
{
    pid_t *pids = calloc((size_t)n, sizeof(*pids));
    time_t *born = calloc((size_t)n, sizeof(*born));
    if (!pids || !born)
        return 1;
    for (int i = 0; i < n; i++) {
        pids[i] = spawn_child(listen_fd);
        born[i] = time(NULL);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    int stopping = 0;
    time_t kill_at = 0;
    for (;;) {
        int sig = 0;
        if (stopping) {
            /* Poll once a second so the kill deadline is honoured. */
            struct timespec ts = { 1, 0 };
            sig = sigtimedwait(&set, NULL, &ts);
        } else if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            for (int i = 0; i < n; i++)
                if (pids[i] > 0)
                    kill(pids[i], SIGHUP);
        } else if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping) {
                stopping = 1;
                kill_at = time(NULL) + (time_t)ars_config_current()->shutdown_grace_seconds + 5;
                for (int i = 0; i < n; i++)
                    if (pids[i] > 0)
                        kill(pids[i], SIGTERM);
            }
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int i = 0; i < n; i++) {
                if (pids[i] != pid)
                    continue;
                pids[i] = 0;
                if (stopping)
                    break;
                struct ars_logline l;
                ars_log_begin(&l, ARS_LOG_ERROR, NULL, "worker_process_died");
                ars_log_int(&l, "pid", (long long)pid);
                if (WIFSIGNALED(status))
                    ars_log_int(&l, "signal", WTERMSIG(status));
                else
                    ars_log_int(&l, "exit_code", WEXITSTATUS(status));
                ars_log_str(&l, "msg", "restarting it");
                ars_log_end(&l);
                /* A process that dies right after start would spin: back off. */
                if (time(NULL) - born[i] < 2)
                    sleep(1);
                pids[i] = spawn_child(listen_fd);
                born[i] = time(NULL);
            }
        }
        if (stopping) {
            int alive = 0;
            for (int i = 0; i < n; i++)
                alive += pids[i] > 0;
            if (!alive)
                break;
            if (time(NULL) >= kill_at) {
                for (int i = 0; i < n; i++)
                    if (pids[i] > 0)
                        kill(pids[i], SIGKILL);
            }
        }
    }
    free(pids);
    free(born);
    remove_socket();
    ars_log_msg(ARS_LOG_INFO, NULL, "stopped", "supervisor: all worker processes ended");
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_options(argc, argv, &opts))
        return 2;
    if (opts.print_sample) {
        ars_config_print_sample(stdout);
        return 0;
    }
    /* An explicit --config must exist; the default .env is optional. */
    char err[512];
    struct ars_config *cfg;
    if (ars_config_load(opts.config_file, opts.config_required, environ, &cfg, err, sizeof(err))) {
        fprintf(stderr, "ai-relay: %s\n", err);
        return 1;
    }
    if (opts.check_config) {
        ars_config_print(cfg, stdout);
        struct ars_pricing *p;
        int ok = ars_pricing_load(cfg->pricing_file, &p, err, sizeof(err)) == ARS_OK;
        if (ok)
            ars_pricing_free(p);
        else
            fprintf(stderr, "ai-relay: PRICING_FILE: %s\n", err);
        fprintf(stderr, "ai-relay: configuration %s\n", ok ? "OK" : "has errors");
        ars_config_free(cfg);
        return ok ? 0 : 1;
    }
    if (load_pricing(cfg, err, sizeof(err))) {
        fprintf(stderr, "ai-relay: PRICING_FILE: %s\n", err);
        ars_config_free(cfg);
        return 1;
    }
    ars_config_install(cfg);
    apply_logging(cfg);

    if (FCGX_Init() != 0) {
        fprintf(stderr, "ai-relay: FCGX_Init failed\n");
        return 1;
    }
    int listen_fd = open_listen(opts.listen);
    if (listen_fd < 0)
        return 1;
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        fprintf(stderr, "ai-relay: curl_global_init failed\n");
        return 1;
    }
    /* After FCGX_Init, which installs its own SIGTERM/SIGPIPE handlers:
     * block the signals we take with sigwait in every thread. */
    signal(SIGPIPE, SIG_IGN);
    install_crash_handlers();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    int rc = opts.processes > 1 ? supervise(listen_fd, (int)opts.processes) : run_workers(listen_fd);
    curl_global_cleanup();
    ars_pricing_release_all();
    ars_config_release_all();
    return rc;
}
