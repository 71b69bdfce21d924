/*
 * nanossl_session.c - session resumption: server tickets and session-ID
 * cache, client session info and ticket blobs.
 *
 * Server tickets are pynano's own format rather than Mbed TLS's ssl_ticket
 * module, because a TLS 1.3 ticket from that module carries no peer
 * certificate: a resumed mutual-auth connection could then neither report
 * the client's subject nor be held to the check the client once passed.
 *
 *   ticket = key name (4) | nonce (12) | AES-256-GCM(plaintext) | tag (16)
 *   plaintext = created (8, Unix s) | verify result (4) | cert length (4)
 *               | peer certificate DER | mbedtls_ssl_session_save() output
 *
 * Keys live in the certificate store, so a session resumes only under the
 * store, and so the trust points, that authenticated it. Each store keeps
 * the current key and the previous one; tickets under either are accepted
 * until they expire. PYNANO_CERT_STORE_rotateTicketKeys() retires both.
 *
 * The client blob handed to applications is versioned and MACed with a
 * per-process key, so a tampered, truncated, foreign or expired blob is
 * detected and the handshake falls back to a full one:
 *
 *   blob = "PYNS" | version (1) | created (8) | lifetime (4)
 *          | name length (4) | cert length (4) | session length (4)
 *          | server check (1) | server name | server certificate DER
 *          | mbedtls_ssl_session_save() output | HMAC-SHA256 (32)
 *
 * The name binds the blob to the server it came from. The certificate is
 * kept because a TLS 1.3 session restored by Mbed TLS has none. The server
 * check records what the full handshake verified, so a session made with
 * less checking (verification off, or a result overridden by the
 * invalid-certificate callback) is never offered on a connection that
 * checks more.
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mbedtls/constant_time.h"
#include "mbedtls/md.h"
#include "mbedtls/platform_util.h"
#include "mbedtls/ssl_cache.h"
#include "psa/crypto.h"

#define TICKET_NAME_LEN     4
#define TICKET_NONCE_LEN    12
#define TICKET_TAG_LEN      16
#define TICKET_HEADER_LEN   (TICKET_NAME_LEN + TICKET_NONCE_LEN)
#define TICKET_PLAIN_HEADER 16
#define BLOB_MAGIC          "PYNS"
#define BLOB_VERSION        2
#define BLOB_HEADER_LEN     (4 + 1 + 8 + 4 + 4 + 4 + 4 + 1)
#define BLOB_MAC_LEN        32
#define SESSION_SAVE_MAX    8192
#define CLIENT_SESSIONS     64

static uint64_t unix_now(void)
{
    return (uint64_t) time(NULL);
}

static void put_u32(unsigned char *p, uint32_t value)
{
    p[0] = (unsigned char) (value >> 24);
    p[1] = (unsigned char) (value >> 16);
    p[2] = (unsigned char) (value >> 8);
    p[3] = (unsigned char) value;
}

static uint32_t get_u32(const unsigned char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
}

static void put_u64(unsigned char *p, uint64_t value)
{
    put_u32(p, (uint32_t) (value >> 32));
    put_u32(p + 4, (uint32_t) value);
}

static uint64_t get_u64(const unsigned char *p)
{
    return ((uint64_t) get_u32(p) << 32) | get_u32(p + 4);
}

/* ---- server: ticket keys ----------------------------------------------- */

static void ticket_key_destroy(pynano_ticket_key *key)
{
    if (key->in_use) {
        psa_destroy_key(key->id);
    }
    mbedtls_platform_zeroize(key, sizeof(*key));
}

/* Make a new current key; the old current becomes the previous one, unless
 * retire_all, which drops both so every earlier ticket stops working. */
static int ticket_key_rotate(certStorePtr store, int retire_all)
{
    psa_key_attributes_t attributes = PSA_KEY_ATTRIBUTES_INIT;
    pynano_ticket_key fresh;

    memset(&fresh, 0, sizeof(fresh));
    psa_set_key_usage_flags(&attributes, PSA_KEY_USAGE_ENCRYPT | PSA_KEY_USAGE_DECRYPT);
    psa_set_key_algorithm(&attributes, PSA_ALG_GCM);
    psa_set_key_type(&attributes, PSA_KEY_TYPE_AES);
    psa_set_key_bits(&attributes, 256);
    if (psa_generate_key(&attributes, &fresh.id) != PSA_SUCCESS ||
        psa_generate_random(fresh.name, sizeof(fresh.name)) != PSA_SUCCESS) {
        psa_destroy_key(fresh.id);
        return -1;
    }
    fresh.in_use = 1;
    fresh.created = unix_now();

    ticket_key_destroy(&store->ticket_keys[1]);
    if (retire_all) {
        ticket_key_destroy(&store->ticket_keys[0]);
    } else {
        store->ticket_keys[1] = store->ticket_keys[0];
    }
    store->ticket_keys[0] = fresh;
    return 0;
}

