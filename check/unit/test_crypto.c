/* Keys, secrets at rest and password hashing: known-answer vectors for the
 * primitives, then the behaviour callers rely on. */
#include <check.h>
#include "plan.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

#define EK1 "0123456789abcdef0123456789abcdef"
#define EK2 "fedcba9876543210fedcba9876543210"

static void from_hex(const char *hex, unsigned char *out, size_t n)
{
    ck_assert_uint_eq(strlen(hex), 2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned int v;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
}

static void assert_bytes_hex(const unsigned char *got, size_t n, const char *want_hex)
{
    char hex[1024];
    ck_assert_uint_lt(2 * n, sizeof(hex));
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", got[i]);
    ck_assert_str_eq(hex, want_hex);
}

static int all_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static struct ars_crypto_keys derive(const char *ek)
{
    struct ars_crypto_keys k;
    ck_assert_int_eq(ars_crypto_keys_derive(ek, &k), ARS_OK);
    return k;
}

/* ---- known answers -------------------------------------------------- */

START_TEST(hmac_sha256_matches_rfc4231_test_case_2)
{
    unsigned char mac[32];
    const char *msg = "what do ya want for nothing?";
    ck_assert_int_eq(ars_crypto_hmac_sha256("Jefe", 4, msg, strlen(msg), mac), ARS_OK);
    assert_bytes_hex(mac, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
END_TEST

START_TEST(hkdf_sha256_matches_rfc5869_test_case_1)
{
    unsigned char ikm[22], salt[13], info[10], okm[42];
    memset(ikm, 0x0b, sizeof(ikm));
    for (size_t i = 0; i < sizeof(salt); i++)
        salt[i] = (unsigned char)i;
    for (size_t i = 0; i < sizeof(info); i++)
        info[i] = (unsigned char)(0xf0 + i);
    ck_assert_int_eq(ars_crypto_hkdf_sha256(ikm, sizeof(ikm), salt, sizeof(salt), info,
                                            sizeof(info), okm, sizeof(okm)), ARS_OK);
    assert_bytes_hex(okm, sizeof(okm),
                     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                     "34007208d5b887185865");
}
END_TEST

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16. */
START_TEST(gcm_matches_mcgrew_viega_test_case_16_both_ways)
{
    unsigned char key[32], iv[12], aad[20], pt[60], ct[60], tag[16], out[60];
    from_hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, 32);
    from_hex("cafebabefacedbaddecaf888", iv, 12);
    from_hex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
    from_hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
             "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", pt, 60);
    const char *want_ct = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                          "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
    const char *want_tag = "76fc6ece0f4e1768cddf8853bb2d551b";

    ck_assert_int_eq(ars_crypto_gcm_seal(key, iv, aad, 20, pt, 60, ct, tag), ARS_OK);
    assert_bytes_hex(ct, 60, want_ct);
    assert_bytes_hex(tag, 16, want_tag);

    ck_assert_int_eq(ars_crypto_gcm_open(key, iv, aad, 20, ct, 60, tag, out), ARS_OK);
    ck_assert_mem_eq(out, pt, 60);

    tag[0] ^= 1;
    ck_assert_int_eq(ars_crypto_gcm_open(key, iv, aad, 20, ct, 60, tag, out), ARS_ERR_INVALID);
    unsigned char zero[60] = { 0 };
    ck_assert_mem_eq(out, zero, 60);   /* unauthenticated plaintext is wiped */
}
END_TEST

START_TEST(scrypt_matches_rfc7914_vectors)
{
    unsigned char out[64];
    ck_assert_int_eq(ars_crypto_scrypt("", 0, "", 0, 16, 1, 1, out, 64), ARS_OK);
    assert_bytes_hex(out, 64,
                     "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
                     "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906");
    ck_assert_int_eq(ars_crypto_scrypt("password", 8, "NaCl", 4, 1024, 8, 16, out, 64), ARS_OK);
    assert_bytes_hex(out, 64,
                     "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
                     "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");
}
END_TEST

START_TEST(scrypt_refuses_bad_parameters_and_memory_over_the_cap)
{
    unsigned char out[32];
    ck_assert_int_eq(ars_crypto_scrypt("a", 1, "b", 1, 1000, 8, 1, out, 32), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_crypto_scrypt("a", 1, "b", 1, 1, 8, 1, out, 32), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_crypto_scrypt("a", 1, "b", 1, 1024, 0, 1, out, 32), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_crypto_scrypt("a", 1, "b", 1, 1ULL << 20, 1, 1, out, 32),
                     ARS_ERR_INVALID);   /* N >= 2^(16r) */
    ck_assert_int_eq(ars_crypto_scrypt("a", 1, "b", 1, 1ULL << 20, 8, 1, out, 32),
                     ARS_ERR_TOOBIG);    /* 1 GiB */
    ck_assert_int_eq(ars_crypto_scrypt("a", 1, "b", 1, 1ULL << 62, 8, 1, out, 32),
                     ARS_ERR_TOOBIG);
}
END_TEST

/* ---- keys and key hashes -------------------------------------------- */

START_TEST(keys_derive_refuses_missing_or_short_encryption_key)
{
    struct ars_crypto_keys k;
    ck_assert_int_eq(ars_crypto_keys_derive(NULL, &k), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_crypto_keys_derive("", &k), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_crypto_keys_derive("0123456789abcdef0123456789abcde", &k),
                     ARS_ERR_INVALID);
}
END_TEST

START_TEST(keys_are_hkdf_subkeys_and_clear_wipes_them)
{
    struct ars_crypto_keys k = derive(EK1);
    /* Computed independently with `openssl kdf ... HKDF`; a change here
     * would orphan every stored key hash and secret. */
    assert_bytes_hex(k.hash_key, 32,
                     "d1deca9ffbe996442ff6852597e8b4b648197256c4483cfb6a6cdf09a109959a");
    assert_bytes_hex(k.secrets_key, 32,
                     "8bc66326264f7d38b6b71f4311ef757a55f3b4f655cd5aa2f808530276a6b6ea");
    ars_crypto_keys_clear(&k);
    unsigned char zero[sizeof(k)] = { 0 };
    ck_assert_mem_eq(&k, zero, sizeof(k));
    ars_crypto_keys_clear(NULL);
}
END_TEST

START_TEST(key_hash_of_fixed_inputs_never_changes)
{
    struct ars_crypto_keys k = derive(EK1);
    char hex[65];
    ck_assert_int_eq(ars_crypto_key_hash(&k, "cr_00112233445566778899aabbccddeeff"
                                             "00112233445566778899aabbccddeeff", hex), ARS_OK);
    /* openssl dgst -sha256 -mac HMAC -macopt hexkey:<hash subkey> */
    ck_assert_str_eq(hex, "75c07f8aebe609ac5d470be80dde773e69751af36afc32aef1d23f3e70ffb6d3");
}
END_TEST

START_TEST(key_hash_is_stable_64_hex_and_differs_per_key_and_per_encryption_key)
{
    struct ars_crypto_keys k1 = derive(EK1), k2 = derive(EK2);
    char a[65], b[65], c[65], d[65];
    const char *key1 = "cr_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const char *key2 = "cr_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab";
    ck_assert_int_eq(ars_crypto_key_hash(&k1, key1, a), ARS_OK);
    ck_assert_int_eq(ars_crypto_key_hash(&k1, key1, b), ARS_OK);
    ck_assert_int_eq(ars_crypto_key_hash(&k1, key2, c), ARS_OK);
    ck_assert_int_eq(ars_crypto_key_hash(&k2, key1, d), ARS_OK);
    ck_assert_str_eq(a, b);
    ck_assert_uint_eq(strlen(a), 64);
    ck_assert(all_lower_hex(a, 64));
    ck_assert_str_ne(a, c);
    ck_assert_str_ne(a, d);
    /* The key itself never shows through. */
    ck_assert_ptr_null(strstr(a, "aaaaaaaa"));
}
END_TEST

START_TEST(new_api_key_is_cr_prefix_and_64_lowercase_hex_and_unique)
{
    char a[ARS_API_KEY_LEN + 1], b[ARS_API_KEY_LEN + 1];
    ck_assert_int_eq(ars_crypto_new_api_key(a), ARS_OK);
    ck_assert_int_eq(ars_crypto_new_api_key(b), ARS_OK);
    ck_assert_uint_eq(strlen(a), ARS_API_KEY_LEN);
    ck_assert_int_eq(strncmp(a, "cr_", 3), 0);
    ck_assert(all_lower_hex(a + 3, 64));
    ck_assert(ars_crypto_api_key_format_ok(a));
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(api_key_format_check_accepts_only_cr_and_exactly_64_hex)
{
    const char *hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char key[128];
    snprintf(key, sizeof(key), "cr_%s", hex64);
    ck_assert(ars_crypto_api_key_format_ok(key));
    ck_assert(ars_crypto_api_key_format_ok(
        "cr_0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"));

    key[strlen(key) - 1] = '\0';                                   /* 63 hex */
    ck_assert(!ars_crypto_api_key_format_ok(key));
    snprintf(key, sizeof(key), "cr_%s0", hex64);                   /* 65 hex */
    ck_assert(!ars_crypto_api_key_format_ok(key));
    snprintf(key, sizeof(key), "cx_%s", hex64);
    ck_assert(!ars_crypto_api_key_format_ok(key));
    snprintf(key, sizeof(key), "CR_%s", hex64);
    ck_assert(!ars_crypto_api_key_format_ok(key));
    snprintf(key, sizeof(key), "sk-%s", hex64);
    ck_assert(!ars_crypto_api_key_format_ok(key));
    snprintf(key, sizeof(key), "cr_%s", hex64);
    key[40] = 'g';
    ck_assert(!ars_crypto_api_key_format_ok(key));
    key[40] = ' ';
    ck_assert(!ars_crypto_api_key_format_ok(key));
    ck_assert(!ars_crypto_api_key_format_ok("cr_"));
    ck_assert(!ars_crypto_api_key_format_ok(""));
    ck_assert(!ars_crypto_api_key_format_ok(NULL));
}
END_TEST

START_TEST(uuid_v4_has_version_4_and_rfc4122_variant)
{
    char prev[ARS_UUID_LEN + 1] = "";
    for (int i = 0; i < 200; i++) {
        char u[ARS_UUID_LEN + 1];
        ck_assert_int_eq(ars_crypto_uuid_v4(u), ARS_OK);
        ck_assert_uint_eq(strlen(u), 36);
        for (int j = 0; j < 36; j++) {
            if (j == 8 || j == 13 || j == 18 || j == 23)
                ck_assert_int_eq(u[j], '-');
            else
                ck_assert_msg(all_lower_hex(u + j, 1), "bad char in %s", u);
        }
        ck_assert_int_eq(u[14], '4');
        ck_assert_ptr_nonnull(strchr("89ab", u[19]));
        ck_assert_str_ne(u, prev);
        memcpy(prev, u, sizeof(prev));
    }
}
END_TEST

START_TEST(random_hex_writes_exactly_2n_lowercase_hex_and_nul)
{
    char buf[300];
    memset(buf, 'Z', sizeof(buf));
    ck_assert_int_eq(ars_crypto_random_hex(buf, 130), ARS_OK);   /* crosses a chunk */
    ck_assert_uint_eq(strlen(buf), 260);
    ck_assert(all_lower_hex(buf, 260));
    ck_assert_int_eq(buf[261], 'Z');
    ck_assert_int_eq(ars_crypto_random_hex(buf, 0), ARS_OK);
    ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(equal_is_true_only_for_identical_bytes)
{
    ck_assert(ars_crypto_equal("abcd", "abcd", 4));
    ck_assert(!ars_crypto_equal("abcd", "abce", 4));
    ck_assert(ars_crypto_equal("x", "y", 0));
}
END_TEST

/* ---- base64 --------------------------------------------------------- */

START_TEST(b64url_round_trips_every_length_with_url_alphabet_and_no_padding)
{
    unsigned char in[40], back[40];
    char enc[64];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(0xfb + i * 37);
    for (size_t n = 0; n <= sizeof(in); n++) {
        size_t got = 99;
        ck_assert_int_eq(ars_b64url_encode(in, n, enc, sizeof(enc)), ARS_OK);
        ck_assert_uint_eq(strlen(enc), ARS_B64_ENCODED_LEN(n));
        ck_assert_ptr_null(strpbrk(enc, "+/="));
        ck_assert_int_eq(ars_b64url_decode(enc, strlen(enc), back, sizeof(back), &got), ARS_OK);
        ck_assert_uint_eq(got, n);
        ck_assert_mem_eq(back, in, n);
    }
    ck_assert_int_eq(ars_b64url_encode("\xfb\xff", 2, enc, sizeof(enc)), ARS_OK);
    ck_assert_str_eq(enc, "-_8");
    ck_assert_int_eq(ars_b64_encode("\xfb\xff", 2, enc, sizeof(enc)), ARS_OK);
    ck_assert_str_eq(enc, "+/8");
    ck_assert_int_eq(ars_b64_encode("foobar", 6, enc, sizeof(enc)), ARS_OK);
    ck_assert_str_eq(enc, "Zm9vYmFy");
}
END_TEST

START_TEST(b64_decoders_reject_padding_foreign_chars_bad_length_and_stray_bits)
{
    unsigned char out[16];
    size_t n;
    ck_assert_int_eq(ars_b64url_decode("Zm8=", 4, out, sizeof(out), &n), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_b64url_decode("+/8", 3, out, sizeof(out), &n), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_b64_decode("-_8", 3, out, sizeof(out), &n), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_b64url_decode("Zm9vY", 5, out, sizeof(out), &n), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_b64url_decode("Zm 8", 4, out, sizeof(out), &n), ARS_ERR_INVALID);
    /* "Zm8" is "fo"; "Zm9" has the same bytes plus non-zero unused bits. */
    ck_assert_int_eq(ars_b64url_decode("Zm8", 3, out, sizeof(out), &n), ARS_OK);
    ck_assert_int_eq(ars_b64url_decode("Zm9", 3, out, sizeof(out), &n), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_b64url_decode("Zm9vYmFy", 8, out, 5, &n), ARS_ERR_TOOBIG);
    char small[4];
    ck_assert_int_eq(ars_b64url_encode("foo", 3, small, sizeof(small)), ARS_ERR_TOOBIG);
}
END_TEST

/* ---- secrets at rest ------------------------------------------------ */

static void round_trip(const struct ars_crypto_keys *k, const char *aad, const void *plain,
                       size_t n)
{
    char *blob = NULL, *back = NULL;
    size_t len = 99;
    ck_assert_int_eq(ars_crypto_encrypt(k, aad, plain, n, &blob), ARS_OK);
    ck_assert_int_eq(strncmp(blob, "v1.", 3), 0);
    ck_assert_uint_eq(strlen(blob), 3 + ARS_B64_ENCODED_LEN(12 + n + 16));
    ck_assert_int_eq(ars_crypto_decrypt(k, aad, blob, &back, &len), ARS_OK);
    ck_assert_uint_eq(len, n);
    ck_assert_mem_eq(back, plain, n);
    ck_assert_int_eq(back[n], '\0');
    free(blob);
    free(back);
}

START_TEST(encrypt_decrypt_round_trips_empty_short_binary_and_100k)
{
    struct ars_crypto_keys k = derive(EK1);
    round_trip(&k, NULL, "", 0);
    round_trip(&k, "acct-1", "", 0);
    round_trip(&k, "acct-1", "sk-ant-api03-secret", strlen("sk-ant-api03-secret"));
    round_trip(&k, NULL, "a\0b\xff", 4);
    size_t big = 100 * 1024;
    unsigned char *p = malloc(big);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < big; i++)
        p[i] = (unsigned char)(i * 31 + 7);
    round_trip(&k, "acct-42", p, big);
    free(p);
}
END_TEST

START_TEST(decrypts_blob_written_by_an_independent_implementation)
{
    /* Python cryptography's AESGCM under the EK1 secrets subkey, nonce
     * 00..0b, aad "acct-1": pins the v1 format. */
    struct ars_crypto_keys k = derive(EK1);
    char *plain = NULL;
    size_t n = 0;
    ck_assert_int_eq(ars_crypto_decrypt(&k, "acct-1",
                                        "v1.AAECAwQFBgcICQoLtHXTb4ZRwtk2OINVl4cYQIIVTvtdqcVK1Mw1NMs",
                                        &plain, &n), ARS_OK);
    ck_assert_str_eq(plain, "sk-ant-secret");
    ck_assert_uint_eq(n, 13);
    free(plain);
}
END_TEST

START_TEST(encrypting_same_plaintext_twice_gives_different_blobs)
{
    struct ars_crypto_keys k = derive(EK1);
    char *a = NULL, *b = NULL;
    ck_assert_int_eq(ars_crypto_encrypt(&k, "acct-1", "token", 5, &a), ARS_OK);
    ck_assert_int_eq(ars_crypto_encrypt(&k, "acct-1", "token", 5, &b), ARS_OK);
    ck_assert_str_ne(a, b);
    ck_assert_int_ne(memcmp(a, b, 3 + 16), 0);   /* the nonce itself differs */
    free(a);
    free(b);
}
END_TEST

static void assert_rejected(const struct ars_crypto_keys *k, const char *aad, const char *blob)
{
    char *out = (char *)"untouched";
    size_t n = 7;
    ck_assert_msg(ars_crypto_decrypt(k, aad, blob, &out, &n) == ARS_ERR_INVALID,
                  "accepted %s", blob);
    ck_assert_ptr_null(out);
    ck_assert_uint_eq(n, 0);
}

START_TEST(rejects_every_single_flipped_byte_of_a_short_blob)
{
    struct ars_crypto_keys k = derive(EK1);
    char *blob = NULL;
    /* 34 raw bytes: the last character carries 4 unused bits. */
    ck_assert_int_eq(ars_crypto_encrypt(&k, "acct-1", "hello!", 6, &blob), ARS_OK);
    size_t len = strlen(blob);

    /* Every text position, every bit: the strict decoder or the tag must
     * catch each one (there is no second encoding of the same bytes). */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            char *t = strdup(blob);
            t[i] = (char)(t[i] ^ (1 << bit));
            if (t[i] != '\0')
                assert_rejected(&k, "acct-1", t);
            free(t);
        }
    }

    /* Every raw byte (nonce, ciphertext, tag), re-encoded cleanly. */
    unsigned char raw[64];
    size_t rawlen = 0;
    ck_assert_int_eq(ars_b64url_decode(blob + 3, len - 3, raw, sizeof(raw), &rawlen), ARS_OK);
    ck_assert_uint_eq(rawlen, 12 + 6 + 16);
    for (size_t i = 0; i < rawlen; i++) {
        char t[128] = "v1.";
        raw[i] ^= 0x01;
        ck_assert_int_eq(ars_b64url_encode(raw, rawlen, t + 3, sizeof(t) - 3), ARS_OK);
        assert_rejected(&k, "acct-1", t);
        raw[i] ^= 0x01;
    }
    free(blob);
}
END_TEST

