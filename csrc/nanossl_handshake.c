/*
 * nanossl_handshake.c - connection creation, per-connection settings and
 * SSL_negotiateConnection: the Mbed TLS configuration built from the
 * connection's flags, store, cipher list and callback, and the handshake.
 *
 * Peer certificate decisions. Mbed TLS runs with authmode OPTIONAL whenever
 * the peer's certificate is checked, so it never fails a handshake on its
 * own. After each handshake step, once a verification result exists, this
 * file decides. A clean result continues. A failure, or a missing client
 * certificate that the flags require, goes to the invalid-certificate
 * callback if one is set, and fails the handshake otherwise. A failure sends
 * the matching alert before the next handshake message is processed, so a
 * rejected peer never gets application data.
 *
 * Server default when neither SSL_FLAG_REQUIRE_MUTUAL_AUTH nor
 * SSL_FLAG_NO_MUTUAL_AUTH_REQUEST is set (mutual-auth build): the server
 * sends a CertificateRequest, accepts a client that sends no certificate,
 * and verifies a certificate that is sent against the store's trust points.
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "mbedtls/error.h"
#include "mbedtls/platform_util.h"
#include "psa/crypto.h"
/* Internal Mbed TLS header for mbedtls_ssl_set_outbound_transform(). */
#include "ssl_misc.h"

/* ---- creation --------------------------------------------------------- */

static int is_socket(TCP_SOCKET fd)
{
    struct stat info;

    return fd >= 0 && fstat(fd, &info) == 0 && S_ISSOCK(info.st_mode);
}

static sbyte4 new_connection(int is_server, TCP_SOCKET fd, certStorePtr store)
{
    sbyte4 status;

    if (!is_socket(fd)) {
        return ERR_INVALID_ARG;
    }
    if (pynano_conn_new(is_server, fd, store, &status) == NULL) {
        return status;
    }
    pynano_debug("instance %d created (%s, fd %d)", status,
                 is_server ? "server" : "client", fd);
    return status;
}

sbyte4 SSL_acceptConnection(TCP_SOCKET tempSocket, certStorePtr pCertStore)
{
    return new_connection(1, tempSocket, pCertStore);
}

sbyte4 SSL_connect(TCP_SOCKET tempSocket, ubyte sessionIdLen, ubyte *sessionId,
                   ubyte *masterSecret, const sbyte *dnsName,
                   certStorePtr certStore)
{
    sbyte4 instance;
    pynano_conn *conn;
    size_t name_length = 0;

    if (sessionIdLen > 32 || (sessionIdLen > 0 && (sessionId == NULL || masterSecret == NULL))) {
        return ERR_INVALID_ARG;
    }
    if (dnsName != NULL) {
        name_length = strlen(dnsName);
        if (name_length > PYNANO_MAX_HOSTNAME) {
            return ERR_BAD_LENGTH;
        }
    }

    instance = new_connection(0, tempSocket, certStore);
    if (instance < 0) {
        return instance;
    }
    conn = pynano_conn_acquire(instance);
    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    if (dnsName != NULL && name_length > 0) {
        memcpy(conn->hostname, dnsName, name_length + 1);
        conn->has_hostname = 1;
    }
    /* An unknown session falls back to a full handshake, as in NanoSSL. */
    if (sessionIdLen > 0) {
        (void) pynano_session_lookup_info(conn, sessionId, sessionIdLen, masterSecret);
    }
    pthread_mutex_unlock(&conn->lock);
    pynano_conn_release(conn);
    return instance;
}

/* ---- settings --------------------------------------------------------- */

sbyte4 pynano_conn_begin_setting(sbyte4 instance, pynano_conn **out)
{
    pynano_conn *conn = pynano_conn_acquire(instance);

    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    if (conn->state != CONN_STATE_CREATED) {
        pthread_mutex_unlock(&conn->lock);
        pynano_conn_release(conn);
        return ERR_SSL_BAD_STATE;
    }
    *out = conn;
    return OK;
}

void pynano_conn_end_call(pynano_conn *conn)
{
    pthread_mutex_unlock(&conn->lock);
    pynano_conn_release(conn);
}

sbyte4 SSL_getSessionFlags(sbyte4 connectionInstance, ubyte4 *pRetFlagsSSL)
{
    pynano_conn *conn;

    if (pRetFlagsSSL == NULL) {
        return ERR_NULL_POINTER;
    }
    conn = pynano_conn_acquire(connectionInstance);
    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    *pRetFlagsSSL = conn->flags;
    pynano_conn_end_call(conn);
    return OK;
}