/* Return the current key, rotating it once it is older than the ticket
 * lifetime. Called with the store lock held. */
static pynano_ticket_key *current_ticket_key(certStorePtr store)
{
    pynano_ticket_key *current = &store->ticket_keys[0];

    if (!current->in_use || unix_now() - current->created >= store->ticket_lifetime) {
        if (ticket_key_rotate(store, 0) != 0) {
            return NULL;
        }
    }
    return &store->ticket_keys[0];
}

void pynano_store_session_free(certStorePtr store)
{
    ticket_key_destroy(&store->ticket_keys[0]);
    ticket_key_destroy(&store->ticket_keys[1]);
    if (store->cache_ready) {
        mbedtls_ssl_cache_free(&store->cache);
        store->cache_ready = 0;
    }
}

MSTATUS PYNANO_CERT_STORE_rotateTicketKeys(certStorePtr pCertStore)
{
    int ret;

    if (pCertStore == NULL) {
        return ERR_NULL_POINTER;
    }
    pthread_mutex_lock(&pCertStore->lock);
    ret = ticket_key_rotate(pCertStore, 1);
    pthread_mutex_unlock(&pCertStore->lock);
    return ret == 0 ? OK : ERR_MEM_ALLOC_FAIL;
}

MSTATUS PYNANO_CERT_STORE_flushSessionCache(certStorePtr pCertStore)
{
    if (pCertStore == NULL) {
        return ERR_NULL_POINTER;
    }
    pthread_mutex_lock(&pCertStore->lock);
    if (pCertStore->cache_ready) {
        mbedtls_ssl_cache_free(&pCertStore->cache);
        mbedtls_ssl_cache_init(&pCertStore->cache);
        mbedtls_ssl_cache_set_max_entries(&pCertStore->cache, pynano_server_capacity());
        mbedtls_ssl_cache_set_timeout(&pCertStore->cache, (int) pCertStore->cache_timeout);
    }
    pthread_mutex_unlock(&pCertStore->lock);
    return OK;
}

MSTATUS PYNANO_CERT_STORE_setSessionLifetimes(certStorePtr pCertStore,
                                              ubyte4 ticketLifetimeSeconds,
                                              ubyte4 cacheTimeoutSeconds)
{
    /* RFC 8446 caps a TLS 1.3 ticket's lifetime at seven days. */
    if (pCertStore == NULL) {
        return ERR_NULL_POINTER;
    }
    if (ticketLifetimeSeconds == 0 || ticketLifetimeSeconds > 604800 ||
        cacheTimeoutSeconds == 0 || cacheTimeoutSeconds > 604800) {
        return ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&pCertStore->lock);
    pCertStore->ticket_lifetime = ticketLifetimeSeconds;
    pCertStore->cache_timeout = cacheTimeoutSeconds;
    if (pCertStore->cache_ready) {
        mbedtls_ssl_cache_set_timeout(&pCertStore->cache, (int) cacheTimeoutSeconds);
    }
    pthread_mutex_unlock(&pCertStore->lock);
    return OK;
}

/* ---- server: which sessions may resume ----------------------------------- */

/* Decide whether a stored session may resume on this connection, so that
 * resumption never skips a check the full handshake would make. */
static int session_acceptable(const pynano_conn *conn, const mbedtls_ssl_session *session,
                              int has_peer_cert, uint32_t verify_result, const char **reason)
{
    int version = session->tls_version == MBEDTLS_SSL_VERSION_TLS1_3 ? TLS13_MINORVERSION
                                                                   : TLS12_MINORVERSION;
    int i;

    if (version < conn->min_minor || version > conn->max_minor) {
        *reason = "its TLS version is outside this connection's range";
        return 0;
    }
    if (conn->num_ciphers > 0) {
        int listed = 0;

        for (i = 0; i < conn->num_ciphers; i++) {
            listed |= conn->ciphers[i] == session->ciphersuite;
        }
        if (!listed) {
            *reason = "its cipher suite is not enabled on this connection";
            return 0;
        }
    }
    if (!conn->is_server || (conn->flags & SSL_FLAG_NO_MUTUAL_AUTH_REQUEST)) {
        return 1;
    }
    if ((conn->flags & SSL_FLAG_REQUIRE_MUTUAL_AUTH) && !has_peer_cert) {
        *reason = "it has no client certificate and this connection requires one";
        return 0;
    }
    /* A certificate that passed only through the invalid-certificate
     * callback must meet the callback again in a full handshake. */
    if (has_peer_cert && verify_result != 0) {
        *reason = "its client certificate did not verify cleanly";
        return 0;
    }
    return 1;
}

