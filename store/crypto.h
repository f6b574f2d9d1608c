/* Cryptography for keys, secrets at rest and admin passwords (DESIGN.md §6),
 * on OpenSSL 3 EVP APIs only.
 *
 * - Client API keys: "cr_" + 64 hex from the CSPRNG; only a keyed hash
 *   (HMAC-SHA256 under a subkey of ENCRYPTION_KEY) is stored.
 * - Account secrets: AES-256-GCM under another subkey, as the text
 *   "v1." + base64url(nonce || ciphertext || tag), optionally bound to
 *   their record by AAD.
 * - Admin passwords: scrypt, stored with their parameters so they can be
 *   raised later without breaking old hashes.
 *
 * Subkeys are derived once (ars_crypto_keys_derive, at config load) so the
 * hot path only runs one HMAC. A struct ars_crypto_keys is plain data,
 * read-only after derivation and safe to share between threads. */
#ifndef ARS_STORE_CRYPTO_H
#define ARS_STORE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define ARS_API_KEY_PREFIX        "cr_"
#define ARS_API_KEY_LEN           67               /* "cr_" + 64 hex */
#define ARS_UUID_LEN              36               /* 8-4-4-4-12 */
#define ARS_CRYPTO_HASH_HEX_LEN   64               /* ars_crypto_key_hash output */
#define ARS_CRYPTO_MAX_BLOB       (1024 * 1024)    /* encrypted text, whole */
#define ARS_CRYPTO_MAX_PASSWORD   1024             /* bytes */

/* Limits on scrypt parameters read back from a stored hash, so a hostile
 * or corrupt row cannot make a login allocate gigabytes or spin minutes. */
#define ARS_CRYPTO_SCRYPT_MAX_LN     20
#define ARS_CRYPTO_SCRYPT_MAX_RP     64                   /* r * p */
#define ARS_CRYPTO_SCRYPT_MAX_MEM    (256ULL * 1024 * 1024)

/* Encoded length of n bytes in unpadded base64 (either alphabet), NUL not
 * included; and the most bytes that len characters can decode to. */
#define ARS_B64_ENCODED_LEN(n)    (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))
#define ARS_B64_DECODED_MAX(len)  (((len) / 4) * 3 + ((len) % 4 ? (len) % 4 - 1 : 0))

struct ars_crypto_keys {
    unsigned char hash_key[32];     /* HMAC key for client-key hashes */
    unsigned char secrets_key[32];  /* AES-256-GCM key for account secrets */
};

/* Derives both subkeys from ENCRYPTION_KEY with HKDF-SHA256 (salt
 * "ai-relay"). ARS_ERR_INVALID when the key is NULL or shorter than 32
 * bytes (the config refuses those before we get here). */
ARS_MUST_USE enum ars_err ars_crypto_keys_derive(const char *encryption_key, struct ars_crypto_keys *out);
/* Wipes the subkeys; accepts NULL. */
void ars_crypto_keys_clear(struct ars_crypto_keys *k);

/* CSPRNG bytes. ARS_ERR_UNAVAILABLE if the RNG cannot be seeded. */
ARS_MUST_USE enum ars_err ars_crypto_random(void *buf, size_t n);
/* 2*nbytes lowercase hex chars + NUL; out must hold 2*nbytes + 1. */
ARS_MUST_USE enum ars_err ars_crypto_random_hex(char *out, size_t nbytes);
/* A new client key: "cr_" + 64 lowercase hex from 32 random bytes. */
ARS_MUST_USE enum ars_err ars_crypto_new_api_key(char out[ARS_API_KEY_LEN + 1]);
/* True when key is "cr_" + exactly 64 hex chars (either case). Only a
 * format check, for a clear "bad format" error before any lookup. */
int ars_crypto_api_key_format_ok(const char *key);
/* Random (version 4) UUID, lowercase, NUL-terminated. */
ARS_MUST_USE enum ars_err ars_crypto_uuid_v4(char out[ARS_UUID_LEN + 1]);

/* What is stored instead of a client key: lowercase hex of
 * HMAC-SHA256(hash subkey, api_key). Deterministic, so it is the lookup key. */
ARS_MUST_USE enum ars_err ars_crypto_key_hash(const struct ars_crypto_keys *k, const char *api_key,
                                 char out_hex[ARS_CRYPTO_HASH_HEX_LEN + 1]);

