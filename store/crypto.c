#include "crypto.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define HKDF_SALT          "ai-relay"
#define HKDF_INFO_HASH     "ars api-key hash v1"
#define HKDF_INFO_SECRETS  "ars secrets v1"

#define BLOB_PREFIX        "v1."
#define BLOB_PREFIX_LEN    3
#define GCM_NONCE_LEN      12
#define GCM_TAG_LEN        16

#define PW_LN              15
#define PW_R               8
#define PW_P               1
#define PW_SALT_LEN        16
#define PW_HASH_LEN        32
#define PW_SALT_MIN        8       /* accepted when reading a stored hash */
#define PW_SALT_MAX        64
#define PW_HASH_MIN        16
#define PW_HASH_MAX        64

static const char hex_digits[] = "0123456789abcdef";

/* A failed OpenSSL call leaves entries on this thread's error queue; clear
 * them so TLS code sharing the thread (libcurl, hiredis) does not later
 * read them as its own. */
static enum ars_err ossl_fail(enum ars_err err)
{
    ERR_clear_error();
    return err;
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* Not isxdigit(): that depends on the locale. */
static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int ars_crypto_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* ---- base64 --------------------------------------------------------- */

static const char b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static enum ars_err b64_encode(const char *alpha, const void *in, size_t n, char *out,
                               size_t outcap)
{
    const unsigned char *p = in;
    if (n > SIZE_MAX / 4 * 3 - 3 || ARS_B64_ENCODED_LEN(n) >= outcap)
        return ARS_ERR_TOOBIG;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned long v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8 | p[i + 2];
        out[o++] = alpha[(v >> 18) & 63];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        out[o++] = alpha[v & 63];
    }
    if (n - i == 1) {
        unsigned long v = (unsigned long)p[i] << 16;
        out[o++] = alpha[(v >> 18) & 63];
        out[o++] = alpha[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned long v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8;
        out[o++] = alpha[(v >> 18) & 63];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
    }
    out[o] = '\0';
    return ARS_OK;
}

static int b64_value(char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Strict: the leftover bits of the last character must be zero, so that
 * no two strings decode to the same bytes (a flipped low bit in the last
 * character of a blob must not go unnoticed). */
static enum ars_err b64_decode(int url, const char *in, size_t len, void *out, size_t outcap,
                               size_t *outlen)
{
    unsigned char *o = out;
    if (len % 4 == 1)
        return ARS_ERR_INVALID;
    if (ARS_B64_DECODED_MAX(len) > outcap)
        return ARS_ERR_TOOBIG;
    unsigned long acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i], url);
        if (v < 0)
            return ARS_ERR_INVALID;
        acc = (acc << 6 | (unsigned long)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (acc & ((1UL << bits) - 1))
        return ARS_ERR_INVALID;
    if (outlen)
        *outlen = n;
    return ARS_OK;
}

enum ars_err ars_b64url_encode(const void *in, size_t n, char *out, size_t outcap)
{
    return b64_encode(b64_url, in, n, out, outcap);
}

enum ars_err ars_b64url_decode(const char *in, size_t len, void *out, size_t outcap,
                               size_t *outlen)
{
    return b64_decode(1, in, len, out, outcap, outlen);
}

enum ars_err ars_b64_encode(const void *in, size_t n, char *out, size_t outcap)
{
    return b64_encode(b64_std, in, n, out, outcap);
}

enum ars_err ars_b64_decode(const char *in, size_t len, void *out, size_t outcap,
                            size_t *outlen)
{
    return b64_decode(0, in, len, out, outcap, outlen);
}

/* ---- random --------------------------------------------------------- */

enum ars_err ars_crypto_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1)
            return ossl_fail(ARS_ERR_UNAVAILABLE);
        p += chunk;
        n -= (size_t)chunk;
    }
    return ARS_OK;
}