/* ---- server: ticket callbacks ------------------------------------------- */

static int ticket_write(void *context, const mbedtls_ssl_session *session,
                        unsigned char *start, const unsigned char *end,
                        size_t *ticket_length, uint32_t *lifetime)
{
    pynano_conn *conn = context;
    certStorePtr store = conn->store;
    const mbedtls_x509_crt *peer = session->peer_cert;
    size_t cert_length = (peer != NULL) ? peer->raw.len : 0;
    size_t available = (size_t) (end - start);
    size_t saved_length = 0;
    size_t plain_length;
    size_t sealed_length = 0;
    unsigned char *plain;
    pynano_ticket_key *key;
    psa_status_t status;
    int ret;

    /* A ticket issued on a resumed TLS 1.3 connection carries the client
     * certificate that the resumed ticket carried. */
    if (peer == NULL && conn->has_resumed_peer_cert) {
        peer = &conn->resumed_peer_cert;
        cert_length = peer->raw.len;
    }
    mbedtls_ssl_session_save(session, NULL, 0, &saved_length);
    plain_length = TICKET_PLAIN_HEADER + cert_length + saved_length;
    if (available < TICKET_HEADER_LEN + plain_length + TICKET_TAG_LEN) {
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    }
    plain = malloc(plain_length);
    if (plain == NULL) {
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    }

    put_u64(plain, unix_now());
    put_u32(plain + 8, session->verify_result);
    put_u32(plain + 12, (uint32_t) cert_length);
    if (cert_length > 0) {
        memcpy(plain + TICKET_PLAIN_HEADER, peer->raw.p, cert_length);
    }
    ret = mbedtls_ssl_session_save(session, plain + TICKET_PLAIN_HEADER + cert_length,
                                   saved_length, &saved_length);
    if (ret != 0) {
        mbedtls_platform_zeroize(plain, plain_length);
        free(plain);
        return ret;
    }

    pthread_mutex_lock(&store->lock);
    key = current_ticket_key(store);
    if (key == NULL) {
        pthread_mutex_unlock(&store->lock);
        mbedtls_platform_zeroize(plain, plain_length);
        free(plain);
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    }
    memcpy(start, key->name, TICKET_NAME_LEN);
    status = psa_generate_random(start + TICKET_NAME_LEN, TICKET_NONCE_LEN);
    if (status == PSA_SUCCESS) {
        status = psa_aead_encrypt(key->id, PSA_ALG_GCM, start + TICKET_NAME_LEN, TICKET_NONCE_LEN,
                                  start, TICKET_NAME_LEN, plain, plain_length,
                                  start + TICKET_HEADER_LEN, available - TICKET_HEADER_LEN,
                                  &sealed_length);
    }
    *lifetime = store->ticket_lifetime;
    pthread_mutex_unlock(&store->lock);

    mbedtls_platform_zeroize(plain, plain_length);
    free(plain);
    if (status != PSA_SUCCESS) {
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    }
    *ticket_length = TICKET_HEADER_LEN + sealed_length;
    return 0;
}

/* Decrypt a ticket with the key named in it. Returns the plaintext length,
 * or -1 for an unknown key or a failed authentication. */
static long ticket_open(certStorePtr store, const unsigned char *ticket, size_t length,
                        unsigned char *plain, size_t plain_size)
{
    size_t plain_length = 0;
    psa_status_t status = PSA_ERROR_INVALID_SIGNATURE;
    int i;

    if (length < TICKET_HEADER_LEN + TICKET_TAG_LEN + TICKET_PLAIN_HEADER) {
        return -1;
    }
    pthread_mutex_lock(&store->lock);
    for (i = 0; i < 2; i++) {
        const pynano_ticket_key *key = &store->ticket_keys[i];

        if (key->in_use && memcmp(key->name, ticket, TICKET_NAME_LEN) == 0) {
            status = psa_aead_decrypt(key->id, PSA_ALG_GCM, ticket + TICKET_NAME_LEN,
                                      TICKET_NONCE_LEN, ticket, TICKET_NAME_LEN,
                                      ticket + TICKET_HEADER_LEN, length - TICKET_HEADER_LEN,
                                      plain, plain_size, &plain_length);
            break;
        }
    }
    pthread_mutex_unlock(&store->lock);
    return status == PSA_SUCCESS ? (long) plain_length : -1;
}

