/*
 * nanossl_io.c - the transport under Mbed TLS: send() and recv() on the
 * application's socket, with poll() for timeouts.
 *
 * The socket may be blocking or non-blocking (Python sockets with a timeout
 * are non-blocking underneath); both are handled by waiting in poll().
 * A signal that interrupts poll() ends the wait with MBEDTLS_ERR_SSL_TIMEOUT
 * and sets io_interrupted, so the caller can return to Python, which then
 * runs its signal handlers (Ctrl-C raises KeyboardInterrupt).
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include "mbedtls/net_sockets.h"

int64_t pynano_now_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Wait until fd is ready for events. Returns 1 ready, 0 timed out, -1 error
 * (errno set). timeout_ms < 0 waits forever. */
static int wait_ready(int fd, short events, int timeout_ms)
{
    struct pollfd entry;
    int ready;

    entry.fd = fd;
    entry.events = events;
    entry.revents = 0;
    ready = poll(&entry, 1, timeout_ms);
    if (ready > 0 && (entry.revents & POLLNVAL)) {
        errno = EBADF;
        return -1;
    }
    return ready;
}

/* Milliseconds to wait in the next poll(): the least of one slice, the
 * read timeout left and the call's deadline left; 0 when either has passed. */
static int next_wait_ms(const pynano_conn *conn, uint32_t timeout_ms, int64_t started)
{
    int64_t now = pynano_now_ms();
    int64_t wait = PYNANO_POLL_SLICE_MS;

    if (timeout_ms != 0) {
        int64_t read_left = (int64_t) timeout_ms - (now - started);

        wait = read_left < wait ? read_left : wait;
    }
    if (conn->io_deadline_ms > 0) {
        int64_t deadline_left = conn->io_deadline_ms - now;

        wait = deadline_left < wait ? deadline_left : wait;
    }
    return wait > 0 ? (int) wait : 0;
}

/* Milliseconds to wait for the socket to take more data: the least of one
 * slice, the send timeout left and the call's deadline left. */
static int send_wait_ms(const pynano_conn *conn, int64_t started)
{
    int64_t now = pynano_now_ms();
    int64_t wait = PYNANO_POLL_SLICE_MS;

    if (conn->send_timeout_ms != 0) {
        int64_t left = (int64_t) conn->send_timeout_ms - (now - started);

        wait = left < wait ? left : wait;
    }
    if (conn->io_deadline_ms > 0) {
        int64_t left = conn->io_deadline_ms - now;

        wait = left < wait ? left : wait;
    }
    return wait > 0 ? (int) wait : 0;
}

/* The send callback. The socket is written without blocking and waited on
 * with poll(), so a peer that stops reading cannot hold a call past the
 * send timeout or the handshake deadline, even on a blocking socket. */
static int io_send(void *context, const unsigned char *buffer, size_t length)
{
    pynano_conn *conn = context;
    int64_t started = pynano_now_ms();

    for (;;) {
        ssize_t sent = send(conn->fd, buffer, length, MSG_NOSIGNAL | MSG_DONTWAIT);
        int wait_ms;

        if (sent >= 0) {
            return (int) sent;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return (errno == EPIPE || errno == ECONNRESET) ? MBEDTLS_ERR_NET_CONN_RESET
                                                           : MBEDTLS_ERR_NET_SEND_FAILED;
        }
        wait_ms = send_wait_ms(conn, started);
        if (wait_ms == 0) {
            return MBEDTLS_ERR_NET_SEND_FAILED;
        }
        if (wait_ready(conn->fd, POLLOUT, wait_ms) < 0 && errno != EINTR) {
            return MBEDTLS_ERR_NET_SEND_FAILED;
        }
    }
}

/* The receive callback with a timeout, as mbedtls_ssl_set_bio() takes it.
 * timeout_ms comes from mbedtls_ssl_conf_read_timeout(); 0 means none, but
 * the wait still happens in slices so signals are noticed. */
static int io_recv_timeout(void *context, unsigned char *buffer, size_t length,
                           uint32_t timeout_ms)
{
    pynano_conn *conn = context;
    int64_t started = pynano_now_ms();

    for (;;) {
        int wait_ms = next_wait_ms(conn, timeout_ms, started);
        int ready;

        if (wait_ms == 0) {
            return MBEDTLS_ERR_SSL_TIMEOUT;
        }
        ready = wait_ready(conn->fd, POLLIN, wait_ms);
        if (ready < 0 && errno == EINTR) {
            conn->io_interrupted = 1;
            return MBEDTLS_ERR_SSL_TIMEOUT;
        }
        if (ready < 0) {
            return MBEDTLS_ERR_NET_RECV_FAILED;
        }
        if (ready == 0) {
            continue;
        }

        ssize_t received = recv(conn->fd, buffer, length, MSG_DONTWAIT);

        if (received > 0) {
            return (int) received;
        }
        if (received == 0) {
            return 0;
        }
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
            continue;
        }
        if (errno == ECONNRESET) {
            return MBEDTLS_ERR_NET_CONN_RESET;
        }
        return MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

void pynano_io_attach(pynano_conn *conn)
{
    mbedtls_ssl_set_bio(&conn->ssl, conn, io_send, NULL, io_recv_timeout);
}