enum ars_err ars_crypto_random_hex(char *out, size_t nbytes)
{
    unsigned char tmp[64];
    size_t done = 0;
    enum ars_err err = ARS_OK;
    out[0] = '\0';
    while (done < nbytes) {
        size_t chunk = nbytes - done < sizeof(tmp) ? nbytes - done : sizeof(tmp);
        err = ars_crypto_random(tmp, chunk);
        if (err)
            goto out;
        to_hex(tmp, chunk, out + 2 * done);
        done += chunk;
    }
out:
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return err;
}

enum ars_err ars_crypto_new_api_key(char out[ARS_API_KEY_LEN + 1])
{
    memcpy(out, ARS_API_KEY_PREFIX, 3);
    return ars_crypto_random_hex(out + 3, 32);
}

int ars_crypto_api_key_format_ok(const char *key)
{
    if (!key || strncmp(key, ARS_API_KEY_PREFIX, 3) != 0)
        return 0;
    for (size_t i = 3; i < ARS_API_KEY_LEN; i++)   /* stops at a NUL: not hex */
        if (!is_hex(key[i]))
            return 0;
    return key[ARS_API_KEY_LEN] == '\0';
}

enum ars_err ars_crypto_uuid_v4(char out[ARS_UUID_LEN + 1])
{
    unsigned char b[16];
    enum ars_err err = ars_crypto_random(b, sizeof(b));
    if (err)
        return err;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);   /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    size_t o = 0;
    for (size_t i = 0; i < sizeof(b); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex_digits[b[i] >> 4];
        out[o++] = hex_digits[b[i] & 0x0f];
    }
    out[o] = '\0';
    return ARS_OK;
}

/* ---- primitives ----------------------------------------------------- */

/* Fetching "HMAC" and "SHA256" by name on each call costs about a
 * microsecond, which the hot path (one hash per key-cache miss) can afford;
 * it keeps struct ars_crypto_keys plain data with nothing to free. */
enum ars_err ars_crypto_hmac_sha256(const void *key, size_t keylen, const void *msg,
                                    size_t msglen, unsigned char out[32])
{
    enum ars_err err = ARS_OK;
    EVP_MAC *mac = NULL;
    EVP_MAC_CTX *ctx = NULL;
    size_t outlen = 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()
    };

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!mac) {
        err = ossl_fail(ARS_ERR_UNAVAILABLE);
        goto out;
    }
    ctx = EVP_MAC_CTX_new(mac);
    if (!ctx) {
        err = ossl_fail(ARS_ERR_NOMEM);
        goto out;
    }
    /* A NULL key would mean "reuse the previous key", which there is not. */
    if (!EVP_MAC_init(ctx, keylen ? key : (const void *)"", keylen, params) ||
        !EVP_MAC_update(ctx, msglen ? msg : (const void *)"", msglen) ||
        !EVP_MAC_final(ctx, out, &outlen, 32) || outlen != 32) {
        err = ossl_fail(ARS_ERR_NOMEM);
        goto out;
    }
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return err;
}

/* Runs one of OpenSSL's KDFs by name with ready parameters. A failure
 * after the callers' argument checks is an allocation failure. */
static enum ars_err run_kdf(const char *name, const OSSL_PARAM *params, void *out, size_t outlen)
{
    enum ars_err err = ARS_OK;
    EVP_KDF_CTX *ctx = NULL;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, name, NULL);
    if (!kdf) {
        err = ossl_fail(ARS_ERR_UNAVAILABLE);
        goto out;
    }
    ctx = EVP_KDF_CTX_new(kdf);
    if (!ctx) {
        err = ossl_fail(ARS_ERR_NOMEM);
        goto out;
    }
    if (EVP_KDF_derive(ctx, out, outlen, params) != 1)
        err = ossl_fail(ARS_ERR_NOMEM);
out:
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return err;
}

enum ars_err ars_crypto_hkdf_sha256(const void *ikm, size_t ikmlen, const void *salt,
                                    size_t saltlen, const void *info, size_t infolen,
                                    void *out, size_t outlen)
{
    OSSL_PARAM params[5], *p = params;

    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen);
    if (saltlen)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
    if (infolen)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
    *p = OSSL_PARAM_construct_end();

    if (!ikm || !ikmlen || !outlen || outlen > 255 * 32)
        return ARS_ERR_INVALID;
    return run_kdf("HKDF", params, out, outlen);
}

