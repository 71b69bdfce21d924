/*
 * cfloor.c - the C floor of `pynano bench`.
 *
 * The bench workloads, run through the NanoSSL C API of csrc/ with no
 * Python in the loop. pynano/bench/cfloor.py builds this file with the
 * csrc/ files and the Mbed TLS sources, config header and compiler flags of
 * the Python extension, so pynano's time divided by this program's time is
 * the cost of the binding alone.
 *
 * Usage:
 *   cfloor server PKI_DIR        listen on 127.0.0.1 and print "ready port=N"
 *   cfloor client PKI_DIR PORT   connect to 127.0.0.1:PORT for each command
 *
 * PKI_DIR contains ca.pem, server.pem, server.key, client.pem and client.key
 * as `pynano certs` writes them. Both roles then read one command per line
 * on stdin and reply on stdout in the line protocol that
 * pynano/bench/protocol.py describes:
 *
 *   serve|run kind=handshake version=V suite=S count=N threads=T
 *   serve|run kind=bulk version=V suite=S bytes=B
 *   serve|run kind=hold version=V suite=S count=N warmup=W   then: release
 *   serve|run kind=resume version=V suite=S count=N
 *   quit
 *
 * kind=resume is one full handshake, untimed, then N handshakes that offer
 * the newest session through the ticket callbacks. The client reports the
 * ones that were not resumed as not_resumed=K, and fails when none resumed.
 *
 * Every connection ends with a one-byte message from the server that the
 * client reads, as in pynano/bench/worker.py, so a handshake counts only
 * once both sides have finished it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "nanossl.h"
#include "pynano_ext.h"

#define RECORD_BYTES        (16 * 1024)
#define IO_TIMEOUT_MS       30000
#define ACCEPT_TIMEOUT_MS   60000
#define LISTEN_BACKLOG      1024
#define MAX_LINE            1024
#define MAX_THREADS         64
#define MAX_CONNECTIONS     4096
#define SERVER_NAME         "localhost"
#define PING                'k'

/* One command line, parsed. Fields a command does not carry stay 0. */
typedef struct bench_command {
    char verb[16];
    char kind[16];
    ubyte2 suite;
    long count;
    long threads;
    long long bytes;
    long warmup;
} bench_command;

/* What one side of the bench owns for its whole life. */
typedef struct bench_side {
    int is_server;
    int listen_fd;          /* server: the listening socket, else -1 */
    int port;               /* server: its port; client: the server's */
    certStorePtr store;
} bench_side;

/* Negotiated version and suite of the first connection of a command. */
typedef struct bench_facts {
    ubyte4 minor;
    ubyte2 cipher;
} bench_facts;

/* Holds the threads of a command until all are ready, so the clock starts
 * when every thread can run. */
typedef struct bench_gate {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    long ready;             /* threads waiting at the gate */
    int open;
} bench_gate;

/* Work and result of one thread of a handshake command. */
typedef struct bench_job {
    const bench_side *side;
    const bench_command *command;
    bench_gate *start;
    pthread_mutex_t *lock;  /* server: guards *remaining */
    long *remaining;        /* server: connections still to accept */
    long share;             /* client: connections this thread makes */
    bench_facts *facts;     /* client: filled by the first thread, else NULL */
    sbyte4 status;
    char stage[32];
} bench_job;

/* ---- output ------------------------------------------------------------ */

/* Print a protocol value: letters, digits and -._~ as they are, the rest
 * percent-encoded so the value contains no space. */
static void print_value(const char *text)
{
    const unsigned char *p;

    for (p = (const unsigned char *) text; *p != 0; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
            (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL) {
            putchar(*p);
        } else {
            printf("%%%02X", *p);
        }
    }
}

static void reply_error(const char *stage, sbyte4 status)
{
    char message[160];

    snprintf(message, sizeof(message), "%s failed with %s", stage, DISPLAY_ERROR(status));
    fputs("error message=", stdout);
    print_value(message);
    putchar('\n');
    fflush(stdout);
}

static void reply(const char *line)
{
    puts(line);
    fflush(stdout);
}

static const char *version_name(ubyte4 minor)
{
    return minor == TLS13_MINORVERSION ? "TLSv1.3" : "TLSv1.2";
}

static const char *suite_name(ubyte2 suite)
{
    switch (suite) {
    case 0x1301:
        return "TLS_AES_128_GCM_SHA256";
    case 0xC02B:
        return "ECDHE-ECDSA-AES128-GCM-SHA256";
    case 0xCCA9:
        return "ECDHE-ECDSA-CHACHA20-POLY1305";
    default:
        return "other";
    }
}

