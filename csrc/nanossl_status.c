/*
 * nanossl_status.c - NanoSSL status names, the mapping from Mbed TLS errors
 * and X.509 verification flags to NanoSSL statuses, and status-to-alert
 * lookup. The original Mbed TLS code stays readable through
 * PYNANO_getLastMbedtlsError().
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "mbedtls/error.h"
#include "mbedtls/net_sockets.h"
#include "mbedtls/pk.h"

typedef struct status_name {
    MSTATUS status;
    const char *name;
} status_name;

static const status_name k_status_names[] = {
    { OK, "OK" },
    { ERR_TCP_SOCKET_CLOSED, "ERR_TCP_SOCKET_CLOSED" },
    { ERR_TCP_READ_ERROR, "ERR_TCP_READ_ERROR" },
    { ERR_TCP_READ_TIMEOUT, "ERR_TCP_READ_TIMEOUT" },
    { ERR_TCP_WRITE_ERROR, "ERR_TCP_WRITE_ERROR" },
    { ERR_NULL_POINTER, "ERR_NULL_POINTER" },
    { ERR_BAD_LENGTH, "ERR_BAD_LENGTH" },
    { ERR_INVALID_ARG, "ERR_INVALID_ARG" },
    { ERR_MEM_ALLOC_FAIL, "ERR_MEM_ALLOC_FAIL" },
    { ERR_BAD_KEY, "ERR_BAD_KEY" },
    { ERR_SSL_INIT_CONNECTION, "ERR_SSL_INIT_CONNECTION" },
    { ERR_SSL_BAD_ID, "ERR_SSL_BAD_ID" },
    { ERR_SSL_DISABLED, "ERR_SSL_DISABLED" },
    { ERR_SSL_CONFIG, "ERR_SSL_CONFIG" },
    { ERR_SSL_BAD_STATE, "ERR_SSL_BAD_STATE" },
    { ERR_SSL_NOT_OPEN, "ERR_SSL_NOT_OPEN" },
    { ERR_SSL_NO_CIPHER_MATCH, "ERR_SSL_NO_CIPHER_MATCH" },
    { ERR_SSL_MUTUAL_AUTHENTICATION_NOT_REQUESTED,
      "ERR_SSL_MUTUAL_AUTHENTICATION_NOT_REQUESTED" },
    { ERR_SSL_INVALID_SIGNATURE, "ERR_SSL_INVALID_SIGNATURE" },
    { ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE, "ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE" },
    { ERR_SSL_PROTOCOL_VERSION, "ERR_SSL_PROTOCOL_VERSION" },
    { ERR_SSL_FATAL_ALERT, "ERR_SSL_FATAL_ALERT" },
    { ERR_SSL_UNSUPPORTED_ALGORITHM, "ERR_SSL_UNSUPPORTED_ALGORITHM" },
    { ERR_CERT_INVALID_STRUCT, "ERR_CERT_INVALID_STRUCT" },
    { ERR_CERT_EXPIRED, "ERR_CERT_EXPIRED" },
    { ERR_CERT_BAD_COMMON_NAME, "ERR_CERT_BAD_COMMON_NAME" },
    { ERR_CERT_INVALID_SIGNATURE, "ERR_CERT_INVALID_SIGNATURE" },
    { ERR_CERT_CHAIN_NOT_VERIFIED, "ERR_CERT_CHAIN_NOT_VERIFIED" },
    { ERR_CERT_INVALID_KEYUSAGE, "ERR_CERT_INVALID_KEYUSAGE" },
    { ERR_CERT_START_TIME_VALID_IN_FUTURE, "ERR_CERT_START_TIME_VALID_IN_FUTURE" },
    { ERR_CERT_CHAIN_NO_TRUST_ANCHOR, "ERR_CERT_CHAIN_NO_TRUST_ANCHOR" },
    { PYNANO_ERR_INTERRUPTED, "PYNANO_ERR_INTERRUPTED" },
};

const char *DISPLAY_ERROR(MSTATUS status)
{
    size_t i;

    for (i = 0; i < sizeof(k_status_names) / sizeof(k_status_names[0]); i++) {
        if (k_status_names[i].status == status) {
            return k_status_names[i].name;
        }
    }
    return status > 0 ? "OK" : "ERR_UNKNOWN";
}

/* The order picks the status for a certificate with several faults: trust
 * first, because an untrusted chain makes the other facts unreliable. An
 * empty client certificate (BADCERT_MISSING) is reported as
 * ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE. */