/* Memory OpenSSL's scrypt allocates: B (128*r*p) and V (128*r*(N+2)).
 * Checked here so the limit is ours and overflow-free. */
static enum ars_err scrypt_mem_ok(uint64_t n, uint32_t r, uint32_t p)
{
    const uint64_t max = ARS_CRYPTO_SCRYPT_MAX_MEM;
    if (n > max / 128 || (uint64_t)p > max / 128)
        return ARS_ERR_TOOBIG;
    if ((uint64_t)r > max / 128 / (n + 2 + p))
        return ARS_ERR_TOOBIG;
    return ARS_OK;
}

enum ars_err ars_crypto_scrypt(const void *pass, size_t passlen, const void *salt,
                               size_t saltlen, uint64_t n, uint32_t r, uint32_t p,
                               void *out, size_t outlen)
{
    enum ars_err err;
    uint64_t maxmem = ARS_CRYPTO_SCRYPT_MAX_MEM;

    if (n < 2 || (n & (n - 1)) || r == 0 || p == 0 || outlen == 0)
        return ARS_ERR_INVALID;
    /* RFC 7914's own bounds, which OpenSSL enforces: N < 2^(128*r/8) and
     * p <= (2^32-1)*32 / (128*r). */
    if ((r < 4 && n >= (1ULL << (16 * r))) ||
        (uint64_t)p * 128 * r > 0xffffffffULL * 32)
        return ARS_ERR_INVALID;
    err = scrypt_mem_ok(n, r, p);
    if (err)
        return err;

    /* Empty password or salt are legal (RFC 7914 vector 1); OpenSSL wants
     * a non-NULL pointer either way. */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                          passlen ? (void *)pass : (void *)"", passlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                          saltlen ? (void *)salt : (void *)"", saltlen),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end()
    };

    /* Arguments were checked above, so a failure here is the large
     * allocation (or OpenSSL's own limits on r and p). */
    return run_kdf("SCRYPT", params, out, outlen);
}

enum ars_err ars_crypto_gcm_seal(const unsigned char key[32], const unsigned char nonce[12],
                                 const void *aad, size_t aadlen, const void *plain,
                                 size_t n, unsigned char *ct, unsigned char tag[16])
{
    enum ars_err err = ARS_OK;
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char fin[16];
    int len = 0;

    if (n > INT_MAX || aadlen > INT_MAX)
        return ARS_ERR_TOOBIG;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return ossl_fail(ARS_ERR_NOMEM);
    /* GCM's default IV length is 12 bytes, so no EVP_CTRL_GCM_SET_IVLEN. */
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1)
        goto fail;
    if (aadlen && EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aadlen) != 1)
        goto fail;
    if (n && EVP_EncryptUpdate(ctx, ct, &len, plain, (int)n) != 1)
        goto fail;
    if (EVP_EncryptFinal_ex(ctx, fin, &len) != 1)   /* GCM writes nothing here */
        goto fail;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, tag) != 1)
        goto fail;
    goto out;
fail:
    err = ossl_fail(ARS_ERR_NOMEM);
out:
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

enum ars_err ars_crypto_gcm_open(const unsigned char key[32], const unsigned char nonce[12],
                                 const void *aad, size_t aadlen, const unsigned char *ct,
                                 size_t n, const unsigned char tag[16], void *plain)
{
    enum ars_err err = ARS_OK;
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *pt = plain;
    unsigned char fin[16];
    int len = 0;

    if (n > INT_MAX || aadlen > INT_MAX)
        return ARS_ERR_TOOBIG;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return ossl_fail(ARS_ERR_NOMEM);
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        (aadlen && EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aadlen) != 1) ||
        (n && EVP_DecryptUpdate(ctx, pt, &len, ct, (int)n) != 1) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, (void *)tag) != 1) {
        err = ossl_fail(ARS_ERR_NOMEM);
        goto out;
    }
    /* The tag is checked here; until then plain holds unauthenticated
     * bytes, which must not leak to the caller. */
    if (EVP_DecryptFinal_ex(ctx, fin, &len) != 1) {
        err = ossl_fail(ARS_ERR_INVALID);
        goto out;
    }