START_TEST(rejects_wrong_aad)
{
    struct ars_crypto_keys k = derive(EK1);
    char *blob = NULL;
    ck_assert_int_eq(ars_crypto_encrypt(&k, "acct-1", "token", 5, &blob), ARS_OK);
    assert_rejected(&k, "acct-2", blob);
    assert_rejected(&k, NULL, blob);
    assert_rejected(&k, "acct-1 ", blob);
    free(blob);
    ck_assert_int_eq(ars_crypto_encrypt(&k, NULL, "token", 5, &blob), ARS_OK);
    assert_rejected(&k, "acct-1", blob);
    free(blob);
}
END_TEST

START_TEST(rejects_wrong_key)
{
    struct ars_crypto_keys k1 = derive(EK1), k2 = derive(EK2);
    char *blob = NULL;
    ck_assert_int_eq(ars_crypto_encrypt(&k1, "acct-1", "token", 5, &blob), ARS_OK);
    assert_rejected(&k2, "acct-1", blob);
    free(blob);
}
END_TEST

START_TEST(rejects_unknown_version_prefix)
{
    struct ars_crypto_keys k = derive(EK1);
    char *blob = NULL;
    ck_assert_int_eq(ars_crypto_encrypt(&k, NULL, "token", 5, &blob), ARS_OK);
    blob[1] = '2';
    assert_rejected(&k, NULL, blob);          /* "v2." */
    blob[1] = '1';
    blob[0] = 'V';
    assert_rejected(&k, NULL, blob);          /* "V1." */
    assert_rejected(&k, NULL, blob + 3);      /* no prefix at all */
    assert_rejected(&k, NULL, "");
    assert_rejected(&k, NULL, "v1");
    assert_rejected(&k, NULL, "v1.");
    free(blob);
}
END_TEST