/* ---- clocks and memory ------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double) now.tv_sec + (double) now.tv_nsec / 1e9;
}

/* CPU seconds of this process, all threads. */
static double cpu_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return (double) now.tv_sec + (double) now.tv_nsec / 1e9;
}

/* Resident set size in bytes from /proc/self/statm, or -1. */
static long long resident_bytes(void)
{
    FILE *statm = fopen("/proc/self/statm", "r");
    long long size_pages;
    long long resident_pages;
    int fields;

    if (statm == NULL) {
        return -1;
    }
    fields = fscanf(statm, "%lld %lld", &size_pages, &resident_pages);
    fclose(statm);
    if (fields != 2) {
        return -1;
    }
    return resident_pages * sysconf(_SC_PAGESIZE);
}

/* ---- PKI --------------------------------------------------------------- */

/* Read PKI_DIR/name into a new buffer; the caller frees *data. */
static int read_file(const char *dir, const char *name, ubyte **data, ubyte4 *length)
{
    char path[4096];
    FILE *file;
    long size;
    ubyte *buffer;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "cfloor: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fseek(file, 0, SEEK_END) != 0 || (size = ftell(file)) <= 0 ||
        fseek(file, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cfloor: cannot size %s\n", path);
        fclose(file);
        return -1;
    }
    buffer = malloc((size_t) size);
    if (buffer == NULL) {
        fclose(file);
        return -1;
    }
    if (fread(buffer, 1, (size_t) size, file) != (size_t) size) {
        fprintf(stderr, "cfloor: cannot read %s\n", path);
        free(buffer);
        fclose(file);
        return -1;
    }
    fclose(file);
    *data = buffer;
    *length = (ubyte4) size;
    return 0;
}

/* Add role.pem with role.key as the identity and ca.pem as trust point. */
static MSTATUS fill_store(certStorePtr store, const char *dir, const char *role)
{
    char cert_name[64];
    char key_name[64];
    ubyte *cert = NULL;
    ubyte *key = NULL;
    ubyte *ca = NULL;
    ubyte4 cert_length = 0;
    ubyte4 key_length = 0;
    ubyte4 ca_length = 0;
    MSTATUS status = ERR_INVALID_ARG;

    snprintf(cert_name, sizeof(cert_name), "%s.pem", role);
    snprintf(key_name, sizeof(key_name), "%s.key", role);
    if (read_file(dir, cert_name, &cert, &cert_length) == 0 &&
        read_file(dir, key_name, &key, &key_length) == 0 &&
        read_file(dir, "ca.pem", &ca, &ca_length) == 0) {
        status = CERT_STORE_addIdentity(store, cert, cert_length, key, key_length);
        if (status == OK) {
            status = CERT_STORE_addTrustPoint(store, ca, ca_length);
        }
    }
    free(cert);
    free(key);
    free(ca);
    return status;
}

static certStorePtr load_store(const char *dir, const char *role)
{
    certStorePtr store = NULL;
    MSTATUS status = CERT_STORE_createStore(&store);

    if (status != OK) {
        fprintf(stderr, "cfloor: CERT_STORE_createStore failed with %s\n", DISPLAY_ERROR(status));
        return NULL;
    }
    status = fill_store(store, dir, role);
    if (status != OK) {
        fprintf(stderr, "cfloor: loading the %s identity from %s failed with %s\n", role, dir,
                DISPLAY_ERROR(status));
        CERT_STORE_releaseStore(&store);
        return NULL;
    }
    return store;
}

/* ---- sockets ----------------------------------------------------------- */

static void set_nodelay(int fd)
{
    int on = 1;

    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

static void loopback_address(struct sockaddr_in *address, int port)
{
    memset(address, 0, sizeof(*address));
    address->sin_family = AF_INET;
    address->sin_port = htons((uint16_t) port);
    address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* Listen on 127.0.0.1 on a free port; returns the socket or -1. */
static int listen_loopback(int *port)
{
    struct sockaddr_in address;
    socklen_t length = sizeof(address);
    int on = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        return -1;
    }
    loopback_address(&address, 0);
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *) &address, sizeof(address)) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0 ||
        getsockname(fd, (struct sockaddr *) &address, &length) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(address.sin_port);
    return fd;
}

static int connect_loopback(int port)
{
    struct sockaddr_in address;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        return -1;
    }
    loopback_address(&address, port);
    if (connect(fd, (struct sockaddr *) &address, sizeof(address)) != 0) {
        close(fd);
        return -1;
    }
    set_nodelay(fd);
    return fd;
}

