/*
 * nanossl_records.c - application data and connection end: SSL_send,
 * SSL_recv, SSL_recvPending, SSL_sendAlert, SSL_closeConnection, and the
 * queries that read a negotiated connection.
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <string.h>

#include "mbedtls/error.h"
#include "mbedtls/net_sockets.h"
#include "mbedtls/platform_util.h"

/* Acquire and lock a connection whose handshake has completed. */
static sbyte4 begin_open_call(sbyte4 instance, pynano_conn **out)
{
    pynano_conn *conn = pynano_conn_acquire(instance);

    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    if (conn->state != CONN_STATE_OPEN || conn->in_callback) {
        sbyte4 status = conn->state == CONN_STATE_CLOSED ? ERR_TCP_SOCKET_CLOSED
                        : conn->state != CONN_STATE_OPEN ? ERR_SSL_NOT_OPEN : ERR_SSL_BAD_STATE;

        pthread_mutex_unlock(&conn->lock);
        pynano_conn_release(conn);
        return status;
    }
    *out = conn;
    return OK;
}

/* Acquire and lock a connection in any state. */
static sbyte4 begin_any_call(sbyte4 instance, pynano_conn **out)
{
    pynano_conn *conn = pynano_conn_acquire(instance);

    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    *out = conn;
    return OK;
}

static void end_call(pynano_conn *conn)
{
    pthread_mutex_unlock(&conn->lock);
    pynano_conn_release(conn);
}

static MSTATUS record_failure(pynano_conn *conn, int ret)
{
    conn->last_mbedtls_error = ret;
    conn->peer_sent_close_notify = ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY;
    if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF ||
        ret == MBEDTLS_ERR_NET_CONN_RESET || ret == 0) {
        conn->state = CONN_STATE_CLOSED;
        return ERR_TCP_SOCKET_CLOSED;
    }
    pynano_record_peer_alert(conn, ret);
    conn->state = CONN_STATE_FAILED;
    return pynano_status_from_mbedtls(conn, ret);
}

sbyte4 SSL_send(sbyte4 connectionInstance, sbyte *pBuffer, sbyte4 bufferSize)
{
    pynano_conn *conn;
    sbyte4 status;
    sbyte4 sent = 0;

    if (pBuffer == NULL && bufferSize != 0) {
        return ERR_NULL_POINTER;
    }
    if (bufferSize < 0) {
        return ERR_BAD_LENGTH;
    }
    status = begin_open_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    status = pynano_buffers_restore(conn);
    if (status != OK) {
        end_call(conn);
        return status;
    }

    /* mbedtls_ssl_write() takes at most one record per call; the loop sends
     * the whole buffer so one call from Python moves any amount of data. */
    while (sent < bufferSize) {
        int ret = mbedtls_ssl_write(&conn->ssl, (const unsigned char *) pBuffer + sent,
                                    (size_t) (bufferSize - sent));

        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
            continue;
        }
        if (ret < 0) {
            status = record_failure(conn, ret);
            end_call(conn);
            return status;
        }
        sent += ret;
    }
    pynano_buffers_release(conn);
    end_call(conn);
    return sent;
}

sbyte4 SSL_recv(sbyte4 connectionInstance, sbyte *pRetBuffer, sbyte4 bufferSize,
                sbyte4 *pNumBytesReceived, ubyte4 timeout)
{
    pynano_conn *conn;
    sbyte4 status;

    if (pRetBuffer == NULL || pNumBytesReceived == NULL) {
        return ERR_NULL_POINTER;
    }
    *pNumBytesReceived = 0;
    if (bufferSize <= 0) {
        return ERR_BAD_LENGTH;
    }
    status = begin_open_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    status = pynano_buffers_restore(conn);
    if (status != OK) {
        end_call(conn);
        return status;
    }

    mbedtls_ssl_conf_read_timeout(&conn->conf, timeout);
    for (;;) {
        int ret = mbedtls_ssl_read(&conn->ssl, (unsigned char *) pRetBuffer,
                                   (size_t) bufferSize);

        if (ret > 0) {
            *pNumBytesReceived = ret;
            status = OK;
            break;
        }
        /* A TLS 1.3 NewSessionTicket carries no application data: hand the
         * session to the save-ticket callback and read on. */
        if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
            pynano_session_offer_to_app(conn);
            continue;
        }
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
            continue;
        }
        if (ret == MBEDTLS_ERR_SSL_TIMEOUT) {
            status = conn->io_interrupted ? PYNANO_ERR_INTERRUPTED : ERR_TCP_READ_TIMEOUT;
            conn->io_interrupted = 0;
            break;
        }
        status = record_failure(conn, ret);
        break;
    }
    pynano_buffers_release(conn);
    end_call(conn);
    return status;
}