START_TEST(rejects_truncated_blob_at_every_length)
{
    struct ars_crypto_keys k = derive(EK1);
    char *blob = NULL;
    ck_assert_int_eq(ars_crypto_encrypt(&k, NULL, "token", 5, &blob), ARS_OK);
    for (size_t cut = strlen(blob); cut-- > 0;) {
        blob[cut] = '\0';
        assert_rejected(&k, NULL, blob);
    }
    free(blob);
}
END_TEST

START_TEST(rejects_garbage_base64)
{
    struct ars_crypto_keys k = derive(EK1);
    char *blob = NULL;
    ck_assert_int_eq(ars_crypto_encrypt(&k, NULL, "token", 5, &blob), ARS_OK);
    char padded[128];
    snprintf(padded, sizeof(padded), "%s=", blob);
    assert_rejected(&k, NULL, padded);
    char *t = strdup(blob);
    t[10] = '+';                              /* standard, not url, alphabet */
    assert_rejected(&k, NULL, t);
    t[10] = '\n';
    assert_rejected(&k, NULL, t);
    free(t);
    assert_rejected(&k, NULL, "v1.!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    assert_rejected(&k, NULL, "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");   /* 37 chars */
    assert_rejected(&k, NULL, "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");  /* valid, zero tag */
    free(blob);
}
END_TEST

START_TEST(blob_over_1_mib_is_toobig_and_encrypt_refuses_what_decrypt_would)
{
    struct ars_crypto_keys k = derive(EK1);
    size_t big = ARS_CRYPTO_MAX_BLOB + 10;
    char *huge = malloc(big + 1);
    ck_assert_ptr_nonnull(huge);
    memcpy(huge, "v1.", 3);
    memset(huge + 3, 'A', big - 3);
    huge[big] = '\0';
    char *out = NULL;
    ck_assert_int_eq(ars_crypto_decrypt(&k, NULL, huge, &out, NULL), ARS_ERR_TOOBIG);
    ck_assert_ptr_null(out);

    /* The largest plaintext whose blob fits, and one byte more. */
    size_t max_plain = (ARS_CRYPTO_MAX_BLOB - 3) / 4 * 3 - 28;
    while (3 + ARS_B64_ENCODED_LEN(max_plain + 1 + 28) <= ARS_CRYPTO_MAX_BLOB)
        max_plain++;
    char *blob = NULL, *back = NULL;
    size_t n = 0;
    ck_assert_int_eq(ars_crypto_encrypt(&k, NULL, huge, max_plain, &blob), ARS_OK);
    ck_assert_uint_le(strlen(blob), ARS_CRYPTO_MAX_BLOB);
    ck_assert_int_eq(ars_crypto_decrypt(&k, NULL, blob, &back, &n), ARS_OK);
    ck_assert_uint_eq(n, max_plain);
    free(blob);
    free(back);
    ck_assert_int_eq(ars_crypto_encrypt(&k, NULL, huge, max_plain + 1, &blob), ARS_ERR_TOOBIG);
    ck_assert_ptr_null(blob);
    free(huge);
}
END_TEST

/* ---- admin passwords ------------------------------------------------ */

START_TEST(password_hash_verifies_right_password_and_rejects_wrong_one)
{
    char *stored = NULL;
    int match = -1;
    ck_assert_int_eq(ars_crypto_password_hash("correct horse", &stored), ARS_OK);
    ck_assert_int_eq(ars_crypto_password_verify("correct horse", stored, &match), ARS_OK);
    ck_assert_int_eq(match, 1);
    ck_assert_int_eq(ars_crypto_password_verify("correct hors", stored, &match), ARS_OK);
    ck_assert_int_eq(match, 0);
    ck_assert_int_eq(ars_crypto_password_verify("", stored, &match), ARS_OK);
    ck_assert_int_eq(match, 0);
    free(stored);
}
END_TEST

START_TEST(password_hash_is_scrypt_format_with_parameters_and_fresh_salt)
{
    char *a = NULL, *b = NULL;
    ck_assert_int_eq(ars_crypto_password_hash("pw", &a), ARS_OK);
    ck_assert_int_eq(ars_crypto_password_hash("pw", &b), ARS_OK);
    const char *prefix = "$scrypt$ln=15,r=8,p=1$";
    ck_assert_int_eq(strncmp(a, prefix, strlen(prefix)), 0);
    const char *salt = a + strlen(prefix);
    const char *dollar = strchr(salt, '$');
    ck_assert_ptr_nonnull(dollar);
    unsigned char bytes[64];
    size_t n = 0;
    ck_assert_int_eq(ars_b64_decode(salt, (size_t)(dollar - salt), bytes, sizeof(bytes), &n),
                     ARS_OK);
    ck_assert_uint_eq(n, 16);
    ck_assert_int_eq(ars_b64_decode(dollar + 1, strlen(dollar + 1), bytes, sizeof(bytes), &n),
                     ARS_OK);
    ck_assert_uint_eq(n, 32);
    ck_assert_ptr_null(strchr(salt, '='));   /* no padding */
    ck_assert_str_ne(a, b);   /* random salt */
    free(a);
    free(b);
}
END_TEST

START_TEST(password_verify_uses_parameters_from_stored_string)
{
    /* ln=10, r=4, p=2, computed by Python's hashlib.scrypt. */
    const char *stored = "$scrypt$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA"
                         "$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc";
    int match = -1;
    ck_assert_int_eq(ars_crypto_password_verify("hunter2", stored, &match), ARS_OK);
    ck_assert_int_eq(match, 1);
    ck_assert_int_eq(ars_crypto_password_verify("hunter3", stored, &match), ARS_OK);
    ck_assert_int_eq(match, 0);
    /* Same salt and hash under other parameters no longer match. */
    const char *other = "$scrypt$ln=11,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA"
                        "$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc";
    ck_assert_int_eq(ars_crypto_password_verify("hunter2", other, &match), ARS_OK);
    ck_assert_int_eq(match, 0);
}
END_TEST

START_TEST(tampered_stored_hash_does_not_match)
{
    char *stored = NULL;
    int match = -1;
    ck_assert_int_eq(ars_crypto_password_hash("s3cret", &stored), ARS_OK);
    char *hash = strrchr(stored, '$') + 1;
    hash[5] = hash[5] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(ars_crypto_password_verify("s3cret", stored, &match), ARS_OK);
    ck_assert_int_eq(match, 0);
    free(stored);
}
END_TEST

START_TEST(malformed_stored_hash_is_invalid)
{
    static const char *const bad[] = {
        "",
        "plaintext-password",
        "$scrypt$",
        "$scrypt$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA",
        "$scrypt$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA$",
        "$scrypt$ln=10,r=4$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$r=4,ln=10,p=2$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=x,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=010,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=-1,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=10,r=0,p=2$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=10,r=4,p=0$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=10,r=4,p=2$c2FsdA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA==$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0Hm",
        "$scrypt$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc$",
        "$scrypt$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLF!c",
        "$pbkdf2$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int match = -1;
        ck_assert_msg(ars_crypto_password_verify("hunter2", bad[i], &match) == ARS_ERR_INVALID,
                      "accepted %s", bad[i]);
        ck_assert_int_eq(match, 0);
    }
}
END_TEST

START_TEST(absurd_scrypt_parameters_in_stored_hash_are_refused)
{
    static const char *const bad[] = {
        "$scrypt$ln=40,r=8,p=1$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=21,r=8,p=1$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=0,r=8,p=1$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=20,r=32,p=1$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=10,r=8,p=100$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=10,r=4294967297,p=1$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
        "$scrypt$ln=10,r=65536,p=65536$c2FsdHNhbHRzYWx0MTIzNA$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int match = -1;
        ck_assert_msg(ars_crypto_password_verify("hunter2", bad[i], &match) == ARS_ERR_INVALID,
                      "accepted %s", bad[i]);
        ck_assert_int_eq(match, 0);
    }
}
END_TEST

START_TEST(password_over_1024_bytes_is_toobig)
{
    char pw[1026];
    memset(pw, 'p', sizeof(pw));
    pw[1025] = '\0';
    char *stored = NULL;
    int match = -1;
    ck_assert_int_eq(ars_crypto_password_hash(pw, &stored), ARS_ERR_TOOBIG);
    ck_assert_ptr_null(stored);
    ck_assert_int_eq(ars_crypto_password_verify(pw, "$scrypt$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA"
                                                "$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
                                                &match), ARS_ERR_TOOBIG);
    ck_assert_int_eq(match, 0);
    /* Exactly 1024 is allowed. */
    pw[1024] = '\0';
    ck_assert_int_eq(ars_crypto_password_verify(pw, "$scrypt$ln=10,r=4,p=2$c2FsdHNhbHRzYWx0MTIzNA"
                                                "$j9bDuZU3ewOEp0HmJv8pYjRnJCQjnQmrmN54S0pLFIc",
                                                &match), ARS_OK);
    ck_assert_int_eq(match, 0);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 33

int main(void)
{
    Suite *s = suite_create("crypto");

    TCase *kat = tcase_create("known answers");
    tcase_add_test(kat, hmac_sha256_matches_rfc4231_test_case_2);
    tcase_add_test(kat, hkdf_sha256_matches_rfc5869_test_case_1);
    tcase_add_test(kat, gcm_matches_mcgrew_viega_test_case_16_both_ways);
    tcase_add_test(kat, scrypt_matches_rfc7914_vectors);
    tcase_add_test(kat, scrypt_refuses_bad_parameters_and_memory_over_the_cap);
    suite_add_tcase(s, kat);

    TCase *keys = tcase_create("keys");
    tcase_add_test(keys, keys_derive_refuses_missing_or_short_encryption_key);
    tcase_add_test(keys, keys_are_hkdf_subkeys_and_clear_wipes_them);
    tcase_add_test(keys, key_hash_of_fixed_inputs_never_changes);
    tcase_add_test(keys, key_hash_is_stable_64_hex_and_differs_per_key_and_per_encryption_key);
    tcase_add_test(keys, new_api_key_is_cr_prefix_and_64_lowercase_hex_and_unique);
    tcase_add_test(keys, api_key_format_check_accepts_only_cr_and_exactly_64_hex);
    tcase_add_test(keys, uuid_v4_has_version_4_and_rfc4122_variant);
    tcase_add_test(keys, random_hex_writes_exactly_2n_lowercase_hex_and_nul);
    tcase_add_test(keys, equal_is_true_only_for_identical_bytes);
    tcase_add_test(keys, b64url_round_trips_every_length_with_url_alphabet_and_no_padding);
    tcase_add_test(keys, b64_decoders_reject_padding_foreign_chars_bad_length_and_stray_bits);
    suite_add_tcase(s, keys);

    TCase *sec = tcase_create("secrets");
    tcase_add_test(sec, encrypt_decrypt_round_trips_empty_short_binary_and_100k);
    tcase_add_test(sec, decrypts_blob_written_by_an_independent_implementation);
    tcase_add_test(sec, encrypting_same_plaintext_twice_gives_different_blobs);
    tcase_add_test(sec, rejects_every_single_flipped_byte_of_a_short_blob);
    tcase_add_test(sec, rejects_wrong_aad);
    tcase_add_test(sec, rejects_wrong_key);
    tcase_add_test(sec, rejects_unknown_version_prefix);
    tcase_add_test(sec, rejects_truncated_blob_at_every_length);
    tcase_add_test(sec, rejects_garbage_base64);
    tcase_add_test(sec, blob_over_1_mib_is_toobig_and_encrypt_refuses_what_decrypt_would);
    suite_add_tcase(s, sec);

    /* scrypt at N=2^15 is tens of ms natively, seconds under valgrind. */
    TCase *pw = tcase_create("passwords");
    tcase_set_timeout(pw, 120);
    tcase_add_test(pw, password_hash_verifies_right_password_and_rejects_wrong_one);
    tcase_add_test(pw, password_hash_is_scrypt_format_with_parameters_and_fresh_salt);
    tcase_add_test(pw, password_verify_uses_parameters_from_stored_string);
    tcase_add_test(pw, tampered_stored_hash_does_not_match);
    tcase_add_test(pw, malformed_stored_hash_is_invalid);
    tcase_add_test(pw, absurd_scrypt_parameters_in_stored_hash_are_refused);
    tcase_add_test(pw, password_over_1024_bytes_is_toobig);
    suite_add_tcase(s, pw);

    return ars_check_run(s, UNIT_TEST_PLAN);
}
