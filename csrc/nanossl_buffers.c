/*
 * nanossl_buffers.c - release the record buffers of idle connections.
 *
 * Mbed TLS keeps a 16 KiB input and a 16 KiB output buffer for the whole
 * life of a connection. An open connection with nothing buffered gives both
 * back here, as OpenSSL's SSL_MODE_RELEASE_BUFFERS does, and gets them back
 * before the next call that reads or writes records. Needs
 * MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH, which makes the buffer sizes fields.
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <string.h>

#include "mbedtls/platform_util.h"
/* Internal Mbed TLS header for the record pointer helpers. */
#include "ssl_misc.h"

/* In TLS (not DTLS) the 8-byte record sequence numbers live in the first
 * bytes of each buffer, so they are saved across a release. */
#define SEQUENCE_BYTES MBEDTLS_SSL_SEQUENCE_NUMBER_LEN

/* Idle: no unread record bytes, no unread application data, no further
 * handshake message in the current record, no unsent bytes. A consumed
 * handshake message may still be counted in in_msglen; Mbed TLS drops it
 * at the next read without looking at the buffer. */
static int is_idle(const mbedtls_ssl_context *ssl)
{
    return ssl->in_buf != NULL && ssl->in_left == 0 && ssl->in_offt == NULL &&
           ssl->out_left == 0 && mbedtls_ssl_check_pending(ssl) == 0;
}

void pynano_buffers_release(pynano_conn *conn)
{
    mbedtls_ssl_context *ssl = &conn->ssl;

    if (!conn->ssl_ready || conn->state != CONN_STATE_OPEN || !is_idle(ssl)) {
        return;
    }
    memcpy(conn->saved_in_sequence, ssl->in_ctr, SEQUENCE_BYTES);
    memcpy(conn->saved_out_sequence, ssl->out_ctr, SEQUENCE_BYTES);
    mbedtls_zeroize_and_free(ssl->in_buf, ssl->in_buf_len);
    mbedtls_zeroize_and_free(ssl->out_buf, ssl->out_buf_len);
    ssl->in_buf = NULL;
    ssl->out_buf = NULL;
    ssl->in_buf_len = 0;
    ssl->out_buf_len = 0;
}

MSTATUS pynano_buffers_restore(pynano_conn *conn)
{
    mbedtls_ssl_context *ssl = &conn->ssl;
    unsigned char *in;
    unsigned char *out;

    if (!conn->ssl_ready || ssl->in_buf != NULL) {
        return OK;
    }
    in = mbedtls_calloc(1, MBEDTLS_SSL_IN_BUFFER_LEN);
    out = mbedtls_calloc(1, MBEDTLS_SSL_OUT_BUFFER_LEN);
    if (in == NULL || out == NULL) {
        mbedtls_free(in);
        mbedtls_free(out);
        return ERR_MEM_ALLOC_FAIL;
    }
    ssl->in_buf = in;
    ssl->in_buf_len = MBEDTLS_SSL_IN_BUFFER_LEN;
    ssl->out_buf = out;
    ssl->out_buf_len = MBEDTLS_SSL_OUT_BUFFER_LEN;
    mbedtls_ssl_reset_in_pointers(ssl);
    mbedtls_ssl_reset_out_pointers(ssl);
    mbedtls_ssl_update_out_pointers(ssl, ssl->transform_out);
    memcpy(ssl->in_ctr, conn->saved_in_sequence, SEQUENCE_BYTES);
    memcpy(ssl->out_ctr, conn->saved_out_sequence, SEQUENCE_BYTES);
    return OK;
}