out:
    if (err && n)
        OPENSSL_cleanse(pt, n);
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

/* ---- keys ----------------------------------------------------------- */

enum ars_err ars_crypto_keys_derive(const char *encryption_key, struct ars_crypto_keys *out)
{
    enum ars_err err;
    size_t len = encryption_key ? strlen(encryption_key) : 0;

    memset(out, 0, sizeof(*out));
    if (len < 32)
        return ARS_ERR_INVALID;
    err = ars_crypto_hkdf_sha256(encryption_key, len, HKDF_SALT, strlen(HKDF_SALT),
                                 HKDF_INFO_HASH, strlen(HKDF_INFO_HASH),
                                 out->hash_key, sizeof(out->hash_key));
    if (!err)
        err = ars_crypto_hkdf_sha256(encryption_key, len, HKDF_SALT, strlen(HKDF_SALT),
                                     HKDF_INFO_SECRETS, strlen(HKDF_INFO_SECRETS),
                                     out->secrets_key, sizeof(out->secrets_key));
    if (err)
        ars_crypto_keys_clear(out);
    return err;
}

void ars_crypto_keys_clear(struct ars_crypto_keys *k)
{
    if (k)
        OPENSSL_cleanse(k, sizeof(*k));
}

enum ars_err ars_crypto_key_hash(const struct ars_crypto_keys *k, const char *api_key,
                                 char out_hex[ARS_CRYPTO_HASH_HEX_LEN + 1])
{
    unsigned char mac[32];
    enum ars_err err = ars_crypto_hmac_sha256(k->hash_key, sizeof(k->hash_key), api_key,
                                              strlen(api_key), mac);
    if (!err)
        to_hex(mac, sizeof(mac), out_hex);
    return err;
}

/* ---- secrets at rest ------------------------------------------------ */

enum ars_err ars_crypto_encrypt(const struct ars_crypto_keys *k, const char *aad,
                                const void *plain, size_t n, char **out)
{
    enum ars_err err = ARS_OK;
    unsigned char *raw = NULL;
    char *text = NULL;
    size_t aadlen = aad ? strlen(aad) : 0;

    *out = NULL;
    /* Refuse what decrypt would refuse: the cap is on the whole text. */
    if (n > ARS_CRYPTO_MAX_BLOB ||
        BLOB_PREFIX_LEN + ARS_B64_ENCODED_LEN(GCM_NONCE_LEN + n + GCM_TAG_LEN) > ARS_CRYPTO_MAX_BLOB)
        return ARS_ERR_TOOBIG;
    size_t rawlen = GCM_NONCE_LEN + n + GCM_TAG_LEN;
    size_t textcap = BLOB_PREFIX_LEN + ARS_B64_ENCODED_LEN(rawlen) + 1;

    raw = malloc(rawlen);
    text = malloc(textcap);
    if (!raw || !text) {
        err = ARS_ERR_NOMEM;
        goto out;
    }
    /* Random 96-bit nonces: collision odds stay negligible far beyond the
     * number of secrets one deployment will ever encrypt under one key. */
    err = ars_crypto_random(raw, GCM_NONCE_LEN);
    if (err)
        goto out;
    err = ars_crypto_gcm_seal(k->secrets_key, raw, aad, aadlen, plain, n,
                              raw + GCM_NONCE_LEN, raw + GCM_NONCE_LEN + n);
    if (err)
        goto out;
    memcpy(text, BLOB_PREFIX, BLOB_PREFIX_LEN);
    err = ars_b64url_encode(raw, rawlen, text + BLOB_PREFIX_LEN, textcap - BLOB_PREFIX_LEN);
    if (err)
        goto out;
    *out = text;
    text = NULL;
out:
    free(raw);
    free(text);
    return err;
}