/* Accept one connection within ACCEPT_TIMEOUT_MS; returns it or -1.
 * Threads may wait on the same socket, which is non-blocking so that a
 * thread that loses the race goes back to poll(). On Linux the accepted
 * socket does not inherit O_NONBLOCK, so it blocks like a Python socket
 * without a timeout. */
static int accept_loopback(int listen_fd)
{
    for (;;) {
        struct pollfd entry;
        int ready;
        int fd;

        entry.fd = listen_fd;
        entry.events = POLLIN;
        entry.revents = 0;
        ready = poll(&entry, 1, ACCEPT_TIMEOUT_MS);
        if (ready == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (ready < 0 && errno != EINTR) {
            return -1;
        }
        fd = accept(listen_fd, NULL, NULL);
        if (fd >= 0) {
            set_nodelay(fd);
            return fd;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return -1;
        }
    }
}

/* ---- one connection ---------------------------------------------------- */

/* Force the suite, bound the handshake time, run the handshake. */
static sbyte4 negotiate(sbyte4 instance, ubyte2 suite)
{
    sbyte4 status = SSL_enableCiphers(instance, &suite, 1);

    if (status == OK) {
        status = SSL_ioctl(instance, PYNANO_SSL_SET_HANDSHAKE_TIMEOUT,
                           (void *) (uintptr_t) IO_TIMEOUT_MS);
    }
    if (status == OK) {
        status = SSL_negotiateConnection(instance);
    }
    return status;
}

static void close_connection(sbyte4 instance, int fd)
{
    SSL_closeConnection(instance);
    close(fd);
}

/* Accept and run a server handshake with mutual authentication. Returns the
 * connection instance with its socket in *fd_out, or a negative status with
 * *stage naming the failed step; nothing stays open on failure. */
static sbyte4 server_handshake(const bench_side *side, ubyte2 suite, int *fd_out,
                               const char **stage)
{
    sbyte4 instance;
    sbyte4 status;
    ubyte4 flags = 0;
    int fd = accept_loopback(side->listen_fd);

    if (fd < 0) {
        *stage = "accept";
        return ERR_TCP_READ_TIMEOUT;
    }
    instance = SSL_acceptConnection(fd, side->store);
    if (instance < 0) {
        close(fd);
        *stage = "SSL_acceptConnection";
        return instance;
    }
    SSL_getSessionFlags(instance, &flags);
    SSL_setSessionFlags(instance, flags | SSL_FLAG_REQUIRE_MUTUAL_AUTH);
    status = negotiate(instance, suite);
    if (status < 0) {
        close_connection(instance, fd);
        *stage = "server handshake";
        return status;
    }
    *fd_out = fd;
    return instance;
}

/* Connect and run a client handshake; same contract as server_handshake. */
static sbyte4 client_handshake(const bench_side *side, ubyte2 suite, int *fd_out,
                               const char **stage)
{
    sbyte4 instance;
    sbyte4 status;
    int fd = connect_loopback(side->port);

    if (fd < 0) {
        *stage = "connect";
        return ERR_TCP_WRITE_ERROR;
    }
    instance = SSL_connect(fd, 0, NULL, NULL, SERVER_NAME, side->store);
    if (instance < 0) {
        close(fd);
        *stage = "SSL_connect";
        return instance;
    }
    status = negotiate(instance, suite);
    if (status < 0) {
        close_connection(instance, fd);
        *stage = "client handshake";
        return status;
    }
    *fd_out = fd;
    return instance;
}

static sbyte4 send_ping(sbyte4 instance)
{
    sbyte ping = PING;
    sbyte4 sent = SSL_send(instance, &ping, 1);

    return sent < 0 ? sent : OK;
}

static sbyte4 read_ping(sbyte4 instance)
{
    sbyte ping = 0;
    sbyte4 received = 0;
    sbyte4 status = SSL_recv(instance, &ping, 1, &received, IO_TIMEOUT_MS);

    if (status == OK && received != 1) {
        status = ERR_TCP_SOCKET_CLOSED;
    }
    return status;
}

static void read_facts(sbyte4 instance, bench_facts *facts)
{
    ubyte4 curves = 0;

    SSL_getSSLTLSVersion(instance, &facts->minor);
    SSL_getCipherInfo(instance, &facts->cipher, &curves);
}

/* Accept, handshake, send the one-byte message, close. */
static sbyte4 serve_one(const bench_side *side, ubyte2 suite, const char **stage)
{
    int fd = -1;
    sbyte4 instance = server_handshake(side, suite, &fd, stage);
    sbyte4 status;

    if (instance < 0) {
        return instance;
    }
    status = send_ping(instance);
    if (status < 0) {
        *stage = "SSL_send";
    }
    close_connection(instance, fd);
    return status;
}

/* Connect, handshake, read the one-byte message, close. */
static sbyte4 connect_once(const bench_side *side, ubyte2 suite, bench_facts *facts,
                           const char **stage)
{
    int fd = -1;
    sbyte4 instance = client_handshake(side, suite, &fd, stage);
    sbyte4 status;

    if (instance < 0) {
        return instance;
    }
    status = read_ping(instance);
    if (status < 0) {
        *stage = "SSL_recv";
    } else if (facts != NULL) {
        read_facts(instance, facts);
    }
    close_connection(instance, fd);
    return status;
}

/* ---- handshake workload ------------------------------------------------ */

static void gate_wait(bench_gate *gate)
{
    pthread_mutex_lock(&gate->lock);
    gate->ready++;
    pthread_cond_broadcast(&gate->changed);
    while (!gate->open) {
        pthread_cond_wait(&gate->changed, &gate->lock);
    }
    pthread_mutex_unlock(&gate->lock);
}

/* Wait until count threads are at the gate, then let them all go. */
static void gate_open(bench_gate *gate, long count)
{
    pthread_mutex_lock(&gate->lock);
    while (gate->ready < count) {
        pthread_cond_wait(&gate->changed, &gate->lock);
    }
    gate->open = 1;
    pthread_cond_broadcast(&gate->changed);
    pthread_mutex_unlock(&gate->lock);
}

static void record_failure(bench_job *job, sbyte4 status, const char *stage)
{
    job->status = status;
    snprintf(job->stage, sizeof(job->stage), "%s", stage);
}

/* Server thread: take connections from the shared count until none is left. */
static void *serve_thread(void *argument)
{
    bench_job *job = argument;

    gate_wait(job->start);
    for (;;) {
        const char *stage = "";
        sbyte4 status;

        pthread_mutex_lock(job->lock);
        if (*job->remaining == 0) {
            pthread_mutex_unlock(job->lock);
            break;
        }
        (*job->remaining)--;
        pthread_mutex_unlock(job->lock);

        status = serve_one(job->side, job->command->suite, &stage);
        if (status < 0) {
            record_failure(job, status, stage);
            break;
        }
    }
    return NULL;
}

/* Client thread: make this thread's share of the connections. */
static void *connect_thread(void *argument)
{
    bench_job *job = argument;
    long i;

    gate_wait(job->start);
    for (i = 0; i < job->share; i++) {
        const char *stage = "";
        sbyte4 status = connect_once(job->side, job->command->suite,
                                     i == 0 ? job->facts : NULL, &stage);

        if (status < 0) {
            record_failure(job, status, stage);
            break;
        }
    }
    return NULL;
}

/* Run the jobs on their own threads, started together. Returns the seconds
 * from the common start to the end of the last one. A job whose thread
 * could not be created gets a failed status. */
static double run_jobs(bench_job *jobs, long count, void *(*body)(void *), bench_gate *start)
{
    pthread_t threads[MAX_THREADS];
    double started;
    long created;
    long i;

    for (created = 0; created < count; created++) {
        if (pthread_create(&threads[created], NULL, body, &jobs[created]) != 0) {
            break;
        }
    }
    for (i = created; i < count; i++) {
        record_failure(&jobs[i], ERR_MEM_ALLOC_FAIL, "pthread_create");
    }
    gate_open(start, created);
    started = now_seconds();
    while (created > 0) {
        pthread_join(threads[--created], NULL);
    }
    return now_seconds() - started;
}

/* Fill jobs for a handshake command; threads is already checked. */
static void prepare_jobs(bench_job *jobs, const bench_side *side, const bench_command *command,
                         bench_gate *start, pthread_mutex_t *lock, long *remaining,
                         bench_facts *facts)
{
    long i;

    for (i = 0; i < command->threads; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].side = side;
        jobs[i].command = command;
        jobs[i].start = start;
        jobs[i].lock = lock;
        jobs[i].remaining = remaining;
        jobs[i].share = command->count / command->threads + (i < command->count % command->threads);
        jobs[i].facts = i == 0 ? facts : NULL;
        jobs[i].status = OK;
    }
}

