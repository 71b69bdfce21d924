/*
 * nanossl_internal.h - state shared by the csrc/ files: the connection
 * table entry, the certificate store, and the helpers each file exports.
 */
#ifndef PYNANO_NANOSSL_INTERNAL_H
#define PYNANO_NANOSSL_INTERNAL_H

/* The received alert and the suite version bounds are private fields in
 * Mbed TLS 3.6 with no public getter; the pin keeps their layout fixed. */
#define MBEDTLS_ALLOW_PRIVATE_ACCESS

#include <pthread.h>

#include "mbedtls/platform.h"
#include "mbedtls/psa_util.h"
#include "mbedtls/ssl.h"
#include "mbedtls/ssl_cache.h"
#include "mbedtls/x509_crt.h"
#include "mbedtls/pk.h"

#include "nanossl.h"
#include "pynano_ext.h"

#define PYNANO_MAX_IDENTITIES   8
#define PYNANO_MAX_CIPHERS      64
#define PYNANO_MAX_HOSTNAME     255
#define PYNANO_MAX_ALPN         16
#define PYNANO_ALPN_BUFFER      256
/* Handshake reads wait at most this long per poll() so a signal or a
 * handshake deadline is noticed promptly. */
#define PYNANO_POLL_SLICE_MS    250
/* SSL_closeConnection waits at most this long to send close_notify. */
#define PYNANO_CLOSE_NOTIFY_MS  1000

typedef struct pynano_identity {
    mbedtls_x509_crt chain;       /* own certificate first, then its CA chain */
    mbedtls_pk_context key;
} pynano_identity;

/* A session ticket key: AES-256-GCM in PSA, named by 4 random bytes. */
typedef struct pynano_ticket_key {
    int in_use;
    psa_key_id_t id;
    unsigned char name[4];
    uint64_t created;             /* Unix seconds */
} pynano_ticket_key;

#define PYNANO_DEFAULT_TICKET_LIFETIME  7200   /* seconds */

/* Server checks a client made in a full handshake, recorded in session blobs. */
#define PYNANO_SERVER_CHECK_CHAIN     0x01
#define PYNANO_SERVER_CHECK_HOSTNAME  0x02
#define PYNANO_DEFAULT_CACHE_TIMEOUT    7200   /* seconds */

/* A certificate store: parsed once, shared read-only by every connection
 * that references it. It is frozen at first use, because Mbed TLS walks the
 * trust list and identity chains without a lock during handshakes. */
struct certStore {
    pthread_mutex_t lock;
    int references;               /* the owner's, plus one per connection */
    int frozen;
    mbedtls_x509_crt trust_points;
    ubyte4 num_trust_points;
    pynano_identity identities[PYNANO_MAX_IDENTITIES];
    ubyte4 num_identities;

    /* Server sessions issued under this store (nanossl_session.c). */
    pynano_ticket_key ticket_keys[2];     /* current, previous */
    uint32_t ticket_lifetime;
    uint32_t cache_timeout;
    int cache_ready;
    mbedtls_ssl_cache_context cache;
};

typedef enum pynano_conn_state {
    CONN_STATE_CREATED = 1,       /* accepted or connected, not negotiated */
    CONN_STATE_NEGOTIATE = SSL_CONNECTION_NEGOTIATE,
    CONN_STATE_OPEN = SSL_CONNECTION_OPEN,
    CONN_STATE_FAILED = 10,       /* handshake failed; only close is useful */
    CONN_STATE_CLOSED = 11        /* close_notify sent or received */
} pynano_conn_state;

