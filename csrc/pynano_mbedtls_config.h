/*
 * pynano's Mbed TLS 3.6 configuration, passed to every compile as
 * MBEDTLS_CONFIG_FILE in place of the library's default mbedtls_config.h.
 *
 * What it keeps:
 *   - TLS 1.2 and TLS 1.3, client and server;
 *   - ECDHE key exchange over X25519, P-256 and P-384;
 *   - ECDSA and RSA signatures, RSA from 2048 bits (the default X.509
 *     profile and the certificate store both enforce the minimum);
 *   - AEAD record protection only: AES-GCM and ChaCha20-Poly1305;
 *   - X.509 parsing and writing, and PEM;
 *   - session tickets and the TLS 1.2 session cache;
 *   - PSA crypto, which the TLS 1.3 code requires.
 * Nothing older than TLS 1.2 is compiled, and no key exchange without
 * forward secrecy (static RSA, static ECDH, plain PSK).
 */
#ifndef PYNANO_MBEDTLS_CONFIG_H
#define PYNANO_MBEDTLS_CONFIG_H

/* Platform */
#define MBEDTLS_HAVE_ASM
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_FS_IO
#define MBEDTLS_THREADING_C
#define MBEDTLS_THREADING_PTHREAD
#define MBEDTLS_ERROR_C
#define MBEDTLS_VERSION_C
#define MBEDTLS_VERSION_FEATURES

/* Entropy and random numbers: PSA's built-in DRBG seeded from the OS */
#define MBEDTLS_ENTROPY_C
#define MBEDTLS_CTR_DRBG_C
#define MBEDTLS_HMAC_DRBG_C

/* Big numbers and elliptic curves */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_GENPRIME
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_ECDH_C
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDSA_DETERMINISTIC

/* RSA: signatures only, PKCS#1 v1.5 for TLS 1.2 and X.509, PSS for TLS 1.3 */
#define MBEDTLS_RSA_C
#define MBEDTLS_PKCS1_V15
#define MBEDTLS_PKCS1_V21
#define MBEDTLS_X509_RSASSA_PSS_SUPPORT

/* Symmetric ciphers and AEAD modes */
#define MBEDTLS_AES_C
#define MBEDTLS_AESNI_C
#define MBEDTLS_GCM_C
#define MBEDTLS_CHACHA20_C
#define MBEDTLS_POLY1305_C
#define MBEDTLS_CHACHAPOLY_C
#define MBEDTLS_CIPHER_C
/* CBC stays for decrypting encrypted PEM keys (PKCS#5 / PKCS#8 with AES). */
#define MBEDTLS_CIPHER_MODE_CBC
#define MBEDTLS_CIPHER_PADDING_PKCS7

/* Hashes */
#define MBEDTLS_MD_C
#define MBEDTLS_MD5_C          /* legacy PEM encryption key derivation only */
#define MBEDTLS_SHA1_C         /* X.509 fingerprints and old CA signatures */
#define MBEDTLS_SHA224_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA384_C
#define MBEDTLS_SHA512_C
#define MBEDTLS_HKDF_C

/* ASN.1, OIDs, PEM, keys */
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_BASE64_C
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_PEM_WRITE_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_PK_WRITE_C
#define MBEDTLS_PK_PARSE_EC_EXTENDED
#define MBEDTLS_PKCS5_C
#define MBEDTLS_PKCS12_C

/* X.509 */
#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C
#define MBEDTLS_X509_CRL_PARSE_C
#define MBEDTLS_X509_CREATE_C
#define MBEDTLS_X509_CRT_WRITE_C
#define MBEDTLS_X509_CSR_WRITE_C

/* PSA crypto: TLS 1.3 needs it, and TLS 1.2 goes through it as well so both
 * versions share one implementation of every primitive. */
#define MBEDTLS_PSA_CRYPTO_C
#define MBEDTLS_USE_PSA_CRYPTO
#define MBEDTLS_PSA_KEY_STORE_DYNAMIC

/* TLS */
#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_CLI_C
#define MBEDTLS_SSL_SRV_C
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_SSL_PROTO_TLS1_3
#define MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
#define MBEDTLS_SSL_ALPN
#define MBEDTLS_SSL_ALL_ALERT_MESSAGES
#define MBEDTLS_SSL_SESSION_TICKETS
#define MBEDTLS_SSL_TICKET_C
#define MBEDTLS_SSL_CACHE_C
#define MBEDTLS_SSL_MAX_FRAGMENT_LENGTH
/* Buffer sizes become fields, so idle connections can release them. */
#define MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH
/* Only forward-secret AEAD suites, in order of preference. CBC is compiled
 * for encrypted PEM keys, so without this list the CBC suites would be on. */
#define MBEDTLS_SSL_CIPHERSUITES                                \
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256,                          \
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384,                          \
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,                    \
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,            \
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,            \
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,      \
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,              \
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,              \
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256

/* Renegotiation is left out: RFC 5746 secure renegotiation signalling is
 * still sent, and a peer's renegotiation request is refused. */

#endif /* PYNANO_MBEDTLS_CONFIG_H */