static const bench_job *first_failure(const bench_job *jobs, long count)
{
    long i;

    for (i = 0; i < count; i++) {
        if (jobs[i].status < 0) {
            return &jobs[i];
        }
    }
    return NULL;
}

static void run_handshake_command(const bench_side *side, const bench_command *command)
{
    bench_job jobs[MAX_THREADS];
    bench_gate start = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    long remaining = command->count;
    bench_facts facts = { 0, 0 };
    const bench_job *failed;
    double cpu_started = cpu_seconds();
    double seconds;

    if (command->threads < 1 || command->threads > MAX_THREADS || command->count < 1) {
        reply_error("threads or count out of range", ERR_INVALID_ARG);
        return;
    }
    prepare_jobs(jobs, side, command, &start, &lock, &remaining, &facts);
    if (side->is_server) {
        reply("serving");
    }
    seconds = run_jobs(jobs, command->threads, side->is_server ? serve_thread : connect_thread,
                       &start);

    failed = first_failure(jobs, command->threads);
    if (failed != NULL) {
        reply_error(failed->stage, failed->status);
    } else if (side->is_server) {
        printf("done served=%ld cpu=%.6f\n", command->count, cpu_seconds() - cpu_started);
        fflush(stdout);
    } else {
        printf("done seconds=%.6f count=%ld cpu=%.6f version=%s cipher=%s\n", seconds,
               command->count, cpu_seconds() - cpu_started, version_name(facts.minor),
               suite_name(facts.cipher));
        fflush(stdout);
    }
}

