/*
 * nanossl_cert_store.c - CERT_STORE_*: trust points and identities
 * (certificate chain plus private key), parsed once and shared.
 *
 * Certificates are accepted as DER or PEM. A PEM buffer may contain several
 * certificates and other PEM objects, which are skipped. Keys are accepted
 * as PEM or DER in PKCS#8, SEC1 or PKCS#1 form, and encrypted keys through
 * PYNANO_CERT_STORE_addIdentityWithPassword.
 *
 * Ownership: the application owns one reference from createStore until
 * releaseStore, and every connection using the store owns another. So a
 * store released while connections still use it is freed by the last one.
 * Private keys are zeroised when freed (mbedtls_pk_free does this).
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <stdlib.h>
#include <string.h>

#include "mbedtls/error.h"
#include "mbedtls/pem.h"
#include "mbedtls/platform_util.h"
#include "psa/crypto.h"

/* RSA keys below this size are refused, as in current CA/Browser rules. */
#define PYNANO_MIN_RSA_BITS 2048

static int looks_like_pem(const ubyte *data, ubyte4 length)
{
    static const char marker[] = "-----BEGIN ";
    ubyte4 i;

    if (length < sizeof(marker)) {
        return 0;
    }
    for (i = 0; i + sizeof(marker) - 1 <= length; i++) {
        if (memcmp(data + i, marker, sizeof(marker) - 1) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Mbed TLS parses PEM only from a NUL-terminated buffer whose length counts
 * the NUL; this returns such a copy, or NULL when out of memory. */
static ubyte *nul_terminated_copy(const ubyte *data, ubyte4 length)
{
    ubyte *copy = malloc((size_t) length + 1);

    if (copy != NULL) {
        memcpy(copy, data, length);
        copy[length] = 0;
    }
    return copy;
}

/* Parse every certificate in a buffer into chain. Returns the Mbed TLS
 * result and the number of certificates added. */
static int parse_into(mbedtls_x509_crt *chain, const ubyte *data, ubyte4 length,
                      int pem, ubyte4 *added)
{
    ubyte *copy;
    int ret;
    size_t before = 0;
    size_t after = 0;
    const mbedtls_x509_crt *node;

    for (node = chain; node != NULL && node->raw.len != 0; node = node->next) {
        before++;
    }
    if (!pem) {
        ret = mbedtls_x509_crt_parse_der(chain, data, length);
        /* Mbed TLS reads one certificate and ignores what follows it; a
         * buffer with more (two concatenated DER certificates) is refused
         * rather than half loaded. */
        if (ret == 0) {
            const mbedtls_x509_crt *last = chain;

            while (last->next != NULL && last->next->raw.len != 0) {
                last = last->next;
            }
            if (last->raw.len != length) {
                ret = MBEDTLS_ERR_X509_INVALID_FORMAT;
            }
        }
    } else {
        copy = nul_terminated_copy(data, length);
        if (copy == NULL) {
            return MBEDTLS_ERR_X509_ALLOC_FAILED;
        }
        ret = mbedtls_x509_crt_parse(chain, copy, (size_t) length + 1);
        free(copy);
    }
    for (node = chain; node != NULL && node->raw.len != 0; node = node->next) {
        after++;
    }
    *added = (ubyte4) (after - before);
    return ret;
}

/* Count the PEM certificate headers in a buffer. */
static ubyte4 count_pem_certificates(const ubyte *data, ubyte4 length)
{
    static const char header[] = "-----BEGIN CERTIFICATE-----";
    const size_t header_length = sizeof(header) - 1;
    ubyte4 count = 0;
    ubyte4 i;

    for (i = 0; i + header_length <= length; i++) {
        if (memcmp(data + i, header, header_length) == 0) {
            count++;
            i += (ubyte4) header_length - 1;
        }
    }
    return count;
}

/* Parse every certificate in data into chain, all or nothing: a buffer with
 * one bad certificate adds none, so no half-loaded chain is left in use.
 * Mbed TLS skips a final certificate whose footer is missing, so PEM input
 * must also yield one certificate per header. */
static MSTATUS parse_certificates(mbedtls_x509_crt *chain, const ubyte *data,
                                  ubyte4 length, ubyte4 *parsed)
{
    mbedtls_x509_crt trial;
    int pem;
    int ret;
    ubyte4 added = 0;

    if (data == NULL) {
        return ERR_NULL_POINTER;
    }
    if (length == 0) {
        return ERR_BAD_LENGTH;
    }
    pem = looks_like_pem(data, length);

    mbedtls_x509_crt_init(&trial);
    ret = parse_into(&trial, data, length, pem, &added);
    mbedtls_x509_crt_free(&trial);
    if (ret == MBEDTLS_ERR_X509_ALLOC_FAILED) {
        return ERR_MEM_ALLOC_FAIL;
    }
    /* For PEM a positive result counts certificates that failed to parse. */
    if (ret != 0 || added == 0 || (pem && added != count_pem_certificates(data, length))) {
        pynano_debug("certificate parse failed: -0x%04x", (unsigned) -ret);
        return ERR_CERT_INVALID_STRUCT;
    }

    ret = parse_into(chain, data, length, pem, &added);
    if (ret != 0) {
        return ERR_MEM_ALLOC_FAIL;
    }
    *parsed = added;
    return OK;
}

static MSTATUS parse_key(mbedtls_pk_context *key, const ubyte *data, ubyte4 length,
                         const ubyte *password, ubyte4 password_length)
{
    ubyte *copy;
    size_t parse_length = length;
    int ret;

    if (data == NULL) {
        return ERR_NULL_POINTER;
    }
    if (length == 0) {
        return ERR_BAD_LENGTH;
    }
    copy = nul_terminated_copy(data, length);
    if (copy == NULL) {
        return ERR_MEM_ALLOC_FAIL;
    }
    if (looks_like_pem(data, length)) {
        parse_length = (size_t) length + 1;
    }
    ret = mbedtls_pk_parse_key(key, copy, parse_length, password, password_length,
                               mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
    mbedtls_platform_zeroize(copy, (size_t) length + 1);
    free(copy);
    if (ret != 0) {
        pynano_debug("key parse failed: -0x%04x", (unsigned) -ret);
        return ERR_BAD_KEY;
    }
    if (mbedtls_pk_get_type(key) == MBEDTLS_PK_RSA &&
        mbedtls_pk_get_bitlen(key) < PYNANO_MIN_RSA_BITS) {
        return ERR_BAD_KEY;
    }
    return OK;
}

MSTATUS CERT_STORE_createStore(certStorePtr *ppNewStore)
{
    certStorePtr store;

    if (ppNewStore == NULL) {
        return ERR_NULL_POINTER;
    }
    if (psa_crypto_init() != PSA_SUCCESS) {
        return ERR_MEM_ALLOC_FAIL;
    }
    store = calloc(1, sizeof(*store));
    if (store == NULL) {
        return ERR_MEM_ALLOC_FAIL;
    }
    pthread_mutex_init(&store->lock, NULL);
    store->references = 1;
    store->ticket_lifetime = PYNANO_DEFAULT_TICKET_LIFETIME;
    store->cache_timeout = PYNANO_DEFAULT_CACHE_TIMEOUT;
    mbedtls_x509_crt_init(&store->trust_points);
    *ppNewStore = store;
    return OK;
}

static void store_free(certStorePtr store)
{
    ubyte4 i;

    pynano_store_session_free(store);
    mbedtls_x509_crt_free(&store->trust_points);
    for (i = 0; i < store->num_identities; i++) {
        mbedtls_x509_crt_free(&store->identities[i].chain);
        mbedtls_pk_free(&store->identities[i].key);
    }
    pthread_mutex_destroy(&store->lock);
    mbedtls_platform_zeroize(store, sizeof(*store));
    free(store);
}

void pynano_store_retain(certStorePtr store)
{
    pthread_mutex_lock(&store->lock);
    store->references++;
    store->frozen = 1;
    pthread_mutex_unlock(&store->lock);
}

void pynano_store_release(certStorePtr store)
{
    int free_now;

    pthread_mutex_lock(&store->lock);
    store->references--;
    free_now = store->references == 0;
    pthread_mutex_unlock(&store->lock);
    if (free_now) {
        store_free(store);
    }
}

MSTATUS CERT_STORE_releaseStore(certStorePtr *ppReleaseStore)
{
    if (ppReleaseStore == NULL) {
        return ERR_NULL_POINTER;
    }
    if (*ppReleaseStore == NULL) {
        return OK;
    }
    pynano_store_release(*ppReleaseStore);
    *ppReleaseStore = NULL;
    return OK;
}

/* Lock the store for a change; refuse once connections have used it. */
static MSTATUS store_begin_change(certStorePtr store)
{
    if (store == NULL) {
        return ERR_NULL_POINTER;
    }
    pthread_mutex_lock(&store->lock);
    if (store->frozen) {
        pthread_mutex_unlock(&store->lock);
        return ERR_SSL_BAD_STATE;
    }
    return OK;
}

MSTATUS CERT_STORE_addTrustPoint(certStorePtr pCertStore, const ubyte *der,
                                 ubyte4 derLength)
{
    MSTATUS status;
    ubyte4 parsed = 0;

    status = store_begin_change(pCertStore);
    if (status != OK) {
        return status;
    }
    status = parse_certificates(&pCertStore->trust_points, der, derLength, &parsed);
    if (status == OK) {
        pCertStore->num_trust_points += parsed;
    }
    pthread_mutex_unlock(&pCertStore->lock);
    return status;
}

static MSTATUS add_identity(certStorePtr store, SizedBuffer *certificates,
                            ubyte4 num_certificates, const ubyte *key,
                            ubyte4 key_length, const ubyte *password,
                            ubyte4 password_length)
{
    pynano_identity *identity;
    MSTATUS status = OK;
    ubyte4 i;

    if (certificates == NULL) {
        return ERR_NULL_POINTER;
    }
    if (num_certificates == 0) {
        return ERR_BAD_LENGTH;
    }
    status = store_begin_change(store);
    if (status != OK) {
        return status;
    }
    if (store->num_identities == PYNANO_MAX_IDENTITIES) {
        pthread_mutex_unlock(&store->lock);
        return ERR_SSL_CONFIG;
    }

    identity = &store->identities[store->num_identities];
    mbedtls_x509_crt_init(&identity->chain);
    mbedtls_pk_init(&identity->key);

    for (i = 0; i < num_certificates && status == OK; i++) {
        ubyte4 parsed = 0;

        status = parse_certificates(&identity->chain, certificates[i].data,
                                    certificates[i].length, &parsed);
    }
    if (status == OK) {
        status = parse_key(&identity->key, key, key_length, password, password_length);
    }
    if (status == OK && mbedtls_pk_get_type(&identity->chain.pk) == MBEDTLS_PK_RSA &&
        mbedtls_pk_get_bitlen(&identity->chain.pk) < PYNANO_MIN_RSA_BITS) {
        status = ERR_BAD_KEY;
    }
    /* A key that does not match its certificate would only fail later, at
     * the peer, as a signature error; check the pair here instead. */
    if (status == OK &&
        mbedtls_pk_check_pair(&identity->chain.pk, &identity->key,
                              mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE) != 0) {
        status = ERR_BAD_KEY;
    }

    if (status == OK) {
        store->num_identities++;
    } else {
        mbedtls_x509_crt_free(&identity->chain);
        mbedtls_pk_free(&identity->key);
    }
    pthread_mutex_unlock(&store->lock);
    return status;
}

MSTATUS CERT_STORE_addIdentity(certStorePtr pCertStore, const ubyte *derCert,
                               ubyte4 derCertLength, const ubyte *keyBlob,
                               ubyte4 keyBlobLength)
{
    SizedBuffer certificate;

    certificate.data = (ubyte *) derCert;
    certificate.length = derCertLength;
    return add_identity(pCertStore, &certificate, 1, keyBlob, keyBlobLength, NULL, 0);
}

MSTATUS CERT_STORE_addIdentityWithCertificateChain(
    certStorePtr pCertStore, SizedBuffer *certificates, ubyte4 numCertificate,
    const ubyte *keyBlob, ubyte4 keyBlobLength)
{
    return add_identity(pCertStore, certificates, numCertificate, keyBlob,
                        keyBlobLength, NULL, 0);
}

MSTATUS PYNANO_CERT_STORE_addIdentityWithPassword(
    certStorePtr pCertStore, SizedBuffer *certificates, ubyte4 numCertificate,
    const ubyte *keyBlob, ubyte4 keyBlobLength,
    const ubyte *password, ubyte4 passwordLength)
{
    return add_identity(pCertStore, certificates, numCertificate, keyBlob,
                        keyBlobLength, password, passwordLength);
}

MSTATUS PYNANO_CERT_STORE_getCounts(certStorePtr pCertStore,
                                    ubyte4 *pTrustPoints, ubyte4 *pIdentities)
{
    if (pCertStore == NULL || pTrustPoints == NULL || pIdentities == NULL) {
        return ERR_NULL_POINTER;
    }
    pthread_mutex_lock(&pCertStore->lock);
    *pTrustPoints = pCertStore->num_trust_points;
    *pIdentities = pCertStore->num_identities;
    pthread_mutex_unlock(&pCertStore->lock);
    return OK;
}