sbyte4 SSL_recvPending(sbyte4 connectionInstance, sbyte4 *pRetBooleanIsPending)
{
    pynano_conn *conn;
    sbyte4 status;

    if (pRetBooleanIsPending == NULL) {
        return ERR_NULL_POINTER;
    }
    status = begin_open_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    *pRetBooleanIsPending = mbedtls_ssl_get_bytes_avail(&conn->ssl) > 0 ||
                            mbedtls_ssl_check_pending(&conn->ssl) != 0;
    end_call(conn);
    return OK;
}

sbyte4 SSL_sendAlert(sbyte4 connectionInstance, sbyte4 alertId, sbyte4 alertClass)
{
    pynano_conn *conn;
    int ret;

    if (alertId < 0 || alertId > 255 ||
        (alertClass != SSLALERTLEVEL_WARNING && alertClass != SSLALERTLEVEL_FATAL)) {
        return ERR_INVALID_ARG;
    }
    conn = pynano_conn_acquire(connectionInstance);
    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    if (!conn->ssl_ready || conn->state == CONN_STATE_CLOSED) {
        end_call(conn);
        return ERR_SSL_NOT_OPEN;
    }
    /* A callback rejects by its return value, which also picks the alert;
     * an alert sent from inside it would be followed by the handshake. */
    if (conn->in_callback) {
        end_call(conn);
        return ERR_SSL_BAD_STATE;
    }
    if (pynano_buffers_restore(conn) != OK) {
        end_call(conn);
        return ERR_MEM_ALLOC_FAIL;
    }
    ret = mbedtls_ssl_send_alert_message(&conn->ssl, (unsigned char) alertClass,
                                         (unsigned char) alertId);
    if (alertClass == SSLALERTLEVEL_FATAL) {
        conn->state = CONN_STATE_FAILED;
    }
    end_call(conn);
    return ret == 0 ? OK : pynano_status_from_mbedtls(NULL, ret);
}

sbyte4 SSL_closeConnection(sbyte4 connectionInstance)
{
    pynano_conn *conn = pynano_conn_acquire(connectionInstance);

    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    /* pynano replies to a peer's close_notify with its own (RFC 8446
     * section 6.1). This is best effort: a peer that already left makes it
     * fail, and the connection is freed either way. */
    if ((conn->state == CONN_STATE_OPEN || conn->peer_sent_close_notify) &&
        pynano_buffers_restore(conn) == OK) {
        conn->io_deadline_ms = pynano_now_ms() + PYNANO_CLOSE_NOTIFY_MS;
        (void) mbedtls_ssl_close_notify(&conn->ssl);
        conn->io_deadline_ms = 0;
        conn->state = CONN_STATE_CLOSED;
        conn->peer_sent_close_notify = 0;
    }
    pthread_mutex_unlock(&conn->lock);
    pynano_debug("instance %d closed", connectionInstance);

    pynano_conn_unlink(conn);
    pynano_conn_release(conn);
    return OK;
}

sbyte4 PYNANO_releaseConnection(sbyte4 connectionInstance)
{
    pynano_conn *conn = pynano_conn_acquire(connectionInstance);

    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    conn->state = CONN_STATE_CLOSED;
    pthread_mutex_unlock(&conn->lock);
    pynano_conn_unlink(conn);
    pynano_conn_release(conn);
    return OK;
}

/* ---- queries ---------------------------------------------------------- */

sbyte4 PYNANO_getPendingBytes(sbyte4 connectionInstance, ubyte4 *pBytes)
{
    pynano_conn *conn;
    sbyte4 status;

    if (pBytes == NULL) {
        return ERR_NULL_POINTER;
    }
    status = begin_open_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    *pBytes = (ubyte4) mbedtls_ssl_get_bytes_avail(&conn->ssl);
    end_call(conn);
    return OK;
}