MSTATUS pynano_status_from_x509_flags(uint32_t flags)
{
    if (flags == 0) {
        return OK;
    }
    if (flags & MBEDTLS_X509_BADCERT_MISSING) {
        return ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE;
    }
    if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
        return ERR_CERT_CHAIN_NO_TRUST_ANCHOR;
    }
    if (flags & (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCRL_EXPIRED)) {
        return ERR_CERT_EXPIRED;
    }
    if (flags & (MBEDTLS_X509_BADCERT_FUTURE | MBEDTLS_X509_BADCRL_FUTURE)) {
        return ERR_CERT_START_TIME_VALID_IN_FUTURE;
    }
    if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
        return ERR_CERT_BAD_COMMON_NAME;
    }
    if (flags & (MBEDTLS_X509_BADCERT_BAD_MD | MBEDTLS_X509_BADCERT_BAD_PK |
                 MBEDTLS_X509_BADCERT_BAD_KEY)) {
        return ERR_CERT_INVALID_SIGNATURE;
    }
    if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
                 MBEDTLS_X509_BADCERT_NS_CERT_TYPE)) {
        return ERR_CERT_INVALID_KEYUSAGE;
    }
    return ERR_CERT_CHAIN_NOT_VERIFIED;
}

MSTATUS pynano_status_from_mbedtls(const pynano_conn *conn, int error)
{
    switch (error) {
    case 0:
        return OK;
    case MBEDTLS_ERR_SSL_TIMEOUT:
        return ERR_TCP_READ_TIMEOUT;
    case MBEDTLS_ERR_SSL_CONN_EOF:
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
    case MBEDTLS_ERR_NET_CONN_RESET:
        return ERR_TCP_SOCKET_CLOSED;
    case MBEDTLS_ERR_NET_RECV_FAILED:
        return ERR_TCP_READ_ERROR;
    case MBEDTLS_ERR_NET_SEND_FAILED:
        return ERR_TCP_WRITE_ERROR;
    case MBEDTLS_ERR_SSL_ALLOC_FAILED:
    case MBEDTLS_ERR_X509_ALLOC_FAILED:
        return ERR_MEM_ALLOC_FAIL;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
        return ERR_SSL_FATAL_ALERT;
    case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
        return ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE;
    case MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION:
        return ERR_SSL_PROTOCOL_VERSION;
    case MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE:
        return (conn != NULL && conn->num_ciphers > 0) ? ERR_SSL_NO_CIPHER_MATCH
                                                       : ERR_SSL_FATAL_ALERT;
    case MBEDTLS_ERR_SSL_BAD_CERTIFICATE:
        return ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE;
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
        return conn != NULL ? pynano_status_from_x509_flags(conn->verify.mbedtls_flags)
                            : ERR_CERT_CHAIN_NOT_VERIFIED;
    case MBEDTLS_ERR_PK_BAD_INPUT_DATA:
    case MBEDTLS_ERR_SSL_BAD_CONFIG:
    case MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED:
    case MBEDTLS_ERR_SSL_CERTIFICATE_VERIFICATION_WITHOUT_HOSTNAME:
        return ERR_SSL_CONFIG;
    case MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE:
        return ERR_SSL_UNSUPPORTED_ALGORITHM;
    default:
        break;
    }
    if (error == MBEDTLS_ERR_SSL_INVALID_MAC || error == MBEDTLS_ERR_SSL_INVALID_RECORD ||
        error == MBEDTLS_ERR_SSL_DECODE_ERROR || error == MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE ||
        error == MBEDTLS_ERR_SSL_UNEXPECTED_RECORD || error == MBEDTLS_ERR_SSL_ILLEGAL_PARAMETER) {
        return ERR_SSL_FATAL_ALERT;
    }
    /* A peer certificate that does not parse (bad DER, an unknown critical
     * extension) surfaces as an X.509 error, high-level codes 0x2080-0x2980. */
    if (((-error) & 0xFF80) >= 0x2080 && ((-error) & 0xFF80) <= 0x2980) {
        return ERR_CERT_INVALID_STRUCT;
    }
    if (error == MBEDTLS_ERR_PK_INVALID_ALG || error == MBEDTLS_ERR_ECP_VERIFY_FAILED ||
        error == MBEDTLS_ERR_RSA_VERIFY_FAILED) {
        return ERR_SSL_INVALID_SIGNATURE;
    }
    return ERR_SSL_FATAL_ALERT;
}