sbyte4 SSL_setSessionFlags(sbyte4 connectionInstance, ubyte4 flagsSSL)
{
    pynano_conn *conn;
    sbyte4 status;

#ifndef __ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__
    if (flagsSSL & SSL_FLAG_REQUIRE_MUTUAL_AUTH) {
        return ERR_SSL_DISABLED;
    }
#endif
    status = pynano_conn_begin_setting(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    conn->flags = flagsSSL;
    pynano_conn_end_call(conn);
    return OK;
}

MSTATUS SSL_setInvalidCertCallback(sbyte4 connectionInstance,
                                   funcPtrInvalidCertCallback callback)
{
    pynano_conn *conn;
    sbyte4 status = pynano_conn_begin_setting(connectionInstance, &conn);

    if (status != OK) {
        return status;
    }
    conn->invalid_cert_callback = callback;
    pynano_conn_end_call(conn);
    return OK;
}

sbyte4 SSL_setServerNameIndication(sbyte4 connectionInstance, const char *serverName)
{
    pynano_conn *conn;
    size_t length;
    sbyte4 status;

    if (serverName == NULL) {
        return ERR_NULL_POINTER;
    }
    length = strlen(serverName);
    if (length == 0 || length > PYNANO_MAX_HOSTNAME) {
        return ERR_BAD_LENGTH;
    }
    status = pynano_conn_begin_setting(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    if (conn->is_server) {
        pynano_conn_end_call(conn);
        return ERR_SSL_CONFIG;
    }
    memcpy(conn->hostname, serverName, length + 1);
    conn->has_hostname = 1;
    pynano_conn_end_call(conn);
    return OK;
}

static sbyte4 minor_from_value(uintptr_t value)
{
    if (value == TLS12_MINORVERSION || value == TLS13_MINORVERSION) {
        return (sbyte4) value;
    }
    if (value <= TLS11_MINORVERSION) {
        return ERR_SSL_PROTOCOL_VERSION;   /* not compiled: TLS 1.2 is the floor */
    }
    return ERR_INVALID_ARG;
}

/* Timeouts apply to every later call, so they may change at any time. */
static sbyte4 set_timeout(sbyte4 instance, ubyte4 setting, ubyte4 milliseconds)
{
    pynano_conn *conn = pynano_conn_acquire(instance);

    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    if (setting == SSL_SET_RECV_TIMEOUT) {
        conn->recv_timeout_ms = milliseconds;
    } else if (setting == PYNANO_SSL_SET_SEND_TIMEOUT) {
        conn->send_timeout_ms = milliseconds;
    } else {
        conn->handshake_timeout_ms = milliseconds;
    }
    pynano_conn_end_call(conn);
    return OK;
}

sbyte4 SSL_ioctl(sbyte4 connectionInstance, ubyte4 setting, void *value)
{
    pynano_conn *conn;
    uintptr_t number = (uintptr_t) value;
    sbyte4 status;
    sbyte4 minor;

    if (setting == SSL_SET_RECV_TIMEOUT || setting == PYNANO_SSL_SET_SEND_TIMEOUT ||
        setting == PYNANO_SSL_SET_HANDSHAKE_TIMEOUT) {
        return set_timeout(connectionInstance, setting, (ubyte4) number);
    }
    status = pynano_conn_begin_setting(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    switch (setting) {
    case SSL_SET_VERSION:
    case SSL_SET_MINIMUM_VERSION:
        minor = minor_from_value(number);
        if (minor < 0) {
            status = minor;
            break;
        }
        conn->min_minor = minor;
        if (setting == SSL_SET_VERSION) {
            conn->max_minor = minor;
        } else if (conn->max_minor < minor) {
            conn->max_minor = minor;
        }
        break;
    case SSL_SET_NUM_TICKETS:
        if (number > 16) {
            status = ERR_INVALID_ARG;
            break;
        }
        conn->num_tickets = (int) number;
        break;
    case PYNANO_SSL_SET_CHECK_HOSTNAME:
        conn->check_hostname = number != 0;
        break;
    case PYNANO_SSL_SET_VERIFY_MODE:
        if (number > PYNANO_VERIFY_REQUIRED) {
            status = ERR_INVALID_ARG;
            break;
        }
        conn->verify_mode = (int) number;
        break;
    default:
        status = ERR_INVALID_ARG;
        break;
    }
    pynano_conn_end_call(conn);
    return status;
}

sbyte4 PYNANO_setAlpnProtocols(sbyte4 connectionInstance, const char *protocols,
                               ubyte4 length)
{
    pynano_conn *conn;
    sbyte4 status;
    ubyte4 offset = 0;
    int count = 0;

    if (protocols == NULL) {
        return ERR_NULL_POINTER;
    }
    if (length == 0 || length > PYNANO_ALPN_BUFFER || protocols[length - 1] != 0) {
        return ERR_BAD_LENGTH;
    }
    status = pynano_conn_begin_setting(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    memcpy(conn->alpn_storage, protocols, length);
    while (offset < length && conn->alpn_storage[offset] != 0) {
        size_t name_length = strlen(conn->alpn_storage + offset);

        if (count == PYNANO_MAX_ALPN || name_length > 255) {
            status = ERR_BAD_LENGTH;
            break;
        }
        conn->alpn_list[count++] = conn->alpn_storage + offset;
        offset += (ubyte4) name_length + 1;
    }
    conn->alpn_list[status == OK ? count : 0] = NULL;
    pynano_conn_end_call(conn);
    return status;
}

/* ---- verification ----------------------------------------------------- */

static void format_time(char out[20], const mbedtls_x509_time *time)
{
    mbedtls_snprintf(out, 20, "%04d-%02d-%02d %02d:%02d:%02d", time->year, time->mon,
                     time->day, time->hour, time->min, time->sec);
}

/* Mbed TLS calls this for each certificate of the verified chain, from the
 * trust anchor down to the peer's own (depth 0). It records the flags and
 * the topmost failing certificate; the decision is taken after the step. */
static int record_verification(void *context, mbedtls_x509_crt *crt, int depth,
                               uint32_t *flags)
{
    pynano_conn *conn = context;
    pynano_verify_details *details = &conn->verify;

    if (*flags == 0) {
        return 0;
    }
    details->mbedtls_flags |= *flags;
    if (details->depth < 0) {
        details->depth = depth;
        mbedtls_x509_dn_gets(details->subject, sizeof(details->subject), &crt->subject);
        mbedtls_x509_dn_gets(details->issuer, sizeof(details->issuer), &crt->issuer);
        format_time(details->not_before, &crt->valid_from);
        format_time(details->not_after, &crt->valid_to);
    }
    return 0;
}

static int negotiated_minor(const pynano_conn *conn)
{
    int version = mbedtls_ssl_get_version_number(&conn->ssl);

    return version == MBEDTLS_SSL_VERSION_TLS1_3 ? TLS13_MINORVERSION : TLS12_MINORVERSION;
}

/* Switch a TLS 1.3 server to the application keys as soon as it has sent
 * its Finished. The client reads with those keys from then on (RFC 8446
 * section 4.4.4), but Mbed TLS 3.6.6 switches only at wrap-up, so an alert
 * about the client's certificate, its own or ours, arrived unreadable
 * (bad_record_mac at the client). Nothing else is sent in between, and the
 * switch at wrap-up then installs the same keys again. */
static void use_tls13_server_application_keys(pynano_conn *conn)
{
    mbedtls_ssl_context *ssl = &conn->ssl;
    mbedtls_ssl_transform *application = ssl->MBEDTLS_PRIVATE(transform_application);

    if (conn->is_server && application != NULL && ssl->MBEDTLS_PRIVATE(transform_out) != application &&
        !mbedtls_ssl_is_handshake_over(ssl)) {
        mbedtls_ssl_set_outbound_transform(ssl, application);
    }
}

/* Make a TLS 1.3 client's alert go out under its handshake keys. While it
 * reads the server's certificate, Mbed TLS 3.6.6 still writes plaintext,
 * though RFC 8446 section 5 has it use the handshake keys, so an RFC-strict
 * server could not read the alert. It is done only when pynano sends the
 * alert, because the compatibility-mode ChangeCipherSpec that Mbed TLS
 * sends later must stay plaintext.
 * NOTE: alerts that Mbed TLS sends by itself at this point stay plaintext. */
static void use_tls13_client_alert_keys(pynano_conn *conn)
{
    mbedtls_ssl_context *ssl = &conn->ssl;
    mbedtls_ssl_handshake_params *handshake = ssl->MBEDTLS_PRIVATE(handshake);

    if (!conn->is_server && handshake != NULL && handshake->transform_handshake != NULL &&
        ssl->MBEDTLS_PRIVATE(transform_out) == NULL) {
        mbedtls_ssl_set_outbound_transform(ssl, handshake->transform_handshake);
    }
}

static MSTATUS reject_peer(pynano_conn *conn, MSTATUS status)
{
    sbyte4 alert = pynano_alert_for_status(status, negotiated_minor(conn));

    if (alert < 0 || alert == SSL_ALERT_CLOSE_NOTIFY) {
        alert = SSL_ALERT_HANDSHAKE_FAILURE;
    }
    if (negotiated_minor(conn) == TLS13_MINORVERSION) {
        use_tls13_client_alert_keys(conn);
    }
    mbedtls_ssl_send_alert_message(&conn->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                   (unsigned char) alert);
    pynano_debug("instance %d rejected the peer certificate: %s, alert %d",
                 conn->instance, DISPLAY_ERROR(status), alert);
    return status;
}

/* Decide on the peer's certificate once Mbed TLS has a verification result
 * for it. Returns OK to continue the handshake, or the failing status. */
static MSTATUS decide_peer_certificate(pynano_conn *conn)
{
    uint32_t result = mbedtls_ssl_get_verify_result(&conn->ssl);
    int certificate_required;
    MSTATUS status;

    if (conn->verify_decided || result == 0xFFFFFFFF) {
        return OK;
    }
    conn->verify_decided = 1;
    if (!conn->check_hostname) {
        result &= ~(uint32_t) MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
    if (result == 0 || result == MBEDTLS_X509_BADCERT_SKIP_VERIFY) {
        return OK;
    }

    certificate_required = !conn->is_server || (conn->flags & SSL_FLAG_REQUIRE_MUTUAL_AUTH);
    if (result == MBEDTLS_X509_BADCERT_MISSING && !certificate_required) {
        return OK;
    }
    if (result == MBEDTLS_X509_BADCERT_MISSING) {
        conn->verify.depth = -1;
    }
    conn->verify.mbedtls_flags |= result;
    status = pynano_status_from_x509_flags(result);
    conn->verify.status = status;

    if (conn->invalid_cert_callback != NULL) {
        MSTATUS verdict;

        conn->in_callback = 1;
        verdict = conn->invalid_cert_callback(conn->instance, status);
        conn->in_callback = 0;

        /* The callback may have closed its own connection; the handshake
         * cannot go on then, whatever the verdict. */
        if (conn->closing) {
            return reject_peer(conn, ERR_SSL_BAD_ID);
        }
        if (verdict >= 0) {
            pynano_debug("instance %d: callback accepted %s", conn->instance,
                         DISPLAY_ERROR(status));
            conn->verify_overridden = 1;
            return OK;
        }
        status = verdict;
    }
    return reject_peer(conn, status);
}

/* ---- negotiation ------------------------------------------------------ */

static int authmode_for(const pynano_conn *conn)
{
    if (conn->is_server) {
#ifdef __ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__
        if (conn->flags & SSL_FLAG_NO_MUTUAL_AUTH_REQUEST) {
            return MBEDTLS_SSL_VERIFY_NONE;
        }
        return MBEDTLS_SSL_VERIFY_OPTIONAL;
#else
        return MBEDTLS_SSL_VERIFY_NONE;
#endif
    }
    return conn->verify_mode == PYNANO_VERIFY_NONE ? MBEDTLS_SSL_VERIFY_NONE
                                                   : MBEDTLS_SSL_VERIFY_OPTIONAL;
}

static mbedtls_ssl_protocol_version version_from_minor(int minor)
{
    return minor == TLS13_MINORVERSION ? MBEDTLS_SSL_VERSION_TLS1_3
                                       : MBEDTLS_SSL_VERSION_TLS1_2;
}

/* Narrow the version range to the versions the selected suites can use:
 * Mbed TLS would otherwise offer TLS 1.3 with no TLS 1.3 suite. */
static MSTATUS fit_versions_to_ciphers(pynano_conn *conn, int *min_minor, int *max_minor)
{
    int has12 = 0;
    int has13 = 0;
    int i;

    *min_minor = conn->min_minor;
    *max_minor = conn->max_minor;
    if (conn->num_ciphers == 0) {
        return OK;
    }
    for (i = 0; i < conn->num_ciphers; i++) {
        if (PYNANO_cipherMinorVersion((ubyte2) conn->ciphers[i]) == TLS13_MINORVERSION) {
            has13 = 1;
        } else {
            has12 = 1;
        }
    }
    if (!has13 && *max_minor == TLS13_MINORVERSION) {
        *max_minor = TLS12_MINORVERSION;
    }
    if (!has12 && *min_minor == TLS12_MINORVERSION) {
        *min_minor = TLS13_MINORVERSION;
    }
    return *min_minor <= *max_minor ? OK : ERR_SSL_NO_CIPHER_MATCH;
}

static MSTATUS configure_identities(pynano_conn *conn)
{
    certStorePtr store = conn->store;
    ubyte4 i;

#ifdef __ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__
    if (!conn->is_server && (conn->flags & SSL_FLAG_NO_MUTUAL_AUTH_REPLY)) {
        return OK;          /* reply to a CertificateRequest with an empty Certificate */
    }
#else
    if (!conn->is_server) {
        return OK;
    }
#endif
    for (i = 0; i < store->num_identities; i++) {
        if (mbedtls_ssl_conf_own_cert(&conn->conf, &store->identities[i].chain,
                                      &store->identities[i].key) != 0) {
            return ERR_MEM_ALLOC_FAIL;
        }
    }
    return OK;
}

/* Build conn->conf and conn->ssl from the connection's settings. */
static MSTATUS setup_tls(pynano_conn *conn)
{
    int endpoint = conn->is_server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT;
    int min_minor;
    int max_minor;
    MSTATUS status;
    int ret;

    mbedtls_ssl_config_init(&conn->conf);
    mbedtls_ssl_init(&conn->ssl);
    conn->ssl_ready = 1;

    ret = mbedtls_ssl_config_defaults(&conn->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) {
        conn->last_mbedtls_error = ret;
        return ERR_SSL_CONFIG;
    }
    mbedtls_ssl_conf_rng(&conn->conf, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);

    status = fit_versions_to_ciphers(conn, &min_minor, &max_minor);
    if (status != OK) {
        return status;
    }
    mbedtls_ssl_conf_min_tls_version(&conn->conf, version_from_minor(min_minor));
    mbedtls_ssl_conf_max_tls_version(&conn->conf, version_from_minor(max_minor));
    if (conn->num_ciphers > 0) {
        mbedtls_ssl_conf_ciphersuites(&conn->conf, conn->ciphers);
    }

    if (conn->is_server && (conn->store == NULL || conn->store->num_identities == 0)) {
        return ERR_SSL_CONFIG;      /* a server cannot authenticate without one */
    }
    if (conn->store != NULL) {
        status = configure_identities(conn);
        if (status != OK) {
            return status;
        }
        if (conn->store->num_trust_points > 0) {
            mbedtls_ssl_conf_ca_chain(&conn->conf, &conn->store->trust_points, NULL);
        }
    }
    mbedtls_ssl_conf_authmode(&conn->conf, authmode_for(conn));
    mbedtls_ssl_conf_verify(&conn->conf, record_verification, conn);
    mbedtls_ssl_conf_read_timeout(&conn->conf, conn->recv_timeout_ms);
    if (conn->alpn_list[0] != NULL) {
        mbedtls_ssl_conf_alpn_protocols(&conn->conf, conn->alpn_list);
    }
    if (conn->is_server) {
        pynano_session_configure_server(conn);
    } else if (conn->save_ticket_callback != NULL) {
        /* Without this, Mbed TLS 3.6 reads TLS 1.3 tickets silently. */
        mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
            &conn->conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
    }

    ret = mbedtls_ssl_setup(&conn->ssl, &conn->conf);
    if (ret != 0) {
        conn->last_mbedtls_error = ret;
        return pynano_status_from_mbedtls(conn, ret);
    }
    if (!conn->is_server) {
        /* Without a name, Mbed TLS 3.6 refuses to verify; NULL states on
         * purpose that no host name check is wanted. */
        ret = mbedtls_ssl_set_hostname(&conn->ssl, conn->has_hostname ? conn->hostname : NULL);
        if (ret != 0) {
            conn->last_mbedtls_error = ret;
            return ERR_SSL_CONFIG;
        }
        pynano_session_ask_app(conn);
        pynano_session_apply_client(conn);
    }
    pynano_io_attach(conn);
    return OK;
}

void pynano_conn_free_tls(pynano_conn *conn)
{
    if (conn->ssl_ready) {
        mbedtls_ssl_free(&conn->ssl);
        mbedtls_ssl_config_free(&conn->conf);
        conn->ssl_ready = 0;
    }
}

/* Map a failed handshake step to the status returned to the caller. */
static MSTATUS handshake_failure_status(pynano_conn *conn, int ret)
{
    conn->last_mbedtls_error = ret;
    pynano_record_peer_alert(conn, ret);
    if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE &&
        conn->peer_alert == SSL_ALERT_HANDSHAKE_FAILURE && conn->num_ciphers > 0) {
        return ERR_SSL_NO_CIPHER_MATCH;
    }
    return pynano_status_from_mbedtls(conn, ret);
}

/* Record whether this handshake resumes a session, while Mbed TLS still
 * has the handshake state that records it. */
static void note_resumption(pynano_conn *conn)
{
    const mbedtls_ssl_handshake_params *handshake = conn->ssl.MBEDTLS_PRIVATE(handshake);

    if (handshake == NULL) {
        return;
    }
    if (mbedtls_ssl_get_version_number(&conn->ssl) == MBEDTLS_SSL_VERSION_TLS1_3) {
        conn->session_reused = mbedtls_ssl_tls13_key_exchange_mode_with_psk(&conn->ssl);
    } else {
        conn->session_reused = handshake->resume != 0;
    }
}

static MSTATUS run_handshake(pynano_conn *conn)
{
    for (;;) {
        int ret;
        MSTATUS status;

        if (mbedtls_ssl_is_handshake_over(&conn->ssl)) {
            return OK;
        }
        ret = mbedtls_ssl_handshake_step(&conn->ssl);
        if (ret == MBEDTLS_ERR_SSL_TIMEOUT && conn->io_interrupted) {
            conn->io_interrupted = 0;
            return PYNANO_ERR_INTERRUPTED;
        }
        if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
            pynano_session_offer_to_app(conn);
            continue;
        }
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
            continue;
        }
        if (ret != 0) {
            return handshake_failure_status(conn, ret);
        }
        note_resumption(conn);
        if (mbedtls_ssl_get_version_number(&conn->ssl) == MBEDTLS_SSL_VERSION_TLS1_3) {
            use_tls13_server_application_keys(conn);
        }
        status = decide_peer_certificate(conn);
        if (status != OK) {
            return status;
        }
    }
}

sbyte4 SSL_negotiateConnection(sbyte4 connectionInstance)
{
    pynano_conn *conn = pynano_conn_acquire(connectionInstance);
    MSTATUS status;

    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    /* The lock is recursive for callbacks; a callback must not re-enter the
     * handshake that is calling it. */
    if (conn->in_callback ||
        (conn->state != CONN_STATE_CREATED && conn->state != CONN_STATE_NEGOTIATE)) {
        pynano_conn_end_call(conn);
        return ERR_SSL_BAD_STATE;
    }

    if (conn->state == CONN_STATE_CREATED) {
        status = setup_tls(conn);
        if (status != OK) {
            conn->state = CONN_STATE_FAILED;
            pynano_conn_end_call(conn);
            return status;
        }
        conn->state = CONN_STATE_NEGOTIATE;
        if (conn->handshake_timeout_ms > 0) {
            conn->io_deadline_ms = pynano_now_ms() + conn->handshake_timeout_ms;
        }
    }

    status = run_handshake(conn);
    if (status == PYNANO_ERR_INTERRUPTED) {
        pynano_conn_end_call(conn);          /* still negotiating: the caller calls again */
        return status;
    }
    conn->io_deadline_ms = 0;
    conn->state = status == OK ? CONN_STATE_OPEN : CONN_STATE_FAILED;
    if (status == OK && !conn->is_server) {
        pynano_session_note_server_check(conn);
    }
    /* A TLS 1.2 session is complete now; TLS 1.3 tickets come later. */
    if (status == OK && !conn->is_server &&
        mbedtls_ssl_get_version_number(&conn->ssl) == MBEDTLS_SSL_VERSION_TLS1_2) {
        pynano_session_offer_to_app(conn);
    }
    pynano_buffers_release(conn);
    pynano_debug("instance %d handshake: %s", conn->instance, DISPLAY_ERROR(status));
    pynano_conn_end_call(conn);
    return status;
}
