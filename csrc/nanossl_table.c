/*
 * nanossl_table.c - the connection table: SSL_init, SSL_shutdownStack and
 * the mapping from connection instances to connection state.
 *
 * Instance numbering: slot s (0-based) of a table with C slots hands out
 * instances s + 1 + g * C for generation g = 0, 1, 2, ..., so an instance is
 * found in O(1) and a closed instance never aliases the slot's next user
 * until the generation counter wraps after about 2^31 / C connections.
 *
 * Lifetime: a connection holds one reference while it is open and one per
 * API call in progress. SSL_closeConnection unlinks the instance at once,
 * so later calls get ERR_SSL_BAD_ID; the memory goes when the last call in
 * progress returns.
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <stdlib.h>
#include <string.h>

#include "psa/crypto.h"

static pthread_mutex_t g_table_lock = PTHREAD_MUTEX_INITIALIZER;
static pynano_conn **g_slots;
static sbyte4 *g_generation;
static sbyte4 g_capacity;
static sbyte4 g_in_use;
static sbyte4 g_server_capacity = 16;

int pynano_table_ready(void)
{
    int ready;

    pthread_mutex_lock(&g_table_lock);
    ready = g_slots != NULL;
    pthread_mutex_unlock(&g_table_lock);
    return ready;
}

int pynano_server_capacity(void)
{
    return g_server_capacity;
}

static void conn_destroy(pynano_conn *conn)
{
    pynano_conn_free_tls(conn);
    pynano_session_forget_blob(conn);
    mbedtls_x509_crt_free(&conn->resumed_peer_cert);
    if (conn->store != NULL) {
        pynano_store_release(conn->store);
    }
    pthread_mutex_destroy(&conn->lock);
    mbedtls_platform_zeroize(conn, sizeof(*conn));
    free(conn);
}

sbyte4 SSL_init(sbyte4 numServerConnections, sbyte4 numClientConnections)
{
    sbyte4 capacity;
    pynano_conn **slots;
    sbyte4 *generation;

    if (numServerConnections < 0 || numClientConnections < 0 ||
        numServerConnections > 65536 || numClientConnections > 65536) {
        return ERR_INVALID_ARG;
    }
    capacity = numServerConnections + numClientConnections;
    if (capacity == 0) {
        return ERR_INVALID_ARG;
    }

    /* PSA must be up before any key is parsed or handshake run; the call is
     * idempotent and thread-safe with MBEDTLS_THREADING_C. */
    if (psa_crypto_init() != PSA_SUCCESS) {
        return ERR_MEM_ALLOC_FAIL;
    }

    pthread_mutex_lock(&g_table_lock);
    if (g_slots != NULL) {
        /* Re-initialising resizes the table, but only while it is empty,
         * because live instances encode their slot and the old size. */
        if (g_in_use != 0 && capacity != g_capacity) {
            pthread_mutex_unlock(&g_table_lock);
            return ERR_SSL_BAD_STATE;
        }
        if (capacity == g_capacity) {
            pthread_mutex_unlock(&g_table_lock);
            return OK;
        }
        free(g_slots);
        free(g_generation);
        g_slots = NULL;
        g_generation = NULL;
    }

    slots = calloc((size_t) capacity, sizeof(*slots));
    generation = calloc((size_t) capacity, sizeof(*generation));
    if (slots == NULL || generation == NULL) {
        free(slots);
        free(generation);
        pthread_mutex_unlock(&g_table_lock);
        return ERR_MEM_ALLOC_FAIL;
    }
    g_slots = slots;
    g_generation = generation;
    g_capacity = capacity;
    /* The TLS 1.2 session cache of each store has room for one entry per
     * server connection in the table. */
    g_server_capacity = numServerConnections > 0 ? numServerConnections : 1;
    g_in_use = 0;
    pthread_mutex_unlock(&g_table_lock);
    return OK;
}

sbyte4 SSL_releaseTables(void)
{
    return SSL_shutdownStack();
}