static int ticket_parse(void *context, mbedtls_ssl_session *session,
                        unsigned char *buffer, size_t length)
{
    pynano_conn *conn = context;
    unsigned char *plain;
    long plain_length;
    uint32_t verify_result;
    uint32_t cert_length;
    const char *reason = NULL;
    int ret = MBEDTLS_ERR_SSL_INVALID_MAC;

    plain = malloc(length);
    if (plain == NULL) {
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    }
    plain_length = ticket_open(conn->store, buffer, length, plain, length);
    if (plain_length < 0) {
        reason = "it is not from this store's current or previous key";
        goto exit;
    }
    if (unix_now() - get_u64(plain) >= conn->store->ticket_lifetime) {
        reason = "it has expired";
        ret = MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
        goto exit;
    }
    verify_result = get_u32(plain + 8);
    cert_length = get_u32(plain + 12);
    if ((size_t) TICKET_PLAIN_HEADER + cert_length > (size_t) plain_length) {
        reason = "it is malformed";
        goto exit;
    }
    ret = mbedtls_ssl_session_load(session, plain + TICKET_PLAIN_HEADER + cert_length,
                                   (size_t) plain_length - TICKET_PLAIN_HEADER - cert_length);
    if (ret != 0) {
        reason = "its session does not load";
        goto exit;
    }
    if (!session_acceptable(conn, session, cert_length > 0, verify_result, &reason)) {
        ret = MBEDTLS_ERR_SSL_INVALID_MAC;
        goto exit;
    }

    /* Keep the client certificate on the connection: a resumed TLS 1.3
     * session copies only ticket fields into the handshake. */
    mbedtls_x509_crt_free(&conn->resumed_peer_cert);
    mbedtls_x509_crt_init(&conn->resumed_peer_cert);
    conn->has_resumed_peer_cert = 0;
    if (cert_length > 0 &&
        mbedtls_x509_crt_parse_der(&conn->resumed_peer_cert, plain + TICKET_PLAIN_HEADER,
                                   cert_length) == 0) {
        conn->has_resumed_peer_cert = 1;
    }
    ret = 0;

exit:
    if (reason != NULL) {
        pynano_debug("instance %d: ticket not resumed because %s", conn->instance, reason);
    }
    mbedtls_platform_zeroize(plain, length);
    free(plain);
    return ret;
}

/* ---- server: session-ID cache (TLS 1.2) ---------------------------------- */

static int cache_get(void *context, unsigned char const *session_id, size_t id_length,
                     mbedtls_ssl_session *session)
{
    pynano_conn *conn = context;
    const char *reason = NULL;
    int ret;

    pthread_mutex_lock(&conn->store->lock);
    ret = mbedtls_ssl_cache_get(&conn->store->cache, session_id, id_length, session);
    pthread_mutex_unlock(&conn->store->lock);
    if (ret != 0) {
        return ret;
    }
    if (!session_acceptable(conn, session, session->peer_cert != NULL, session->verify_result,
                            &reason)) {
        pynano_debug("instance %d: cached session not resumed because %s", conn->instance, reason);
        return MBEDTLS_ERR_SSL_CACHE_ENTRY_NOT_FOUND;
    }
    return 0;
}

static int cache_set(void *context, unsigned char const *session_id, size_t id_length,
                     const mbedtls_ssl_session *session)
{
    pynano_conn *conn = context;
    int ret;

    pthread_mutex_lock(&conn->store->lock);
    ret = mbedtls_ssl_cache_set(&conn->store->cache, session_id, id_length, session);
    pthread_mutex_unlock(&conn->store->lock);
    return ret;
}

void pynano_session_configure_server(pynano_conn *conn)
{
    certStorePtr store = conn->store;

    pthread_mutex_lock(&store->lock);
    if (!store->cache_ready) {
        mbedtls_ssl_cache_init(&store->cache);
        mbedtls_ssl_cache_set_max_entries(&store->cache, pynano_server_capacity());
        mbedtls_ssl_cache_set_timeout(&store->cache, (int) store->cache_timeout);
        store->cache_ready = 1;
    }
    pthread_mutex_unlock(&store->lock);

    /* SSL_SET_NUM_TICKETS 0 means no tickets in either version: TLS 1.2
     * sessions then resume by session ID, through the cache. */
    if (conn->num_tickets != 0) {
        mbedtls_ssl_conf_session_tickets_cb(&conn->conf, ticket_write, ticket_parse, conn);
    }
    mbedtls_ssl_conf_session_cache(&conn->conf, conn, cache_get, cache_set);
    if (conn->num_tickets >= 0) {
        mbedtls_ssl_conf_new_session_tickets(&conn->conf, (uint16_t) conn->num_tickets);
    }
}

/* ---- client: blobs ------------------------------------------------------ */

static pthread_once_t g_blob_key_once = PTHREAD_ONCE_INIT;
static unsigned char g_blob_key[32];
static int g_blob_key_ready;

