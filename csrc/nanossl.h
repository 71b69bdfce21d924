/*
 * nanossl.h - NanoSSL-compatible synchronous TLS API over Mbed TLS 3.6.
 *
 * Names, argument order, flag values and status codes follow the public
 * NanoSSL (Mocana / DigiCert) API so that C and Python code written for it
 * ports line by line. Functions and settings that NanoSSL does not have are
 * prefixed PYNANO_.
 *
 * Build macros honoured (both on in pynano's default build):
 *   __ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__   client certificates
 *   __ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__  SSL_enableCiphers()
 * The __ENABLE_DIGICERT_ spellings are accepted as aliases.
 *
 * Threading: every function may be called from any thread. Calls on one
 * connection instance are serialised by a per-connection lock.
 */
#ifndef PYNANO_NANOSSL_H
#define PYNANO_NANOSSL_H

#include <stdint.h>

#if defined(__ENABLE_DIGICERT_SSL_MUTUAL_AUTH_SUPPORT__) && \
    !defined(__ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__)
#define __ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__
#endif
#if defined(__ENABLE_DIGICERT_SSL_CIPHER_SUITES_SELECT__) && \
    !defined(__ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__)
#define __ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__
#endif

typedef int32_t  sbyte4;
typedef uint32_t ubyte4;
typedef uint16_t ubyte2;
typedef uint8_t  ubyte;
typedef char     sbyte;
typedef int32_t  MSTATUS;
typedef int32_t  intBoolean;
typedef int      TCP_SOCKET;

typedef struct certStore *certStorePtr;

typedef struct SizedBuffer {
    ubyte4 length;
    ubyte *data;
} SizedBuffer;

/* Status codes */
#define OK                                           0
#define ERR_TCP_SOCKET_CLOSED                    (-5901)
#define ERR_TCP_READ_ERROR                       (-5902)
#define ERR_TCP_READ_TIMEOUT                     (-5904)
#define ERR_TCP_WRITE_ERROR                      (-5905)
#define ERR_NULL_POINTER                         (-6001)
#define ERR_BAD_LENGTH                           (-6003)
#define ERR_INVALID_ARG                          (-6010)
#define ERR_MEM_ALLOC_FAIL                       (-6101)
#define ERR_BAD_KEY                              (-7401)
#define ERR_SSL_INIT_CONNECTION                  (-7502)
#define ERR_SSL_BAD_ID                           (-7503)
#define ERR_SSL_DISABLED                         (-7504)
#define ERR_SSL_CONFIG                           (-7505)
#define ERR_SSL_BAD_STATE                        (-7510)
#define ERR_SSL_NOT_OPEN                         (-7511)
#define ERR_SSL_NO_CIPHER_MATCH                  (-7512)
#define ERR_SSL_MUTUAL_AUTHENTICATION_NOT_REQUESTED (-7514)
#define ERR_SSL_INVALID_SIGNATURE                (-7519)
#define ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE     (-7527)
#define ERR_SSL_PROTOCOL_VERSION                 (-7536)
#define ERR_SSL_FATAL_ALERT                      (-7538)
#define ERR_SSL_UNSUPPORTED_ALGORITHM            (-7547)
#define ERR_CERT_INVALID_STRUCT                  (-7603)
#define ERR_CERT_EXPIRED                         (-7606)
#define ERR_CERT_BAD_COMMON_NAME                 (-7607)
#define ERR_CERT_INVALID_SIGNATURE               (-7609)
#define ERR_CERT_CHAIN_NOT_VERIFIED              (-7614)
#define ERR_CERT_INVALID_KEYUSAGE                (-7624)
#define ERR_CERT_START_TIME_VALID_IN_FUTURE      (-7625)
#define ERR_CERT_CHAIN_NO_TRUST_ANCHOR           (-7629)
/* pynano: the handshake or read was interrupted by a signal; call again. */
#define PYNANO_ERR_INTERRUPTED                   (-9001)

/* Session flags */
#define SSL_FLAG_REQUIRE_MUTUAL_AUTH        0x00000001
#define SSL_FLAG_NO_MUTUAL_AUTH_REQUEST     0x00000002  /* server */
#define SSL_FLAG_NO_MUTUAL_AUTH_REPLY       0x00000002  /* client */
#define SSL_FLAG_ENABLE_SEND_EMPTY_FRAME    0x00000004
#define SSL_FLAG_ENABLE_SEND_BUFFER         0x00000008
#define SSL_FLAG_ENABLE_RECV_BUFFER         0x00000010
#define SSL_FLAG_ENABLE_POST_HANDSHAKE_AUTH 0x00000020
#define SSL_FLAG_ALLOW_INSECURE_REHANDSHAKE 0x00000080