/* ---- bulk workload ----------------------------------------------------- */

static void serve_bulk(const bench_side *side, const bench_command *command)
{
    static sbyte buffer[RECORD_BYTES];
    double cpu_started;
    const char *stage = "";
    long long received = 0;
    sbyte4 status = OK;
    int fd = -1;
    sbyte4 instance;

    reply("serving");
    instance = server_handshake(side, command->suite, &fd, &stage);
    if (instance < 0) {
        reply_error(stage, instance);
        return;
    }
    /* CPU time counts from here, so the handshake does not weigh on small transfers. */
    cpu_started = cpu_seconds();
    while (received < command->bytes && status == OK) {
        sbyte4 count = 0;

        status = SSL_recv(instance, buffer, RECORD_BYTES, &count, IO_TIMEOUT_MS);
        received += count;
    }
    if (status == OK) {
        status = send_ping(instance);
    }
    close_connection(instance, fd);
    if (status < 0) {
        reply_error("bulk transfer", status);
        return;
    }
    printf("done received=%lld cpu=%.6f\n", received, cpu_seconds() - cpu_started);
    fflush(stdout);
}

static void run_bulk(const bench_side *side, const bench_command *command)
{
    static sbyte data[RECORD_BYTES];
    double cpu_started;
    long long records = command->bytes / RECORD_BYTES > 0 ? command->bytes / RECORD_BYTES : 1;
    bench_facts facts = { 0, 0 };
    const char *stage = "";
    sbyte4 status = OK;
    double started;
    double seconds;
    long long i;
    int fd = -1;
    sbyte4 instance;

    /* The content does not change the cost of AEAD; any pattern will do. */
    for (i = 0; i < RECORD_BYTES; i++) {
        data[i] = (sbyte) (i * 131 + 7);
    }
    instance = client_handshake(side, command->suite, &fd, &stage);
    if (instance < 0) {
        reply_error(stage, instance);
        return;
    }
    read_facts(instance, &facts);

    cpu_started = cpu_seconds();
    started = now_seconds();
    for (i = 0; i < records && status >= 0; i++) {
        status = SSL_send(instance, data, RECORD_BYTES);
    }
    if (status >= 0) {
        status = read_ping(instance);
    }
    seconds = now_seconds() - started;
    close_connection(instance, fd);
    if (status < 0) {
        reply_error("bulk transfer", status);
        return;
    }
    printf("done seconds=%.6f bytes=%lld cpu=%.6f version=%s cipher=%s\n", seconds,
           records * RECORD_BYTES, cpu_seconds() - cpu_started, version_name(facts.minor),
           suite_name(facts.cipher));
    fflush(stdout);
}

/* ---- resume workload --------------------------------------------------- */

/* A session blob of the client. The resume workload runs on one thread, and
 * the callbacks have no user data, so the two blobs are file-level: the one
 * offered on the next connection and the newest one the server sent. */
typedef struct session_blob {
    ubyte *data;
    ubyte4 length;
} session_blob;

static session_blob g_offered;
static session_blob g_saved;

static void blob_clear(session_blob *blob)
{
    free(blob->data);
    blob->data = NULL;
    blob->length = 0;
}

