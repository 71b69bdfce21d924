/*
 * pynano_info.c - facts about the compiled library for `pynano info`.
 */
/* First, so MBEDTLS_ALLOW_PRIVATE_ACCESS precedes every Mbed TLS header. */
#include "nanossl_internal.h"

#include <string.h>

#include "mbedtls/build_info.h"
#include "mbedtls/version.h"

/* Internal Mbed TLS header, on the include path because library/ is. */
#include "aesni.h"

void PYNANO_getBuildInfo(pynano_build_info *info)
{
    memset(info, 0, sizeof(*info));
    /* Read from the compiled library, not the header, so a mismatched
     * include path would show. */
    mbedtls_version_get_string_full(info->mbedtls_version);
#ifdef __ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__
    info->mutual_auth_support = 1;
#endif
#ifdef __ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__
    info->cipher_suites_select = 1;
#endif
#ifdef MBEDTLS_SSL_PROTO_TLS1_2
    info->tls12 = 1;
#endif
#ifdef MBEDTLS_SSL_PROTO_TLS1_3
    info->tls13 = 1;
#endif
#ifdef MBEDTLS_AESNI_C
    info->aesni = mbedtls_aesni_has_support(MBEDTLS_AESNI_AES | MBEDTLS_AESNI_CLMUL);
#endif
}