static void blob_key_init(void)
{
    g_blob_key_ready = psa_crypto_init() == PSA_SUCCESS &&
                       psa_generate_random(g_blob_key, sizeof(g_blob_key)) == PSA_SUCCESS;
}

static int blob_mac(const unsigned char *data, size_t length, unsigned char mac[BLOB_MAC_LEN])
{
    pthread_once(&g_blob_key_once, blob_key_init);
    if (!g_blob_key_ready) {
        return -1;
    }
    return mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), g_blob_key,
                           sizeof(g_blob_key), data, length, mac);
}

static uint32_t session_lifetime(const mbedtls_ssl_session *session)
{
    uint32_t lifetime = session->ticket_lifetime;

    return lifetime != 0 ? lifetime : 7200;
}

/* Copy the connection's current session. Mbed TLS 3.6 exports each session
 * only once, because TLS 1.3 exports one per ticket. pynano takes a fresh
 * snapshot for session info and for every blob, so it clears that mark. */
static int copy_session(pynano_conn *conn, mbedtls_ssl_session *out)
{
    if (conn->ssl.MBEDTLS_PRIVATE(session) != NULL) {
        conn->ssl.MBEDTLS_PRIVATE(session)->MBEDTLS_PRIVATE(exported) = 0;
    }
    return mbedtls_ssl_get_session(&conn->ssl, out);
}

/* Serialise conn's session into a new blob; the caller frees *blob. */
static MSTATUS session_blob_make(pynano_conn *conn, unsigned char **blob, size_t *blob_length)
{
    mbedtls_ssl_session session;
    const mbedtls_x509_crt *peer;
    size_t name_length = conn->has_hostname ? strlen(conn->hostname) : 0;
    size_t cert_length;
    size_t saved_length = 0;
    size_t body_length;
    unsigned char *out;
    unsigned char *p;
    int ret;

    mbedtls_ssl_session_init(&session);
    ret = copy_session(conn, &session);
    if (ret != 0) {
        mbedtls_ssl_session_free(&session);
        conn->last_mbedtls_error = ret;
        return ERR_SSL_BAD_STATE;
    }
    peer = session.peer_cert != NULL ? session.peer_cert
           : (conn->has_resumed_peer_cert ? &conn->resumed_peer_cert : NULL);
    cert_length = peer != NULL ? peer->raw.len : 0;
    mbedtls_ssl_session_save(&session, NULL, 0, &saved_length);
    body_length = BLOB_HEADER_LEN + name_length + cert_length + saved_length;
    out = malloc(body_length + BLOB_MAC_LEN);
    if (out == NULL) {
        mbedtls_ssl_session_free(&session);
        return ERR_MEM_ALLOC_FAIL;
    }

    memcpy(out, BLOB_MAGIC, 4);
    out[4] = BLOB_VERSION;
    put_u64(out + 5, unix_now());
    put_u32(out + 13, session_lifetime(&session));
    put_u32(out + 17, (uint32_t) name_length);
    put_u32(out + 21, (uint32_t) cert_length);
    put_u32(out + 25, (uint32_t) saved_length);
    out[29] = (unsigned char) conn->server_check;
    p = out + BLOB_HEADER_LEN;
    memcpy(p, conn->hostname, name_length);
    p += name_length;
    if (cert_length > 0) {
        memcpy(p, peer->raw.p, cert_length);
        p += cert_length;
    }
    ret = mbedtls_ssl_session_save(&session, p, saved_length, &saved_length);
    mbedtls_ssl_session_free(&session);
    if (ret != 0 || blob_mac(out, body_length, out + body_length) != 0) {
        mbedtls_platform_zeroize(out, body_length);
        free(out);
        return ERR_SSL_CONFIG;
    }
    *blob = out;
    *blob_length = body_length + BLOB_MAC_LEN;
    return OK;
}

/* The server checks a connection makes in a full handshake. */
static int required_server_check(const pynano_conn *conn)
{
    int check = 0;

    if (conn->verify_mode != PYNANO_VERIFY_NONE) {
        check |= PYNANO_SERVER_CHECK_CHAIN;
        if (conn->check_hostname && conn->has_hostname) {
            check |= PYNANO_SERVER_CHECK_HOSTNAME;
        }
    }
    return check;
}

void pynano_session_note_server_check(pynano_conn *conn)
{
    if (conn->session_reused) {
        conn->server_check = conn->offered_server_check;
        return;
    }
    conn->server_check = conn->verify_overridden ? 0 : required_server_check(conn);
}

/* Check a blob for this connection and load its session and the server
 * certificate; NULL reason means it may be used. */