sbyte4 SSL_getCipherInfo(sbyte4 connectionInstance, ubyte2 *pCipherId,
                         ubyte4 *pPeerEcCurves)
{
    pynano_conn *conn;
    sbyte4 status;

    if (pCipherId == NULL || pPeerEcCurves == NULL) {
        return ERR_NULL_POINTER;
    }
    status = begin_open_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    *pCipherId = (ubyte2) mbedtls_ssl_get_ciphersuite_id_from_ssl(&conn->ssl);
    /* NOTE: Mbed TLS frees the peer's supported-groups list with the
     * handshake state, so the curve bit field is always 0 here. */
    *pPeerEcCurves = 0;
    end_call(conn);
    return OK;
}

sbyte4 SSL_getSSLTLSVersion(sbyte4 connectionInstance, ubyte4 *pVersion)
{
    pynano_conn *conn;
    sbyte4 status;
    int version;

    if (pVersion == NULL) {
        return ERR_NULL_POINTER;
    }
    status = begin_open_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    version = mbedtls_ssl_get_version_number(&conn->ssl);
    *pVersion = version == MBEDTLS_SSL_VERSION_TLS1_3 ? TLS13_MINORVERSION
                                                      : TLS12_MINORVERSION;
    end_call(conn);
    return OK;
}

sbyte4 SSL_getConnectionState(sbyte4 connectionInstance, sbyte4 *pState)
{
    pynano_conn *conn;
    sbyte4 status;

    if (pState == NULL) {
        return ERR_NULL_POINTER;
    }
    status = begin_any_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    *pState = conn->state == CONN_STATE_OPEN ? SSL_CONNECTION_OPEN : SSL_CONNECTION_NEGOTIATE;
    end_call(conn);
    return OK;
}

sbyte4 PYNANO_getVerifyDetails(sbyte4 connectionInstance, pynano_verify_details *details)
{
    pynano_conn *conn;
    sbyte4 status;

    if (details == NULL) {
        return ERR_NULL_POINTER;
    }
    status = begin_any_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    *details = conn->verify;
    end_call(conn);
    return OK;
}

sbyte4 PYNANO_getLastMbedtlsError(sbyte4 connectionInstance, sbyte4 *pMbedtlsError)
{
    pynano_conn *conn;
    sbyte4 status;

    if (pMbedtlsError == NULL) {
        return ERR_NULL_POINTER;
    }
    status = begin_any_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    *pMbedtlsError = conn->last_mbedtls_error;
    end_call(conn);
    return OK;
}

sbyte4 PYNANO_getPeerAlert(sbyte4 connectionInstance, sbyte4 *pAlertId)
{
    pynano_conn *conn;
    sbyte4 status;

    if (pAlertId == NULL) {
        return ERR_NULL_POINTER;
    }
    status = begin_any_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    *pAlertId = conn->peer_alert;
    end_call(conn);
    return OK;
}

sbyte4 PYNANO_getPeerCertificate(sbyte4 connectionInstance, ubyte4 index, ubyte *buffer,
                                 ubyte4 bufferSize, ubyte4 *pLength)
{
    pynano_conn *conn;
    const mbedtls_x509_crt *crt;
    sbyte4 status;
    ubyte4 i;

    if (pLength == NULL || (buffer == NULL && bufferSize != 0)) {
        return ERR_NULL_POINTER;
    }
    *pLength = 0;
    status = begin_open_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    crt = mbedtls_ssl_get_peer_cert(&conn->ssl);
    if (crt == NULL && conn->has_resumed_peer_cert) {
        crt = &conn->resumed_peer_cert;
    }
    for (i = 0; crt != NULL && i < index; i++) {
        crt = crt->next;
    }
    if (crt == NULL || crt->raw.len == 0) {
        end_call(conn);
        return ERR_INVALID_ARG;     /* no certificate at this index */
    }
    *pLength = (ubyte4) crt->raw.len;
    if (buffer != NULL) {
        memcpy(buffer, crt->raw.p, crt->raw.len < bufferSize ? crt->raw.len : bufferSize);
    }
    end_call(conn);
    return OK;
}

sbyte4 PYNANO_getAlpnProtocol(sbyte4 connectionInstance, char *buffer, ubyte4 bufferSize)
{
    pynano_conn *conn;
    const char *protocol;
    sbyte4 status;

    if (buffer == NULL || bufferSize == 0) {
        return ERR_NULL_POINTER;
    }
    buffer[0] = 0;
    status = begin_open_call(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    protocol = mbedtls_ssl_get_alpn_protocol(&conn->ssl);
    if (protocol != NULL) {
        mbedtls_snprintf(buffer, bufferSize, "%s", protocol);
    }
    end_call(conn);
    return OK;
}