/* Save-ticket callback: copy the blob into g_saved, replacing an older one. */
static sbyte4 save_ticket(sbyte4 connectionInstance, sbyte *serverInfo, ubyte4 serverInfoLen,
                          void *userData, ubyte *pTicket, ubyte4 ticketLen)
{
    ubyte *copy = malloc(ticketLen > 0 ? ticketLen : 1);

    (void) connectionInstance;
    (void) serverInfo;
    (void) serverInfoLen;
    (void) userData;
    if (copy == NULL) {
        return ERR_MEM_ALLOC_FAIL;
    }
    memcpy(copy, pTicket, ticketLen);
    blob_clear(&g_saved);
    g_saved.data = copy;
    g_saved.length = ticketLen;
    return OK;
}

/* Retrieve-ticket callback: offer g_offered, which this file keeps and frees. */
static sbyte4 retrieve_ticket(sbyte4 connectionInstance, sbyte *serverInfo, ubyte4 serverInfoLen,
                              void *userData, ubyte **ppTicket, ubyte4 *pTicketLen,
                              intBoolean *pFreeMemory)
{
    (void) connectionInstance;
    (void) serverInfo;
    (void) serverInfoLen;
    (void) userData;
    *pFreeMemory = 0;
    if (g_offered.data != NULL) {
        *ppTicket = g_offered.data;
        *pTicketLen = g_offered.length;
    }
    return OK;
}

/* Connect offering g_offered, read the one-byte message, close; then make
 * the newest saved blob the one to offer next. Sets *reused. */
static sbyte4 resume_once(const bench_side *side, ubyte2 suite, bench_facts *facts, int *reused,
                          const char **stage)
{
    sbyte4 instance;
    sbyte4 status;
    sbyte4 was_reused = 0;
    int fd = connect_loopback(side->port);

    if (fd < 0) {
        *stage = "connect";
        return ERR_TCP_WRITE_ERROR;
    }
    instance = SSL_connect(fd, 0, NULL, NULL, SERVER_NAME, side->store);
    if (instance < 0) {
        close(fd);
        *stage = "SSL_connect";
        return instance;
    }
    status = SSL_setClientSaveTicketCallback(instance, save_ticket);
    if (status == OK) {
        status = SSL_setClientRetrieveTicketCallback(instance, retrieve_ticket);
    }
    if (status == OK) {
        status = negotiate(instance, suite);
        *stage = "client handshake";
    } else {
        *stage = "setting the ticket callbacks";
    }
    if (status == OK) {
        /* A TLS 1.3 server sends its ticket before this message. */
        status = read_ping(instance);
        *stage = "SSL_recv";
    }
    if (status == OK) {
        PYNANO_getSessionReused(instance, &was_reused);
        *reused = was_reused != 0;
        if (facts != NULL) {
            read_facts(instance, facts);
        }
    }
    close_connection(instance, fd);
    if (g_saved.data != NULL) {
        blob_clear(&g_offered);
        g_offered = g_saved;
        g_saved.data = NULL;
        g_saved.length = 0;
    }
    return status < 0 ? status : OK;
}

static void serve_resumes(const bench_side *side, const bench_command *command)
{
    const char *stage = "";
    double cpu_started;
    sbyte4 status;
    long i;

    if (command->count < 1) {
        reply_error("count out of range", ERR_INVALID_ARG);
        return;
    }
    reply("serving");
    status = serve_one(side, command->suite, &stage);
    /* CPU time counts from here, as on the client, so it covers the resumed handshakes alone. */
    cpu_started = cpu_seconds();
    for (i = 0; i < command->count && status == OK; i++) {
        status = serve_one(side, command->suite, &stage);
    }
    if (status < 0) {
        reply_error(stage, status);
        return;
    }
    printf("done served=%ld cpu=%.6f\n", command->count + 1, cpu_seconds() - cpu_started);
    fflush(stdout);
}

static void run_resumes(const bench_side *side, const bench_command *command)
{
    bench_facts facts = { 0, 0 };
    const char *stage = "";
    double cpu_started;
    double started;
    double seconds;
    long resumed = 0;
    int reused = 0;
    sbyte4 status;
    long i;

    if (command->count < 1) {
        reply_error("count out of range", ERR_INVALID_ARG);
        return;
    }
    blob_clear(&g_offered);
    blob_clear(&g_saved);
    status = resume_once(side, command->suite, &facts, &reused, &stage);
    if (status == OK && g_offered.data == NULL) {
        stage = "saving the session of the full handshake";
        status = ERR_NULL_POINTER;
    }
    cpu_started = cpu_seconds();
    started = now_seconds();
    for (i = 0; i < command->count && status == OK; i++) {
        status = resume_once(side, command->suite, NULL, &reused, &stage);
        resumed += reused;
    }
    seconds = now_seconds() - started;
    blob_clear(&g_offered);
    if (status < 0) {
        reply_error(stage, status);
        return;
    }
    if (resumed == 0) {
        printf("error message=none%%20of%%20%ld%%20handshakes%%20resumed%%20the%%20session\n",
               command->count);
        fflush(stdout);
        return;
    }
    printf("done seconds=%.6f count=%ld not_resumed=%ld cpu=%.6f version=%s cipher=%s\n", seconds,
           command->count, command->count - resumed, cpu_seconds() - cpu_started,
           version_name(facts.minor), suite_name(facts.cipher));
    fflush(stdout);
}