/* Versions */
#define SSL3_MAJORVERSION   3
#define TLS10_MINORVERSION  1
#define TLS11_MINORVERSION  2
#define TLS12_MINORVERSION  3
#define TLS13_MINORVERSION  4

/* Connection states */
#define SSL_CONNECTION_NEGOTIATE    2
#define SSL_CONNECTION_OPEN         3
#define SSL_CONNECTION_RENEGOTIATE  4

/* SSL_ioctl settings */
#define SSL_SET_VERSION             1
#define SSL_SET_MINIMUM_VERSION     2
#define SSL_SET_RECV_TIMEOUT        4
#define SSL_SET_NUM_TICKETS         27
#define SSL_SET_USE_EXTENDED_MASTERSECRET 30
#define SSL_ENABLE_TLS13_SESSION_TICKETS  31
/* pynano settings: value is an integer passed as the pointer value. */
#define PYNANO_SSL_SET_VERIFY_MODE  0x7001  /* PYNANO_VERIFY_* */
#define PYNANO_SSL_SET_HANDSHAKE_TIMEOUT 0x7002  /* ms, 0 = no limit */
/* 0 = accept a certificate for another host name (SNI is still sent). */
#define PYNANO_SSL_SET_CHECK_HOSTNAME 0x7003
/* Send timeout in ms, 0 = none: a peer that stops reading fails SSL_send
 * with ERR_TCP_WRITE_ERROR once it passes, and the connection is failed. */
#define PYNANO_SSL_SET_SEND_TIMEOUT   0x7004
#define PYNANO_VERIFY_NONE      0
#define PYNANO_VERIFY_OPTIONAL  1
#define PYNANO_VERIFY_REQUIRED  2

/* Alert classes and the alert numbers of RFC 8446 */
#define SSLALERTLEVEL_WARNING   1
#define SSLALERTLEVEL_FATAL     2
#define SSL_ALERT_CLOSE_NOTIFY              0
#define SSL_ALERT_UNEXPECTED_MESSAGE       10
#define SSL_ALERT_BAD_RECORD_MAC           20
#define SSL_ALERT_RECORD_OVERFLOW          22
#define SSL_ALERT_HANDSHAKE_FAILURE        40
#define SSL_ALERT_BAD_CERTIFICATE          42
#define SSL_ALERT_UNSUPPORTED_CERTIFICATE  43
#define SSL_ALERT_CERTIFICATE_REVOKED      44
#define SSL_ALERT_CERTIFICATE_EXPIRED      45
#define SSL_ALERT_CERTIFICATE_UNKNOWN      46
#define SSL_ALERT_ILLEGAL_PARAMETER        47
#define SSL_ALERT_UNKNOWN_CA               48
#define SSL_ALERT_ACCESS_DENIED            49
#define SSL_ALERT_DECODE_ERROR             50
#define SSL_ALERT_DECRYPT_ERROR            51
#define SSL_ALERT_PROTOCOL_VERSION         70
#define SSL_ALERT_INSUFFICIENT_SECURITY    71
#define SSL_ALERT_INTERNAL_ERROR           80
#define SSL_ALERT_INAPPROPRIATE_FALLBACK   86
#define SSL_ALERT_USER_CANCELED            90
#define SSL_ALERT_MISSING_EXTENSION       109
#define SSL_ALERT_UNSUPPORTED_EXTENSION   110
#define SSL_ALERT_UNRECOGNIZED_NAME       112
#define SSL_ALERT_NO_APPLICATION_PROTOCOL 120
#define SSL_ALERT_CERTIFICATE_REQUIRED    116

/* Callback types */
typedef MSTATUS (*funcPtrInvalidCertCallback)(sbyte4 connectionInstance,
                                              MSTATUS validationStatus);

#define SSL_MAXSESSIONIDSIZE   32
#define SSL_MASTERSECRETSIZE   48

typedef sbyte4 (*funcPtrClientSaveTicket)(sbyte4 connectionInstance, sbyte *serverInfo,
                                          ubyte4 serverInfoLen, void *userData,
                                          ubyte *pTicket, ubyte4 ticketLen);
typedef sbyte4 (*funcPtrClientRetrieveTicket)(sbyte4 connectionInstance, sbyte *serverInfo,
                                              ubyte4 serverInfoLen, void *userData,
                                              ubyte **ppTicket, ubyte4 *pTicketLen,
                                              intBoolean *pFreeMemory);

