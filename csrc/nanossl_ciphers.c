/*
 * nanossl_ciphers.c - cipher suites: what this build supports, and
 * SSL_enableCiphers, the per-connection allow list of IANA suite ids.
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <string.h>

#include "mbedtls/ssl_ciphersuites.h"

static int build_supports(int id)
{
    const int *supported = mbedtls_ssl_list_ciphersuites();

    for (; *supported != 0; supported++) {
        if (*supported == id) {
            return 1;
        }
    }
    return 0;
}

sbyte4 PYNANO_listCiphers(ubyte2 *ids, sbyte4 maxIds)
{
    const int *supported = mbedtls_ssl_list_ciphersuites();
    sbyte4 count = 0;

    if (ids == NULL || maxIds < 0) {
        return ERR_NULL_POINTER;
    }
    for (; *supported != 0 && count < maxIds; supported++) {
        ids[count++] = (ubyte2) *supported;
    }
    return count;
}

const char *PYNANO_cipherMbedtlsName(ubyte2 cipherId)
{
    if (!build_supports(cipherId)) {
        return NULL;
    }
    return mbedtls_ssl_get_ciphersuite_name(cipherId);
}

sbyte4 PYNANO_cipherMinorVersion(ubyte2 cipherId)
{
    const mbedtls_ssl_ciphersuite_t *suite = mbedtls_ssl_ciphersuite_from_id(cipherId);

    if (suite == NULL) {
        return 0;
    }
    return suite->MBEDTLS_PRIVATE(min_tls_version) == MBEDTLS_SSL_VERSION_TLS1_3
           ? TLS13_MINORVERSION : TLS12_MINORVERSION;
}

sbyte4 SSL_enableCiphers(sbyte4 connectionInstance, const ubyte2 *pCipherSuiteList,
                         ubyte4 listLength)
{
#ifdef __ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__
    pynano_conn *conn;
    sbyte4 status;
    ubyte4 i;
    int count = 0;
    int selected[PYNANO_MAX_CIPHERS];

    if (pCipherSuiteList == NULL && listLength != 0) {
        return ERR_NULL_POINTER;
    }
    status = pynano_conn_begin_setting(connectionInstance, &conn);
    if (status != OK) {
        return status;
    }

    /* Unsupported ids are skipped, as NanoSSL does, so one list can serve
     * builds with different suites compiled in. The new list is built aside
     * so that a call that fails leaves the earlier restriction in place. */
    for (i = 0; i < listLength && count < PYNANO_MAX_CIPHERS; i++) {
        int id = pCipherSuiteList[i];
        int j;
        int duplicate = 0;

        if (!build_supports(id)) {
            pynano_debug("instance %d: suite 0x%04X not in this build, skipped",
                         connectionInstance, id);
            continue;
        }
        for (j = 0; j < count; j++) {
            duplicate |= selected[j] == id;
        }
        if (!duplicate) {
            selected[count++] = id;
        }
    }
    if (count > 0) {
        memcpy(conn->ciphers, selected, sizeof(selected[0]) * (size_t) count);
        conn->ciphers[count] = 0;
        conn->num_ciphers = count;
    }
    pynano_conn_end_call(conn);
    return count == 0 ? ERR_SSL_NO_CIPHER_MATCH : OK;
#else
    (void) connectionInstance;
    (void) pCipherSuiteList;
    (void) listLength;
    return ERR_SSL_DISABLED;
#endif
}

sbyte4 SSL_getCipherList(sbyte4 connectionInstance, ubyte2 **ppIds, ubyte4 *pCount)
{
    pynano_conn *conn;
    const int *ids;
    ubyte4 count = 0;

    if (ppIds == NULL || pCount == NULL) {
        return ERR_NULL_POINTER;
    }
    conn = pynano_conn_acquire(connectionInstance);
    if (conn == NULL) {
        return ERR_SSL_BAD_ID;
    }
    pthread_mutex_lock(&conn->lock);
    ids = conn->num_ciphers > 0 ? conn->ciphers : mbedtls_ssl_list_ciphersuites();
    for (; ids[count] != 0 && count < PYNANO_MAX_CIPHERS; count++) {
        conn->cipher_list_view[count] = (ubyte2) ids[count];
    }
    /* The array belongs to the connection and stays valid until it closes
     * or this function is called again. */
    *ppIds = conn->cipher_list_view;
    *pCount = count;
    pynano_conn_end_call(conn);
    return OK;
}