/* ---- memory workload --------------------------------------------------- */

/* The idle connections that one side keeps open in the memory workload. */
typedef struct held_connections {
    sbyte4 *instances;
    int *fds;
    long count;
} held_connections;

static int held_init(held_connections *held, long capacity)
{
    held->instances = calloc((size_t) capacity, sizeof(*held->instances));
    held->fds = calloc((size_t) capacity, sizeof(*held->fds));
    held->count = 0;
    if (held->instances == NULL || held->fds == NULL) {
        free(held->instances);
        free(held->fds);
        return -1;
    }
    return 0;
}

static void held_free(held_connections *held)
{
    while (held->count > 0) {
        held->count--;
        close_connection(held->instances[held->count], held->fds[held->count]);
    }
    free(held->instances);
    free(held->fds);
}

/* Open one idle connection from this side: a server accepts and sends the
 * one-byte message, a client connects and reads it. */
static sbyte4 open_idle(const bench_side *side, ubyte2 suite, held_connections *held,
                        const char **stage)
{
    int fd = -1;
    sbyte4 instance;
    sbyte4 status;

    if (side->is_server) {
        instance = server_handshake(side, suite, &fd, stage);
    } else {
        instance = client_handshake(side, suite, &fd, stage);
    }
    if (instance < 0) {
        return instance;
    }
    held->instances[held->count] = instance;
    held->fds[held->count] = fd;
    held->count++;
    status = side->is_server ? send_ping(instance) : read_ping(instance);
    if (status < 0) {
        *stage = side->is_server ? "SSL_send" : "SSL_recv";
    }
    return status;
}

static int wait_for_release(void)
{
    char line[MAX_LINE];

    if (fgets(line, sizeof(line), stdin) == NULL) {
        return -1;
    }
    return strncmp(line, "release", 7) == 0 ? 0 : -1;
}

static sbyte4 warm_up(const bench_side *side, const bench_command *command, const char **stage)
{
    long i;

    for (i = 0; i < command->warmup; i++) {
        sbyte4 status = side->is_server ? serve_one(side, command->suite, stage)
                                        : connect_once(side, command->suite, NULL, stage);

        if (status < 0) {
            return status;
        }
    }
    return OK;
}

static void hold_connections(const bench_side *side, const bench_command *command)
{
    held_connections held;
    const char *stage = "";
    long long before;
    sbyte4 status;

    if (command->count < 1 || command->count > MAX_CONNECTIONS) {
        reply_error("count out of range", ERR_INVALID_ARG);
        return;
    }
    if (held_init(&held, command->count) != 0) {
        reply_error("allocation", ERR_MEM_ALLOC_FAIL);
        return;
    }
    if (side->is_server) {
        reply("serving");
    }
    status = warm_up(side, command, &stage);
    before = resident_bytes();
    while (status == OK && held.count < command->count) {
        status = open_idle(side, command->suite, &held, &stage);
    }
    if (status < 0) {
        held_free(&held);
        reply_error(stage, status);
        return;
    }
    printf("held rss_before=%lld rss_after=%lld count=%ld side=%s\n", before, resident_bytes(),
           held.count, side->is_server ? "server" : "client");
    fflush(stdout);

    status = wait_for_release() == 0 ? OK : ERR_INVALID_ARG;
    held_free(&held);
    if (status < 0) {
        reply_error("waiting for release", status);
        return;
    }
    reply("done");
}

/* ---- commands ---------------------------------------------------------- */