typedef struct pynano_conn {
    /* Table fields, guarded by the table lock. */
    sbyte4 instance;              /* 0 when the slot is free */
    int references;               /* calls in progress, plus one while open */
    int closing;                  /* SSL_closeConnection was called */

    /* Everything below is guarded by conn->lock (recursive, so a callback
     * may call back into the API for its own connection). */
    pthread_mutex_t lock;
    int is_server;
    TCP_SOCKET fd;
    certStorePtr store;
    pynano_conn_state state;
    ubyte4 flags;
    int verify_mode;              /* PYNANO_VERIFY_* */
    int check_hostname;           /* client: a name mismatch fails */
    int min_minor;                /* TLS minor version bounds, 3 or 4 */
    int max_minor;
    ubyte4 recv_timeout_ms;       /* handshake read timeout, 0 = none */
    ubyte4 handshake_timeout_ms;  /* whole-handshake deadline, 0 = none */
    ubyte4 send_timeout_ms;       /* longest wait for the socket to take more
                                     data, 0 = none */
    int ciphers[PYNANO_MAX_CIPHERS + 1];  /* 0-terminated; empty = defaults */
    int num_ciphers;
    ubyte2 cipher_list_view[PYNANO_MAX_CIPHERS];   /* SSL_getCipherList output */
    char hostname[PYNANO_MAX_HOSTNAME + 1];
    int has_hostname;
    char alpn_storage[PYNANO_ALPN_BUFFER];
    const char *alpn_list[PYNANO_MAX_ALPN + 1];
    funcPtrInvalidCertCallback invalid_cert_callback;

    /* Session resumption (nanossl_session.c) */
    int num_tickets;              /* TLS 1.3 tickets to send; -1 = default */
    funcPtrClientSaveTicket save_ticket_callback;
    funcPtrClientRetrieveTicket retrieve_ticket_callback;
    unsigned char *resume_blob;   /* client: session to offer, owned */
    size_t resume_blob_length;
    int session_reused;
    int verify_overridden;        /* the invalid-certificate callback accepted */
    int server_check;             /* client: PYNANO_SERVER_CHECK_* made */
    int offered_server_check;     /* client: checks behind the offered session */
    mbedtls_x509_crt resumed_peer_cert;  /* client certificate from a ticket */
    int has_resumed_peer_cert;

    /* Verification results, filled during the handshake. */
    int verify_decided;
    pynano_verify_details verify;

    /* Diagnostics */
    int last_mbedtls_error;
    int peer_alert;               /* -1 = none */
    int peer_sent_close_notify;   /* our close_notify is still owed */
    int io_interrupted;           /* a signal interrupted poll() */
    int64_t io_deadline_ms;       /* monotonic deadline for the current call */

    int ssl_ready;                /* ssl and conf are set up */
    unsigned char saved_in_sequence[8];   /* record counters while the */
    unsigned char saved_out_sequence[8];  /* buffers are released */
    int in_callback;              /* an application callback is running; the
                                     connection's own Mbed TLS calls must wait */
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
} pynano_conn;

/* nanossl_table.c */
int pynano_table_ready(void);
pynano_conn *pynano_conn_new(int is_server, TCP_SOCKET fd, certStorePtr store,
                             sbyte4 *status);
pynano_conn *pynano_conn_acquire(sbyte4 instance);
void pynano_conn_release(pynano_conn *conn);
void pynano_conn_unlink(pynano_conn *conn);

/* nanossl_cert_store.c */
void pynano_store_retain(certStorePtr store);
void pynano_store_release(certStorePtr store);

/* nanossl_session.c */
void pynano_store_session_free(certStorePtr store);
void pynano_session_configure_server(pynano_conn *conn);
void pynano_session_apply_client(pynano_conn *conn);
void pynano_session_ask_app(pynano_conn *conn);
void pynano_session_offer_to_app(pynano_conn *conn);
MSTATUS pynano_session_take_blob(pynano_conn *conn, const unsigned char *blob, size_t length);
void pynano_session_forget_blob(pynano_conn *conn);
MSTATUS pynano_session_lookup_info(pynano_conn *conn, const unsigned char *id,
                                   size_t id_length, const unsigned char *master);
void pynano_session_client_free(void);
void pynano_session_note_server_check(pynano_conn *conn);
int pynano_server_capacity(void);

/* nanossl_buffers.c */
void pynano_buffers_release(pynano_conn *conn);
MSTATUS pynano_buffers_restore(pynano_conn *conn);

/* nanossl_io.c */
void pynano_io_attach(pynano_conn *conn);
int64_t pynano_now_ms(void);

/* nanossl_status.c */
MSTATUS pynano_status_from_mbedtls(const pynano_conn *conn, int mbedtls_error);
MSTATUS pynano_status_from_x509_flags(uint32_t flags);
sbyte4 pynano_alert_for_status(MSTATUS status, int tls_minor);
/* Store the alert number the peer sent when Mbed TLS failed on one. */
void pynano_record_peer_alert(pynano_conn *conn, int mbedtls_error);

/* nanossl_handshake.c */
void pynano_conn_free_tls(pynano_conn *conn);
/* Acquire and lock a connection that has not started its handshake;
 * ERR_SSL_BAD_ID or ERR_SSL_BAD_STATE otherwise. */
sbyte4 pynano_conn_begin_setting(sbyte4 instance, pynano_conn **out);
/* Unlock and release a connection taken by an acquire-and-lock call. */
void pynano_conn_end_call(pynano_conn *conn);

/* logging to stderr when PYNANO_C_DEBUG is set; Python logs the rest */
void pynano_debug(const char *format, ...);

#endif /* PYNANO_NANOSSL_INTERNAL_H */