sbyte4 SSL_shutdownStack(void)
{
    sbyte4 i;
    pynano_conn **slots;
    sbyte4 capacity;

    pthread_mutex_lock(&g_table_lock);
    slots = g_slots;
    capacity = g_capacity;
    g_slots = NULL;
    g_capacity = 0;
    g_in_use = 0;
    free(g_generation);
    g_generation = NULL;
    pthread_mutex_unlock(&g_table_lock);

    pynano_session_client_free();
    if (slots == NULL) {
        return OK;
    }

    /* Connections still inside a call on another thread are freed by that
     * call's release; the others are freed here. Their sockets stay open:
     * the application owns them. */
    for (i = 0; i < capacity; i++) {
        pynano_conn *conn = slots[i];
        int free_now = 0;

        if (conn == NULL) {
            continue;
        }
        pthread_mutex_lock(&g_table_lock);
        conn->instance = 0;
        if (!conn->closing) {
            conn->closing = 1;
            conn->references--;
        }
        free_now = conn->references == 0;
        pthread_mutex_unlock(&g_table_lock);
        if (free_now) {
            conn_destroy(conn);
        }
    }
    free(slots);
    return OK;
}

pynano_conn *pynano_conn_new(int is_server, TCP_SOCKET fd, certStorePtr store,
                             sbyte4 *status)
{
    pynano_conn *conn;
    pthread_mutexattr_t attributes;
    sbyte4 slot;

    conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        *status = ERR_MEM_ALLOC_FAIL;
        return NULL;
    }
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_settype(&attributes, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&conn->lock, &attributes);
    pthread_mutexattr_destroy(&attributes);

    conn->is_server = is_server;
    conn->fd = fd;
    conn->state = CONN_STATE_CREATED;
    conn->verify_mode = PYNANO_VERIFY_REQUIRED;
    conn->check_hostname = 1;
    conn->min_minor = TLS12_MINORVERSION;
    conn->max_minor = TLS13_MINORVERSION;
    conn->peer_alert = -1;
    conn->verify.depth = -1;
    conn->num_tickets = -1;
    mbedtls_x509_crt_init(&conn->resumed_peer_cert);
    conn->references = 1;
    if (store != NULL) {
        pynano_store_retain(store);
        conn->store = store;
    }

    pthread_mutex_lock(&g_table_lock);
    if (g_slots == NULL) {
        pthread_mutex_unlock(&g_table_lock);
        conn_destroy(conn);
        *status = ERR_SSL_BAD_STATE;
        return NULL;
    }
    for (slot = 0; slot < g_capacity; slot++) {
        if (g_slots[slot] == NULL) {
            break;
        }
    }
    if (slot == g_capacity) {
        pthread_mutex_unlock(&g_table_lock);
        conn_destroy(conn);
        *status = ERR_SSL_INIT_CONNECTION;
        return NULL;
    }
    if ((int64_t) g_generation[slot] * g_capacity + slot + 1 >= INT32_MAX - g_capacity) {
        g_generation[slot] = 0;
    }
    conn->instance = g_generation[slot] * g_capacity + slot + 1;
    g_generation[slot]++;
    g_slots[slot] = conn;
    g_in_use++;
    pthread_mutex_unlock(&g_table_lock);

    *status = conn->instance;
    return conn;
}

pynano_conn *pynano_conn_acquire(sbyte4 instance)
{
    pynano_conn *conn = NULL;

    if (instance <= 0) {
        return NULL;
    }
    pthread_mutex_lock(&g_table_lock);
    if (g_slots != NULL) {
        pynano_conn *candidate = g_slots[(instance - 1) % g_capacity];

        if (candidate != NULL && candidate->instance == instance && !candidate->closing) {
            candidate->references++;
            conn = candidate;
        }
    }
    pthread_mutex_unlock(&g_table_lock);
    return conn;
}

void pynano_conn_release(pynano_conn *conn)
{
    int free_now;

    pthread_mutex_lock(&g_table_lock);
    conn->references--;
    free_now = conn->references == 0;
    pthread_mutex_unlock(&g_table_lock);
    if (free_now) {
        conn_destroy(conn);
    }
}

void pynano_conn_unlink(pynano_conn *conn)
{
    pthread_mutex_lock(&g_table_lock);
    if (!conn->closing) {
        conn->closing = 1;
        conn->references--;     /* the reference held while open */
        if (g_slots != NULL && conn->instance > 0) {
            sbyte4 slot = (conn->instance - 1) % g_capacity;

            if (g_slots[slot] == conn) {
                g_slots[slot] = NULL;
                g_in_use--;
            }
        }
    }
    pthread_mutex_unlock(&g_table_lock);
}

sbyte4 PYNANO_getTableUsage(sbyte4 *pInUse, sbyte4 *pCapacity)
{
    if (pInUse == NULL || pCapacity == NULL) {
        return ERR_NULL_POINTER;
    }
    pthread_mutex_lock(&g_table_lock);
    *pInUse = g_in_use;
    *pCapacity = g_capacity;
    pthread_mutex_unlock(&g_table_lock);
    return OK;
}