/* Split "verb key=value ..." into command; returns 0, or -1 on a bad field. */
static int parse_command(char *line, bench_command *command)
{
    char *save = NULL;
    char *word = strtok_r(line, " \t\r\n", &save);

    memset(command, 0, sizeof(*command));
    command->threads = 1;
    if (word == NULL) {
        return -1;
    }
    snprintf(command->verb, sizeof(command->verb), "%s", word);
    while ((word = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
        char *value = strchr(word, '=');

        if (value == NULL) {
            return -1;
        }
        *value++ = 0;
        if (strcmp(word, "kind") == 0) {
            snprintf(command->kind, sizeof(command->kind), "%s", value);
        } else if (strcmp(word, "suite") == 0) {
            command->suite = (ubyte2) strtol(value, NULL, 0);
        } else if (strcmp(word, "count") == 0) {
            command->count = strtol(value, NULL, 10);
        } else if (strcmp(word, "threads") == 0) {
            command->threads = strtol(value, NULL, 10);
        } else if (strcmp(word, "bytes") == 0) {
            command->bytes = strtoll(value, NULL, 10);
        } else if (strcmp(word, "warmup") == 0) {
            command->warmup = strtol(value, NULL, 10);
        }
        /* version follows from the suite; other fields are ignored. */
    }
    return 0;
}

static void run_command(const bench_side *side, const bench_command *command)
{
    const char *expected = side->is_server ? "serve" : "run";

    if (strcmp(command->verb, expected) != 0) {
        reply_error("unknown command", ERR_INVALID_ARG);
    } else if (strcmp(command->kind, "handshake") == 0) {
        run_handshake_command(side, command);
    } else if (strcmp(command->kind, "bulk") == 0) {
        if (side->is_server) {
            serve_bulk(side, command);
        } else {
            run_bulk(side, command);
        }
    } else if (strcmp(command->kind, "hold") == 0) {
        hold_connections(side, command);
    } else if (strcmp(command->kind, "resume") == 0) {
        if (side->is_server) {
            serve_resumes(side, command);
        } else {
            run_resumes(side, command);
        }
    } else {
        reply_error("unknown workload kind", ERR_INVALID_ARG);
    }
}

static void command_loop(const bench_side *side)
{
    char line[MAX_LINE];
    bench_command command;

    while (fgets(line, sizeof(line), stdin) != NULL) {
        if (parse_command(line, &command) != 0) {
            if (command.verb[0] != 0) {
                reply_error("parsing the command", ERR_INVALID_ARG);
            }
            continue;
        }
        if (strcmp(command.verb, "quit") == 0) {
            return;
        }
        run_command(side, &command);
    }
}

/* ---- main -------------------------------------------------------------- */

static void raise_open_file_limit(void)
{
    struct rlimit limit;

    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &limit);
    }
}

static void print_ready(const bench_side *side)
{
    pynano_build_info info;

    memset(&info, 0, sizeof(info));
    PYNANO_getBuildInfo(&info);
    fputs("ready", stdout);
    if (side->is_server) {
        printf(" port=%d", side->port);
    }
    fputs(" mbedtls=", stdout);
    print_value(info.mbedtls_version);
    printf(" aesni=%s\n", info.aesni ? "yes" : "no");
    fflush(stdout);
}

static int usage(void)
{
    fputs("usage: cfloor server PKI_DIR\n"
          "       cfloor client PKI_DIR PORT\n"
          "then one command per line on stdin; see the comment at the top of cfloor.c\n", stderr);
    return 2;
}

int main(int argc, char **argv)
{
    bench_side side;
    sbyte4 status;

    if (argc < 3 || (strcmp(argv[1], "server") != 0 && strcmp(argv[1], "client") != 0)) {
        return usage();
    }
    memset(&side, 0, sizeof(side));
    side.is_server = strcmp(argv[1], "server") == 0;
    side.listen_fd = -1;
    if (!side.is_server) {
        if (argc < 4 || (side.port = atoi(argv[3])) <= 0 || side.port > 65535) {
            return usage();
        }
    }
    raise_open_file_limit();

    status = SSL_init(MAX_CONNECTIONS, MAX_CONNECTIONS);
    if (status < 0) {
        fprintf(stderr, "cfloor: SSL_init failed with %s\n", DISPLAY_ERROR(status));
        return 1;
    }
    side.store = load_store(argv[2], side.is_server ? "server" : "client");
    if (side.store == NULL) {
        SSL_shutdownStack();
        return 1;
    }
    if (side.is_server) {
        side.listen_fd = listen_loopback(&side.port);
        if (side.listen_fd < 0) {
            perror("cfloor: listening on 127.0.0.1");
            CERT_STORE_releaseStore(&side.store);
            SSL_shutdownStack();
            return 1;
        }
    }

    print_ready(&side);
    command_loop(&side);

    if (side.listen_fd >= 0) {
        close(side.listen_fd);
    }
    CERT_STORE_releaseStore(&side.store);
    SSL_shutdownStack();
    return 0;
}