enum ars_err ars_crypto_decrypt(const struct ars_crypto_keys *k, const char *aad,
                                const char *blob, char **out, size_t *out_len)
{
    enum ars_err err = ARS_OK;
    unsigned char *raw = NULL;
    char *plain = NULL;
    size_t rawlen = 0;
    size_t aadlen = aad ? strlen(aad) : 0;

    *out = NULL;
    if (out_len)
        *out_len = 0;
    size_t len = strnlen(blob, ARS_CRYPTO_MAX_BLOB + 1);
    if (len > ARS_CRYPTO_MAX_BLOB)
        return ARS_ERR_TOOBIG;
    if (len < BLOB_PREFIX_LEN || memcmp(blob, BLOB_PREFIX, BLOB_PREFIX_LEN) != 0)
        return ARS_ERR_INVALID;
    const char *body = blob + BLOB_PREFIX_LEN;
    size_t bodylen = len - BLOB_PREFIX_LEN;
    if (ARS_B64_DECODED_MAX(bodylen) < GCM_NONCE_LEN + GCM_TAG_LEN)
        return ARS_ERR_INVALID;

    raw = malloc(ARS_B64_DECODED_MAX(bodylen));
    if (!raw)
        return ARS_ERR_NOMEM;
    err = ars_b64url_decode(body, bodylen, raw, ARS_B64_DECODED_MAX(bodylen), &rawlen);
    if (err)
        goto out;
    if (rawlen < GCM_NONCE_LEN + GCM_TAG_LEN) {
        err = ARS_ERR_INVALID;
        goto out;
    }
    size_t n = rawlen - GCM_NONCE_LEN - GCM_TAG_LEN;
    plain = malloc(n + 1);
    if (!plain) {
        err = ARS_ERR_NOMEM;
        goto out;
    }
    err = ars_crypto_gcm_open(k->secrets_key, raw, aad, aadlen, raw + GCM_NONCE_LEN, n,
                              raw + GCM_NONCE_LEN + n, plain);
    if (err)
        goto out;
    plain[n] = '\0';
    *out = plain;
    plain = NULL;
    if (out_len)
        *out_len = n;
out:
    free(plain);   /* gcm_open already wiped it on failure */
    free(raw);
    return err;
}

/* ---- admin passwords ------------------------------------------------ */

/* Reads a decimal number of at most 9 digits without a leading zero. */
static int parse_uint(const char **s, unsigned long *out)
{
    const char *p = *s;
    unsigned long v = 0;
    int digits = 0;
    if (*p == '0' && p[1] >= '0' && p[1] <= '9')
        return -1;
    while (*p >= '0' && *p <= '9' && digits < 10) {
        v = v * 10 + (unsigned long)(*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || digits > 9)
        return -1;
    *s = p;
    *out = v;
    return 0;
}

static int expect(const char **s, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0)
        return -1;
    *s += n;
    return 0;
}

struct scrypt_stored {
    unsigned long ln, r, p;
    unsigned char salt[PW_SALT_MAX];
    size_t saltlen;
    unsigned char hash[PW_HASH_MAX];
    size_t hashlen;
};

/* "$scrypt$ln=L,r=R,p=P$<salt>$<hash>", with bounds on every parameter so
 * a hostile row cannot turn a login into a memory or CPU bomb. */
static enum ars_err parse_stored(const char *s, struct scrypt_stored *st)
{
    if (expect(&s, "$scrypt$ln=") || parse_uint(&s, &st->ln) ||
        expect(&s, ",r=") || parse_uint(&s, &st->r) ||
        expect(&s, ",p=") || parse_uint(&s, &st->p) || expect(&s, "$"))
        return ARS_ERR_INVALID;
    if (st->ln < 1 || st->ln > ARS_CRYPTO_SCRYPT_MAX_LN || st->r < 1 || st->p < 1 ||
        st->r > ARS_CRYPTO_SCRYPT_MAX_RP || st->p > ARS_CRYPTO_SCRYPT_MAX_RP ||
        st->r * st->p > ARS_CRYPTO_SCRYPT_MAX_RP)
        return ARS_ERR_INVALID;
    if (scrypt_mem_ok(1ULL << st->ln, (uint32_t)st->r, (uint32_t)st->p))
        return ARS_ERR_INVALID;