static const char *session_blob_open(pynano_conn *conn, const unsigned char *blob, size_t length,
                                     mbedtls_ssl_session *session)
{
    unsigned char mac[BLOB_MAC_LEN];
    size_t name_length;
    size_t cert_length;
    size_t saved_length;
    const unsigned char *p;

    if (length < BLOB_HEADER_LEN + BLOB_MAC_LEN || memcmp(blob, BLOB_MAGIC, 4) != 0) {
        return "it is not a pynano session blob";
    }
    if (blob[4] != BLOB_VERSION) {
        return "its format version is not supported by this pynano";
    }
    name_length = get_u32(blob + 17);
    cert_length = get_u32(blob + 21);
    saved_length = get_u32(blob + 25);
    if (name_length > PYNANO_MAX_HOSTNAME || cert_length > SESSION_SAVE_MAX ||
        saved_length > SESSION_SAVE_MAX ||
        BLOB_HEADER_LEN + name_length + cert_length + saved_length + BLOB_MAC_LEN != length) {
        return "it is truncated or padded";
    }
    if (blob_mac(blob, length - BLOB_MAC_LEN, mac) != 0 ||
        mbedtls_ct_memcmp(mac, blob + length - BLOB_MAC_LEN, BLOB_MAC_LEN) != 0) {
        return "its MAC does not match (tampered, or from another process)";
    }
    if (unix_now() - get_u64(blob + 5) >= get_u32(blob + 13)) {
        return "it has expired";
    }
    if ((blob[29] & required_server_check(conn)) != required_server_check(conn)) {
        return "it was made with weaker server verification than this connection uses";
    }
    conn->offered_server_check = blob[29];
    p = blob + BLOB_HEADER_LEN;
    if (name_length != (conn->has_hostname ? strlen(conn->hostname) : 0) ||
        memcmp(p, conn->hostname, name_length) != 0) {
        return "it was made for another server name";
    }
    p += name_length;
    if (mbedtls_ssl_session_load(session, p + cert_length, saved_length) != 0) {
        return "its session does not load in this build";
    }
    if (session->endpoint != MBEDTLS_SSL_IS_CLIENT) {
        return "it is not a client session";
    }

    mbedtls_x509_crt_free(&conn->resumed_peer_cert);
    mbedtls_x509_crt_init(&conn->resumed_peer_cert);
    conn->has_resumed_peer_cert =
        cert_length > 0 && mbedtls_x509_crt_parse_der(&conn->resumed_peer_cert, p, cert_length) == 0;
    return NULL;
}

/* Load the session to offer, if any, into conn->ssl. */
void pynano_session_apply_client(pynano_conn *conn)
{
    mbedtls_ssl_session session;
    const char *reason;

    if (conn->resume_blob == NULL) {
        return;
    }
    mbedtls_ssl_session_init(&session);
    reason = session_blob_open(conn, conn->resume_blob, conn->resume_blob_length, &session);
    if (reason == NULL) {
        (void) session_acceptable(conn, &session, 1, 0, &reason);
    }
    if (reason == NULL && mbedtls_ssl_set_session(&conn->ssl, &session) != 0) {
        reason = "Mbed TLS refused it";
    }
    if (reason != NULL) {
        pynano_debug("instance %d: session not offered because %s; full handshake",
                     conn->instance, reason);
        mbedtls_x509_crt_free(&conn->resumed_peer_cert);
        mbedtls_x509_crt_init(&conn->resumed_peer_cert);
        conn->has_resumed_peer_cert = 0;
    }
    mbedtls_ssl_session_free(&session);
}

MSTATUS pynano_session_take_blob(pynano_conn *conn, const unsigned char *blob, size_t length)
{
    unsigned char *copy;

    if (length == 0 || length > 3 * SESSION_SAVE_MAX) {
        return ERR_BAD_LENGTH;
    }
    copy = malloc(length);
    if (copy == NULL) {
        return ERR_MEM_ALLOC_FAIL;
    }
    memcpy(copy, blob, length);
    pynano_session_forget_blob(conn);
    conn->resume_blob = copy;
    conn->resume_blob_length = length;
    return OK;
}

void pynano_session_forget_blob(pynano_conn *conn)
{
    if (conn->resume_blob != NULL) {
        mbedtls_platform_zeroize(conn->resume_blob, conn->resume_blob_length);
        free(conn->resume_blob);
        conn->resume_blob = NULL;
        conn->resume_blob_length = 0;
    }
}

/* ---- client: TLS 1.2 session info (NanoSSL's sessionId + masterSecret) ---- */

typedef struct client_session {
    unsigned char id[32];
    size_t id_length;
    unsigned char master[48];
    unsigned char *blob;
    size_t blob_length;
} client_session;

static pthread_mutex_t g_client_lock = PTHREAD_MUTEX_INITIALIZER;
static client_session g_client_sessions[CLIENT_SESSIONS];
static int g_client_next;