/* Encrypts n bytes to a malloc'd "v1.<base64url>" string. aad (NULL is the
 * same as "") binds the ciphertext to its record, e.g. the account id: the
 * same aad must be given to decrypt. ARS_ERR_TOOBIG when the result would
 * exceed ARS_CRYPTO_MAX_BLOB (it could not be decrypted). */
ARS_MUST_USE enum ars_err ars_crypto_encrypt(const struct ars_crypto_keys *k, const char *aad,
                                const void *plain, size_t n, char **out);
/* Decrypts a blob from ars_crypto_encrypt into malloc'd plaintext with a NUL
 * after it (*out_len excludes it; out_len may be NULL). Any unknown version,
 * bad encoding, short blob, wrong key, wrong aad or changed byte is
 * ARS_ERR_INVALID; a blob over ARS_CRYPTO_MAX_BLOB is ARS_ERR_TOOBIG. */
ARS_MUST_USE enum ars_err ars_crypto_decrypt(const struct ars_crypto_keys *k, const char *aad,
                                const char *blob, char **out, size_t *out_len);

/* scrypt (ln=15, r=8, p=1, 16-byte salt, 32-byte hash) to a malloc'd
 * "$scrypt$ln=15,r=8,p=1$<salt>$<hash>" (standard base64, no padding).
 * About 32 MiB and tens of milliseconds per call. */
ARS_MUST_USE enum ars_err ars_crypto_password_hash(const char *password, char **out);
/* *match = 1 when password hashes to stored under the parameters written in
 * stored, compared in constant time. ARS_ERR_INVALID for a malformed stored
 * string or parameters over the ARS_CRYPTO_SCRYPT_* limits; ARS_ERR_TOOBIG
 * for a password over ARS_CRYPTO_MAX_PASSWORD. */
ARS_MUST_USE enum ars_err ars_crypto_password_verify(const char *password, const char *stored, int *match);

/* Constant-time comparison: 1 when equal. */
int ars_crypto_equal(const void *a, const void *b, size_t n);

/* Unpadded base64: "url" uses - and _ (JWT, blobs), the other + and / (the
 * password format). Encoders write ARS_B64_ENCODED_LEN(n) chars + NUL and
 * need outcap above that (ARS_ERR_TOOBIG otherwise). Decoders are strict:
 * padding, other characters, an impossible length or non-zero unused bits
 * are ARS_ERR_INVALID, so each byte string has exactly one encoding;
 * ARS_ERR_TOOBIG when the result would not fit outcap. */
ARS_MUST_USE enum ars_err ars_b64url_encode(const void *in, size_t n, char *out, size_t outcap);
ARS_MUST_USE enum ars_err ars_b64url_decode(const char *in, size_t len, void *out, size_t outcap,
                               size_t *outlen);
ARS_MUST_USE enum ars_err ars_b64_encode(const void *in, size_t n, char *out, size_t outcap);
ARS_MUST_USE enum ars_err ars_b64_decode(const char *in, size_t len, void *out, size_t outcap,
                            size_t *outlen);

/* Primitives, exported for known-answer tests and for the JWT code. */
ARS_MUST_USE enum ars_err ars_crypto_hmac_sha256(const void *key, size_t keylen, const void *msg,
                                    size_t msglen, unsigned char out[32]);
ARS_MUST_USE enum ars_err ars_crypto_hkdf_sha256(const void *ikm, size_t ikmlen, const void *salt,
                                    size_t saltlen, const void *info, size_t infolen,
                                    void *out, size_t outlen);
/* Raw scrypt with N = n (a power of two > 1); refuses more memory than
 * ARS_CRYPTO_SCRYPT_MAX_MEM with ARS_ERR_TOOBIG. */
ARS_MUST_USE enum ars_err ars_crypto_scrypt(const void *pass, size_t passlen, const void *salt,
                               size_t saltlen, uint64_t n, uint32_t r, uint32_t p,
                               void *out, size_t outlen);
/* AES-256-GCM with a 12-byte nonce and 16-byte tag; ct/plain of n bytes
 * (may alias). open: ARS_ERR_INVALID when the tag does not verify, and
 * plain is then wiped. */
ARS_MUST_USE enum ars_err ars_crypto_gcm_seal(const unsigned char key[32], const unsigned char nonce[12],
                                 const void *aad, size_t aadlen, const void *plain,
                                 size_t n, unsigned char *ct, unsigned char tag[16]);
ARS_MUST_USE enum ars_err ars_crypto_gcm_open(const unsigned char key[32], const unsigned char nonce[12],
                                 const void *aad, size_t aadlen, const unsigned char *ct,
                                 size_t n, const unsigned char tag[16], void *plain);

#endif
