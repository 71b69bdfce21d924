/*
 * pynano_ext.h - pynano functions beyond the NanoSSL API: build facts,
 * verification details for callbacks, diagnostics, encrypted keys.
 */
#ifndef PYNANO_EXT_H
#define PYNANO_EXT_H

#include "nanossl.h"

/* Facts about the compiled library, for `pynano info`. */
typedef struct pynano_build_info {
    char mbedtls_version[32];   /* from mbedtls_version_get_string_full() */
    int mutual_auth_support;    /* __ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__ */
    int cipher_suites_select;   /* __ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__ */
    int tls12;
    int tls13;
    int aesni;
} pynano_build_info;

void PYNANO_getBuildInfo(pynano_build_info *info);

/* Copies up to maxIds enabled suite ids of this build; returns the count. */
sbyte4 PYNANO_listCiphers(ubyte2 *ids, sbyte4 maxIds);
/* Mbed TLS name of a suite id ("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"),
 * or NULL when this build lacks it. */
const char *PYNANO_cipherMbedtlsName(ubyte2 cipherId);
/* TLS version minor number of a suite: 3 for TLS 1.2, 4 for TLS 1.3, 0 unknown. */
sbyte4 PYNANO_cipherMinorVersion(ubyte2 cipherId);

/* The certificate that failed verification, for invalid-certificate
 * callbacks; valid from inside a callback and after the handshake. */
typedef struct pynano_verify_details {
    MSTATUS status;               /* NanoSSL status of the failure */
    ubyte4 mbedtls_flags;         /* MBEDTLS_X509_BADCERT_* bits, all depths */
    sbyte4 depth;                 /* 0 = peer's own certificate, -1 = none */
    char subject[512];
    char issuer[512];
    char not_before[20];          /* "YYYY-MM-DD HH:MM:SS" UTC */
    char not_after[20];
} pynano_verify_details;

sbyte4 PYNANO_getVerifyDetails(sbyte4 connectionInstance,
                               pynano_verify_details *details);

/* Mbed TLS error code behind the last failing status of a connection. */
sbyte4 PYNANO_getLastMbedtlsError(sbyte4 connectionInstance,
                                  sbyte4 *pMbedtlsError);
/* Mbed TLS's description of one of its error codes. */
void PYNANO_mbedtlsErrorString(sbyte4 mbedtlsError, char *buffer,
                               ubyte4 bufferSize);
/* Alert received from the peer, or -1 when none was received. */
sbyte4 PYNANO_getPeerAlert(sbyte4 connectionInstance, sbyte4 *pAlertId);

/* Peer certificate chain as DER: index 0 is the peer's own certificate.
 * Copies at most bufferSize bytes; *pLength receives the full size. */
sbyte4 PYNANO_getPeerCertificate(sbyte4 connectionInstance, ubyte4 index,
                                 ubyte *buffer, ubyte4 bufferSize,
                                 ubyte4 *pLength);
/* Free a connection without sending anything, for owners that can no
 * longer trust the socket (garbage collection, a socket closed elsewhere). */
sbyte4 PYNANO_releaseConnection(sbyte4 connectionInstance);
/* Decrypted application bytes waiting in the connection. */
sbyte4 PYNANO_getPendingBytes(sbyte4 connectionInstance, ubyte4 *pBytes);

/* Connection table occupancy: slots in use and table size. */
sbyte4 PYNANO_getTableUsage(sbyte4 *pInUse, sbyte4 *pCapacity);

/* Like CERT_STORE_addIdentityWithCertificateChain, with the password of an
 * encrypted PEM or PKCS#8 key. */
MSTATUS PYNANO_CERT_STORE_addIdentityWithPassword(
    certStorePtr pCertStore, SizedBuffer *certificates, ubyte4 numCertificate,
    const ubyte *keyBlob, ubyte4 keyBlobLength,
    const ubyte *password, ubyte4 passwordLength);
/* Number of trust points and identities in a store. */
MSTATUS PYNANO_CERT_STORE_getCounts(certStorePtr pCertStore,
                                    ubyte4 *pTrustPoints, ubyte4 *pIdentities);

/* Session resumption: blobs for the ssl-style session objects, whether the
 * last handshake resumed, and the server store's ticket keys. */
sbyte4 PYNANO_getSessionBlob(sbyte4 connectionInstance, ubyte *buffer,
                             ubyte4 bufferSize, ubyte4 *pLength);
sbyte4 PYNANO_setSessionBlob(sbyte4 connectionInstance, const ubyte *blob,
                             ubyte4 length);
sbyte4 PYNANO_getSessionReused(sbyte4 connectionInstance, sbyte4 *pReused);
/* Retire every ticket key: earlier tickets then give a full handshake. */
MSTATUS PYNANO_CERT_STORE_rotateTicketKeys(certStorePtr pCertStore);
/* Drop every TLS 1.2 session-ID cache entry of a server store. */
MSTATUS PYNANO_CERT_STORE_flushSessionCache(certStorePtr pCertStore);
/* Ticket lifetime (also the automatic key rotation period) and TLS 1.2
 * session cache timeout, in seconds, at most 604800 (7 days). */
MSTATUS PYNANO_CERT_STORE_setSessionLifetimes(certStorePtr pCertStore,
                                              ubyte4 ticketLifetimeSeconds,
                                              ubyte4 cacheTimeoutSeconds);

/* ALPN: protocols is a list of NUL-terminated names, ended by an empty one. */
sbyte4 PYNANO_setAlpnProtocols(sbyte4 connectionInstance,
                               const char *protocols, ubyte4 length);
sbyte4 PYNANO_getAlpnProtocol(sbyte4 connectionInstance, char *buffer,
                              ubyte4 bufferSize);

#endif /* PYNANO_EXT_H */