static void client_session_clear(client_session *entry)
{
    free(entry->blob);
    mbedtls_platform_zeroize(entry, sizeof(*entry));
}

/* Remember the blob behind a session ID and master secret, so SSL_connect
 * given only those two can offer the whole session. */
static void client_session_remember(const unsigned char *id, size_t id_length,
                                    const unsigned char master[48], unsigned char *blob,
                                    size_t blob_length)
{
    client_session *entry;
    int i;

    pthread_mutex_lock(&g_client_lock);
    entry = &g_client_sessions[g_client_next];
    for (i = 0; i < CLIENT_SESSIONS; i++) {
        if (g_client_sessions[i].id_length == id_length &&
            memcmp(g_client_sessions[i].id, id, id_length) == 0) {
            entry = &g_client_sessions[i];
            break;
        }
    }
    if (i == CLIENT_SESSIONS) {
        g_client_next = (g_client_next + 1) % CLIENT_SESSIONS;
    }
    client_session_clear(entry);
    memcpy(entry->id, id, id_length);
    entry->id_length = id_length;
    memcpy(entry->master, master, 48);
    entry->blob = blob;
    entry->blob_length = blob_length;
    pthread_mutex_unlock(&g_client_lock);
}

MSTATUS pynano_session_lookup_info(pynano_conn *conn, const unsigned char *id,
                                   size_t id_length, const unsigned char *master)
{
    MSTATUS status = ERR_INVALID_ARG;
    int i;

    pthread_mutex_lock(&g_client_lock);
    for (i = 0; i < CLIENT_SESSIONS; i++) {
        client_session *entry = &g_client_sessions[i];

        if (entry->id_length == id_length && id_length > 0 &&
            memcmp(entry->id, id, id_length) == 0 &&
            mbedtls_ct_memcmp(entry->master, master, 48) == 0) {
            status = pynano_session_take_blob(conn, entry->blob, entry->blob_length);
            break;
        }
    }
    pthread_mutex_unlock(&g_client_lock);
    if (status != OK) {
        pynano_debug("instance %d: the session ID is unknown to this process; full handshake",
                     conn->instance);
    }
    return status;
}

sbyte4 SSL_getClientSessionInfo(sbyte4 connectionInstance, ubyte *sessionIdLen,
                                ubyte *sessionId, ubyte *masterSecret)
{
    pynano_conn *conn;
    mbedtls_ssl_session session;
    unsigned char *blob = NULL;
    size_t blob_length = 0;
    sbyte4 status;

    if (sessionIdLen == NULL || sessionId == NULL || masterSecret == NULL) {
        return ERR_NULL_POINTER;
    }
    conn = pynano_conn_acquire(connectionInstance);
    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    if (conn->is_server || conn->state != CONN_STATE_OPEN ||
        mbedtls_ssl_get_version_number(&conn->ssl) != MBEDTLS_SSL_VERSION_TLS1_2) {
        /* Session ID and master secret exist in TLS 1.2 only. */
        pynano_conn_end_call(conn);
        return ERR_SSL_BAD_STATE;
    }

    mbedtls_ssl_session_init(&session);
    status = copy_session(conn, &session) == 0 ? OK : ERR_SSL_BAD_STATE;
    if (status == OK && session.id_len == 0 && session.ticket == NULL) {
        status = ERR_SSL_BAD_STATE;       /* the server made the session unresumable */
    }
    /* A server that issues a ticket may send an empty session ID (RFC 5077
     * allows it; OpenSSL and Mbed TLS do). The ticket resumes the session,
     * so a random ID serves as the application's handle for it. */
    if (status == OK && session.id_len == 0) {
        session.id_len = 32;
        if (psa_generate_random(session.id, session.id_len) != PSA_SUCCESS) {
            status = ERR_MEM_ALLOC_FAIL;
        }
    }
    if (status == OK) {
        status = session_blob_make(conn, &blob, &blob_length);
    }
    if (status == OK) {
        *sessionIdLen = (ubyte) session.id_len;
        memcpy(sessionId, session.id, session.id_len);
        memcpy(masterSecret, session.master, 48);
        client_session_remember(session.id, session.id_len, session.master, blob, blob_length);
    }
    mbedtls_ssl_session_free(&session);
    pynano_conn_end_call(conn);
    return status;
}

/* ---- client: tickets and blobs for applications -------------------------- */

static void server_info(const pynano_conn *conn, sbyte **info, ubyte4 *length)
{
    *info = (sbyte *) (conn->has_hostname ? conn->hostname : "");
    *length = (ubyte4) strlen(*info);
}