void pynano_record_peer_alert(pynano_conn *conn, int mbedtls_error)
{
    const mbedtls_ssl_context *ssl = &conn->ssl;

    if (mbedtls_error == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE &&
        ssl->MBEDTLS_PRIVATE(in_msgtype) == MBEDTLS_SSL_MSG_ALERT &&
        ssl->MBEDTLS_PRIVATE(in_msg) != NULL) {
        conn->peer_alert = ssl->MBEDTLS_PRIVATE(in_msg)[1];
    }
}

sbyte4 pynano_alert_for_status(MSTATUS status, int tls_minor)
{
    switch (status) {
    case ERR_CERT_EXPIRED:
    case ERR_CERT_START_TIME_VALID_IN_FUTURE:
        return SSL_ALERT_CERTIFICATE_EXPIRED;
    case ERR_CERT_CHAIN_NO_TRUST_ANCHOR:
    case ERR_CERT_CHAIN_NOT_VERIFIED:
        return SSL_ALERT_UNKNOWN_CA;
    case ERR_CERT_BAD_COMMON_NAME:
    case ERR_CERT_INVALID_SIGNATURE:
    case ERR_CERT_INVALID_STRUCT:
        return SSL_ALERT_BAD_CERTIFICATE;
    case ERR_CERT_INVALID_KEYUSAGE:
        return SSL_ALERT_UNSUPPORTED_CERTIFICATE;
    case ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE:
        /* A missing client certificate: TLS 1.3 has its own alert. */
        return tls_minor == TLS13_MINORVERSION ? SSL_ALERT_CERTIFICATE_REQUIRED
                                               : SSL_ALERT_HANDSHAKE_FAILURE;
    case ERR_SSL_PROTOCOL_VERSION:
        return SSL_ALERT_PROTOCOL_VERSION;
    case ERR_SSL_INVALID_SIGNATURE:
        return SSL_ALERT_DECRYPT_ERROR;
    case ERR_TCP_SOCKET_CLOSED:
        return SSL_ALERT_CLOSE_NOTIFY;
    case ERR_MEM_ALLOC_FAIL:
        return SSL_ALERT_INTERNAL_ERROR;
    default:
        return status < 0 ? SSL_ALERT_HANDSHAKE_FAILURE : -1;
    }
}

sbyte4 SSL_lookupAlert(sbyte4 connectionInstance, sbyte4 lookupError,
                       sbyte4 *pRetAlertId, sbyte4 *pAlertClass)
{
    pynano_conn *conn;
    int minor = TLS13_MINORVERSION;
    sbyte4 alert;

    if (pRetAlertId == NULL || pAlertClass == NULL) {
        return ERR_NULL_POINTER;
    }
    conn = pynano_conn_acquire(connectionInstance);
    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    if (conn->ssl_ready &&
        mbedtls_ssl_get_version_number(&conn->ssl) == MBEDTLS_SSL_VERSION_TLS1_2) {
        minor = TLS12_MINORVERSION;
    }
    pthread_mutex_unlock(&conn->lock);
    pynano_conn_release(conn);

    alert = pynano_alert_for_status(lookupError, minor);
    if (alert < 0) {
        return ERR_INVALID_ARG;
    }
    *pRetAlertId = alert;
    *pAlertClass = alert == SSL_ALERT_CLOSE_NOTIFY ? SSLALERTLEVEL_WARNING
                                                   : SSLALERTLEVEL_FATAL;
    return OK;
}

void PYNANO_mbedtlsErrorString(sbyte4 mbedtlsError, char *buffer, ubyte4 bufferSize)
{
    const char *text = NULL;

    if (buffer == NULL || bufferSize == 0) {
        return;
    }
    /* The NET module is not compiled (pynano has its own transport), so
     * Mbed TLS has no text for the codes that transport returns. */
    switch (mbedtlsError) {
    case MBEDTLS_ERR_NET_CONN_RESET:
        text = "NET - Connection was reset by peer";
        break;
    case MBEDTLS_ERR_NET_RECV_FAILED:
        text = "NET - Reading information from the socket failed";
        break;
    case MBEDTLS_ERR_NET_SEND_FAILED:
        text = "NET - Sending information through the socket failed";
        break;
    default:
        break;
    }
    if (text != NULL) {
        mbedtls_snprintf(buffer, bufferSize, "%s", text);
        return;
    }
    mbedtls_strerror(mbedtlsError, buffer, bufferSize);
}

void pynano_debug(const char *format, ...)
{
    static int enabled = -1;
    va_list arguments;

    if (enabled < 0) {
        enabled = getenv("PYNANO_C_DEBUG") != NULL;
    }
    if (!enabled) {
        return;
    }
    va_start(arguments, format);
    fputs("pynano(C): ", stderr);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
}