/* Lifecycle */
sbyte4 SSL_init(sbyte4 numServerConnections, sbyte4 numClientConnections);
sbyte4 SSL_shutdownStack(void);
sbyte4 SSL_releaseTables(void);
sbyte4 SSL_acceptConnection(TCP_SOCKET tempSocket, certStorePtr pCertStore);
sbyte4 SSL_connect(TCP_SOCKET tempSocket, ubyte sessionIdLen, ubyte *sessionId,
                   ubyte *masterSecret, const sbyte *dnsName,
                   certStorePtr certStore);
sbyte4 SSL_negotiateConnection(sbyte4 connectionInstance);
sbyte4 SSL_send(sbyte4 connectionInstance, sbyte *pBuffer, sbyte4 bufferSize);
sbyte4 SSL_recv(sbyte4 connectionInstance, sbyte *pRetBuffer, sbyte4 bufferSize,
                sbyte4 *pNumBytesReceived, ubyte4 timeout);
sbyte4 SSL_recvPending(sbyte4 connectionInstance, sbyte4 *pRetBooleanIsPending);
sbyte4 SSL_closeConnection(sbyte4 connectionInstance);

/* Per-connection settings and queries */
sbyte4 SSL_getSessionFlags(sbyte4 connectionInstance, ubyte4 *pRetFlagsSSL);
sbyte4 SSL_setSessionFlags(sbyte4 connectionInstance, ubyte4 flagsSSL);
MSTATUS SSL_setInvalidCertCallback(sbyte4 connectionInstance,
                                   funcPtrInvalidCertCallback callback);
sbyte4 SSL_enableCiphers(sbyte4 connectionInstance,
                         const ubyte2 *pCipherSuiteList, ubyte4 listLength);
sbyte4 SSL_getCipherList(sbyte4 connectionInstance, ubyte2 **ppIds, ubyte4 *pCount);
sbyte4 SSL_getCipherInfo(sbyte4 connectionInstance, ubyte2 *pCipherId,
                         ubyte4 *pPeerEcCurves);
sbyte4 SSL_getSSLTLSVersion(sbyte4 connectionInstance, ubyte4 *pVersion);
sbyte4 SSL_getConnectionState(sbyte4 connectionInstance, sbyte4 *pState);
sbyte4 SSL_ioctl(sbyte4 connectionInstance, ubyte4 setting, void *value);
sbyte4 SSL_setServerNameIndication(sbyte4 connectionInstance,
                                   const char *serverName);
sbyte4 SSL_lookupAlert(sbyte4 connectionInstance, sbyte4 lookupError,
                       sbyte4 *pRetAlertId, sbyte4 *pAlertClass);
sbyte4 SSL_sendAlert(sbyte4 connectionInstance, sbyte4 alertId,
                     sbyte4 alertClass);
const char *DISPLAY_ERROR(MSTATUS status);

/* Session resumption. The ticket callbacks carry TLS 1.2 and TLS 1.3
 * sessions alike: the ticket is an opaque pynano session blob. */
sbyte4 SSL_getClientSessionInfo(sbyte4 connectionInstance, ubyte *sessionIdLen,
                                ubyte *sessionId, ubyte *masterSecret);
MSTATUS SSL_setClientSaveTicketCallback(sbyte4 connectionInstance,
                                        funcPtrClientSaveTicket callback);
MSTATUS SSL_setClientRetrieveTicketCallback(sbyte4 connectionInstance,
                                            funcPtrClientRetrieveTicket callback);

/* Certificate store */
MSTATUS CERT_STORE_createStore(certStorePtr *ppNewStore);
MSTATUS CERT_STORE_releaseStore(certStorePtr *ppReleaseStore);
MSTATUS CERT_STORE_addIdentity(certStorePtr pCertStore,
                               const ubyte *derCert, ubyte4 derCertLength,
                               const ubyte *keyBlob, ubyte4 keyBlobLength);
MSTATUS CERT_STORE_addIdentityWithCertificateChain(
    certStorePtr pCertStore, SizedBuffer *certificates, ubyte4 numCertificate,
    const ubyte *keyBlob, ubyte4 keyBlobLength);
MSTATUS CERT_STORE_addTrustPoint(certStorePtr pCertStore,
                                 const ubyte *der, ubyte4 derLength);

#endif /* PYNANO_NANOSSL_H */