/* Hand the current session to the save-ticket callback, if one is set. */
void pynano_session_offer_to_app(pynano_conn *conn)
{
    unsigned char *blob = NULL;
    size_t blob_length = 0;
    sbyte *info;
    ubyte4 info_length;

    if (conn->save_ticket_callback == NULL) {
        return;
    }
    if (session_blob_make(conn, &blob, &blob_length) != OK) {
        return;
    }
    server_info(conn, &info, &info_length);
    conn->in_callback = 1;
    conn->save_ticket_callback(conn->instance, info, info_length, NULL, blob, (ubyte4) blob_length);
    conn->in_callback = 0;
    mbedtls_platform_zeroize(blob, blob_length);
    free(blob);
}

/* Ask the retrieve-ticket callback for a session to offer. */
void pynano_session_ask_app(pynano_conn *conn)
{
    ubyte *ticket = NULL;
    ubyte4 ticket_length = 0;
    intBoolean free_memory = 0;
    sbyte *info;
    ubyte4 info_length;
    sbyte4 status;

    if (conn->retrieve_ticket_callback == NULL || conn->resume_blob != NULL) {
        return;
    }
    server_info(conn, &info, &info_length);
    conn->in_callback = 1;
    status = conn->retrieve_ticket_callback(conn->instance, info, info_length, NULL, &ticket,
                                            &ticket_length, &free_memory);
    conn->in_callback = 0;
    if (status >= 0 && ticket != NULL && ticket_length > 0) {
        (void) pynano_session_take_blob(conn, ticket, ticket_length);
    }
    if (free_memory && ticket != NULL) {
        free(ticket);
    }
}

MSTATUS SSL_setClientSaveTicketCallback(sbyte4 connectionInstance,
                                        funcPtrClientSaveTicket callback)
{
    pynano_conn *conn;
    sbyte4 status = pynano_conn_begin_setting(connectionInstance, &conn);

    if (status != OK) {
        return status;
    }
    conn->save_ticket_callback = conn->is_server ? NULL : callback;
    status = conn->is_server ? ERR_SSL_CONFIG : OK;
    pynano_conn_end_call(conn);
    return status;
}

MSTATUS SSL_setClientRetrieveTicketCallback(sbyte4 connectionInstance,
                                            funcPtrClientRetrieveTicket callback)
{
    pynano_conn *conn;
    sbyte4 status = pynano_conn_begin_setting(connectionInstance, &conn);

    if (status != OK) {
        return status;
    }
    conn->retrieve_ticket_callback = conn->is_server ? NULL : callback;
    status = conn->is_server ? ERR_SSL_CONFIG : OK;
    pynano_conn_end_call(conn);
    return status;
}

sbyte4 PYNANO_getSessionBlob(sbyte4 connectionInstance, ubyte *buffer, ubyte4 bufferSize,
                             ubyte4 *pLength)
{
    pynano_conn *conn;
    unsigned char *blob = NULL;
    size_t blob_length = 0;
    sbyte4 status;

    if (pLength == NULL || (buffer == NULL && bufferSize != 0)) {
        return ERR_NULL_POINTER;
    }
    conn = pynano_conn_acquire(connectionInstance);
    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    status = (conn->is_server || conn->state != CONN_STATE_OPEN) ? ERR_SSL_BAD_STATE : OK;
    if (status == OK) {
        status = session_blob_make(conn, &blob, &blob_length);
    }
    if (status == OK) {
        *pLength = (ubyte4) blob_length;
        if (buffer != NULL) {
            memcpy(buffer, blob, blob_length < bufferSize ? blob_length : bufferSize);
        }
        mbedtls_platform_zeroize(blob, blob_length);
        free(blob);
    }
    pynano_conn_end_call(conn);
    return status;
}

sbyte4 PYNANO_setSessionBlob(sbyte4 connectionInstance, const ubyte *blob, ubyte4 length)
{
    pynano_conn *conn;
    sbyte4 status;

    if (blob == NULL) {
        return ERR_NULL_POINTER;
    }
    status = pynano_conn_begin_setting(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }
    status = conn->is_server ? ERR_SSL_CONFIG : pynano_session_take_blob(conn, blob, length);
    pynano_conn_end_call(conn);
    return status;
}

sbyte4 PYNANO_getSessionReused(sbyte4 connectionInstance, sbyte4 *pReused)
{
    pynano_conn *conn;

    if (pReused == NULL) {
        return ERR_NULL_POINTER;
    }
    conn = pynano_conn_acquire(connectionInstance);
    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    *pReused = conn->session_reused;
    pynano_conn_end_call(conn);
    return OK;
}

void pynano_session_client_free(void)
{
    int i;

    pthread_mutex_lock(&g_client_lock);
    for (i = 0; i < CLIENT_SESSIONS; i++) {
        client_session_clear(&g_client_sessions[i]);
    }
    pthread_mutex_unlock(&g_client_lock);
}