    const char *dollar = strchr(s, '$');
    if (!dollar)
        return ARS_ERR_INVALID;
    if (ars_b64_decode(s, (size_t)(dollar - s), st->salt, sizeof(st->salt), &st->saltlen) ||
        st->saltlen < PW_SALT_MIN)
        return ARS_ERR_INVALID;
    s = dollar + 1;
    if (ars_b64_decode(s, strlen(s), st->hash, sizeof(st->hash), &st->hashlen) ||
        st->hashlen < PW_HASH_MIN)
        return ARS_ERR_INVALID;
    return ARS_OK;
}

enum ars_err ars_crypto_password_hash(const char *password, char **out)
{
    enum ars_err err;
    unsigned char salt[PW_SALT_LEN], hash[PW_HASH_LEN];
    char salt64[ARS_B64_ENCODED_LEN(PW_SALT_LEN) + 1];
    char hash64[ARS_B64_ENCODED_LEN(PW_HASH_LEN) + 1];
    char *text = NULL;

    *out = NULL;
    size_t pwlen = strnlen(password, ARS_CRYPTO_MAX_PASSWORD + 1);
    if (pwlen > ARS_CRYPTO_MAX_PASSWORD)
        return ARS_ERR_TOOBIG;
    err = ars_crypto_random(salt, sizeof(salt));
    if (err)
        goto out;
    err = ars_crypto_scrypt(password, pwlen, salt, sizeof(salt), 1ULL << PW_LN, PW_R, PW_P,
                            hash, sizeof(hash));
    if (err)
        goto out;
    if ((err = ars_b64_encode(salt, sizeof(salt), salt64, sizeof(salt64))) != ARS_OK ||
        (err = ars_b64_encode(hash, sizeof(hash), hash64, sizeof(hash64))) != ARS_OK)
        goto out;
    int need = snprintf(NULL, 0, "$scrypt$ln=%d,r=%d,p=%d$%s$%s",
                        PW_LN, PW_R, PW_P, salt64, hash64);
    if (need < 0) {
        err = ARS_ERR_INVALID;
        goto out;
    }
    text = malloc((size_t)need + 1);
    if (!text) {
        err = ARS_ERR_NOMEM;
        goto out;
    }
    snprintf(text, (size_t)need + 1, "$scrypt$ln=%d,r=%d,p=%d$%s$%s",
             PW_LN, PW_R, PW_P, salt64, hash64);
    *out = text;
out:
    OPENSSL_cleanse(hash, sizeof(hash));
    return err;
}

enum ars_err ars_crypto_password_verify(const char *password, const char *stored, int *match)
{
    enum ars_err err;
    struct scrypt_stored st;
    unsigned char hash[PW_HASH_MAX];

    *match = 0;
    size_t pwlen = strnlen(password, ARS_CRYPTO_MAX_PASSWORD + 1);
    if (pwlen > ARS_CRYPTO_MAX_PASSWORD)
        return ARS_ERR_TOOBIG;
    err = parse_stored(stored, &st);
    if (err)
        goto out;
    err = ars_crypto_scrypt(password, pwlen, st.salt, st.saltlen, 1ULL << st.ln,
                            (uint32_t)st.r, (uint32_t)st.p, hash, st.hashlen);
    if (err)
        goto out;
    *match = ars_crypto_equal(hash, st.hash, st.hashlen);
out:
    OPENSSL_cleanse(hash, sizeof(hash));
    OPENSSL_cleanse(&st, sizeof(st));
    return err;
}
