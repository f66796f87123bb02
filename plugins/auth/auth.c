/*
 * auth — a handshake guard that admits clients holding a valid JWT.
 *
 * The token comes from the `token` query argument (browsers cannot set
 * headers on a WebSocket) or from an `Authorization: Bearer <jwt>` header.
 * Only HS256 tokens are accepted, signed with the `secret` of the plugin's
 * config section; `exp` and `nbf` are honoured (with `leeway_s` seconds of
 * clock skew). An accepted token's claims become the client's identity,
 * which every plugin can read with host->client_identity(); a refused one
 * gets HTTP 401 before the upgrade, and the log says why (never the token).
 * `whoami` answers the identity back.
 *
 * The cryptography is OpenSSL's: HMAC() computes the MAC and CRYPTO_memcmp()
 * compares it in constant time. Nothing here is hand-written crypto; the
 * only hand-written part is splitting the token and mapping base64url onto
 * the alphabet OpenSSL decodes.
 *
 * Config:
 *   secret   = ...    the HS256 key (required)
 *   leeway_s = 0      seconds of clock skew allowed on exp and nbf
 *   required = true   false: clients without any token are let in (identity
 *                     null); a token that is present must still be valid
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <switchboard/plugin.h>

/* A token longer than this is refused unread: no honest HS256 token comes
 * near it, and it bounds what a client can make us allocate. */
#define AUTH_MAX_TOKEN 8192

/* One [plugin.NAME] instance; handed to every callback as udata. */
typedef struct auth {
    const sb_host *host;
    const char *secret; /* borrowed from the host until unload */
    size_t secret_len;
    int64_t leeway_s;
    int required;
} auth;

/* ---- base64url --------------------------------------------------------- */

/* Decodes one unpadded base64url segment (RFC 7515 section 2) into a new
 * NUL-terminated buffer (the NUL is not counted in *out_len), or NULL if it
 * is not strict base64url.
 *
 * Why EVP_DecodeBlock: OpenSSL is already linked for the HMAC, and it has no
 * public base64url decoder, but EVP_DecodeBlock decodes the standard
 * alphabet without the line-length rules of EVP_DecodeUpdate. So the
 * segment is checked here against the url alphabet, mapped ('-' to '+',
 * '_' to '/'), padded to a multiple of 4 with '=', and decoded. Mind that
 * EVP_DecodeBlock returns 3 bytes per 4 characters, padding included: the
 * pad count is subtracted from its length. */
static unsigned char *b64url_decode(const char *in, size_t len, size_t *out_len)
{
    if (len % 4 == 1) /* 6 bits cannot end a byte: never valid */
        return NULL;
    size_t pad = (4 - len % 4) % 4;
    char *std = malloc(len + pad + 1);
    unsigned char *out = malloc((len + pad) / 4 * 3 + 1);
    if (!std || !out)
        goto fail;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   (c >= '0' && c <= '9')))
            goto fail; /* '+', '/', '=', blanks: not base64url */
        std[i] = c;
    }
    memset(std + len, '=', pad);
    std[len + pad] = 0;
    int n = EVP_DecodeBlock(out, (const unsigned char *)std, (int)(len + pad));
    if (n < 0 || (size_t)n < pad)
        goto fail;
    /* Reject non-canonical encodings (unused low bits set in the last
     * character), so that one signature has exactly one spelling. */
    if (pad > 0) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "abcdefghijklmnopqrstuvwxyz0123456789+/";
        int v = (int)(strchr(alphabet, std[len - 1]) - alphabet);
        if (v & (pad == 2 ? 0x0f : 0x03))
            goto fail;
    }
    free(std);
    *out_len = (size_t)n - pad;
    out[*out_len] = 0;
    return out;
fail:
    free(std);
    free(out);
    return NULL;
}

/* Decodes a base64url segment holding a JSON object. NULL if it is not one
 * (duplicate keys are refused: two `exp`s would be ambiguous). */
static json_t *b64url_json_object(const char *in, size_t len)
{
    size_t n;
    unsigned char *text = b64url_decode(in, len, &n);
    if (!text)
        return NULL;
    json_t *v = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES, NULL);
    free(text);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* ---- verification ------------------------------------------------------ */

/* Checks a token and returns its claims (a new reference), or NULL with
 * *why set to a short static reason that is safe to log. */
static json_t *verify(const auth *a, const char *token, const char **why)
{
    size_t len = strlen(token);
    if (len > AUTH_MAX_TOKEN) {
        *why = "malformed token (too long)";
        return NULL;
    }
    /* Exactly three segments: header.payload.signature. */
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2 || strchr(dot2 + 1, '.')) {
        *why = "malformed token (not three segments)";
        return NULL;
    }
    const char *sig_b64 = dot2 + 1;
    size_t head_len = (size_t)(dot1 - token);
    size_t pay_len = (size_t)(dot2 - dot1 - 1);
    size_t sig_len = len - (size_t)(sig_b64 - token);

    /* The header first: the algorithm decides how to check the rest, and
     * only HS256 is ever accepted ("none" above all). */
    json_t *header = b64url_json_object(token, head_len);
    if (!header) {
        *why = "malformed token (header is not a base64url JSON object)";
        return NULL;
    }
    const char *alg = json_string_value(json_object_get(header, "alg"));
    int alg_ok = alg && strcmp(alg, "HS256") == 0;
    /* `crit` names extensions the issuer requires us to understand; we
     * understand none, so RFC 7515 section 4.1.11 says refuse. */
    int crit = json_object_get(header, "crit") != NULL;
    json_decref(header);
    if (!alg_ok) {
        *why = "wrong algorithm (only HS256 is accepted)";
        return NULL;
    }
    if (crit) {
        *why = "unsupported critical header parameter";
        return NULL;
    }

    /* The signature, over the ASCII of "header.payload". */
    size_t mac_len;
    unsigned char *mac = b64url_decode(sig_b64, sig_len, &mac_len);
    if (!mac) {
        *why = "malformed token (signature is not base64url)";
        return NULL;
    }
    unsigned char want[EVP_MAX_MD_SIZE];
    unsigned int want_len = 0;
    if (!HMAC(EVP_sha256(), a->secret, (int)a->secret_len,
              (const unsigned char *)token, (size_t)(dot2 - token), want,
              &want_len)) {
        free(mac);
        *why = "HMAC computation failed";
        return NULL;
    }
    /* The length is public (32 for HS256); only the bytes need the
     * constant-time comparison. */
    int sig_ok = mac_len == want_len && CRYPTO_memcmp(mac, want, want_len) == 0;
    free(mac);
    if (!sig_ok) {
        *why = "bad signature";
        return NULL;
    }

    /* Signed by someone holding the secret: now the claims. */
    json_t *claims = b64url_json_object(dot1 + 1, pay_len);
    if (!claims) {
        *why = "malformed token (payload is not a base64url JSON object)";
        return NULL;
    }
    double now = (double)time(NULL);
    double leeway = (double)a->leeway_s;
    json_t *exp = json_object_get(claims, "exp");
    json_t *nbf = json_object_get(claims, "nbf");
    if ((exp && !json_is_number(exp)) || (nbf && !json_is_number(nbf))) {
        *why = "malformed token (exp or nbf is not a number)";
    } else if (exp && now >= json_number_value(exp) + leeway) {
        *why = "expired"; /* RFC 7519: valid only *before* exp */
    } else if (nbf && now + leeway < json_number_value(nbf)) {
        *why = "not yet valid (nbf)";
    } else {
        return claims;
    }
    json_decref(claims);
    return NULL;
}

/* The token of this handshake: the `token` query argument, else the
 * Authorization header's Bearer credentials (the scheme name is
 * case-insensitive, RFC 7235). NULL when the client sent neither; an
 * Authorization header of another scheme (Basic...) counts as no token.
 * When both are there the query wins. */
static const char *find_token(const auth *a, sb_handshake *hs)
{
    const char *t = a->host->handshake_query_arg(hs, "token");
    if (t)
        return t;
    const char *h = a->host->handshake_header(hs, "authorization");
    if (!h)
        return NULL;
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncasecmp(h, "Bearer", 6) != 0 ||
        (h[6] != ' ' && h[6] != '\t' && h[6] != 0))
        return NULL;
    /* "Bearer" with nothing after it claims a token it does not show: it
     * gets "" and is refused as malformed, also when tokens are optional. */
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    return h;
}

/* ---- hooks and events -------------------------------------------------- */

static int on_handshake(sb_plugin *p, sb_handshake *hs, void *udata)
{
    auth *a = udata;
    const sb_host *host = a->host;
    const char *token = find_token(a, hs);
    if (!token) {
        if (!a->required)
            return SB_OK; /* let in anonymously: identity stays null */
        host->log(p, SB_LOG_INFO, "refused %s: no token",
                  host->handshake_remote(hs));
        return 401;
    }
    const char *why = NULL;
    json_t *claims = verify(a, token, &why);
    if (!claims) {
        host->log(p, SB_LOG_INFO, "refused %s: %s", host->handshake_remote(hs),
                  why);
        return 401;
    }
    int rc = host->handshake_set_identity(hs, claims); /* stolen */
    if (rc != SB_OK) {
        /* Admitting the client without the identity it proved would make
         * it look anonymous to every other plugin: refuse instead. */
        host->log(p, SB_LOG_ERROR, "cannot attach identity for %s: %s",
                  host->handshake_remote(hs), host->strerror(rc));
        return 500;
    }
    return SB_OK;
}

/* {"event":"whoami"} → {"event":"whoami","data":<claims, or null>}. */
static int on_whoami(sb_plugin *p, sb_message *msg, void *udata)
{
    auth *a = udata;
    json_t *id = a->host->client_identity(a->host->message_client(msg));
    /* client_identity() lends; reply() steals: take our own reference. */
    return a->host->reply(msg, "whoami", id ? json_incref(id) : json_null());
}

static void on_unload(sb_plugin *p, void *udata)
{
    free(udata);
}

static int auth_init(sb_plugin *p, const sb_host *host)
{
    auth *a = calloc(1, sizeof(*a));
    if (!a)
        return host->plugin_error(p, "out of memory");
    a->host = host;
    int rc;
    /* The getters record a message naming the key and the section, so a
     * failed read just returns their code for the host to log. */
    if ((rc = host->config_require(p, "secret", &a->secret)) != SB_OK ||
        (rc = host->config_int(p, "leeway_s", 0, &a->leeway_s)) != SB_OK ||
        (rc = host->config_bool(p, "required", 1, &a->required)) != SB_OK)
        goto fail;
    a->secret_len = strlen(a->secret);
    if (a->leeway_s < 0 || a->leeway_s > 86400) {
        rc = host->plugin_error(p,
                                "leeway_s must be 0..86400 seconds, got "
                                "%lld",
                                (long long)a->leeway_s);
        goto fail;
    }
    if ((rc = host->on_handshake(p, on_handshake, a)) != SB_OK) {
        rc = host->plugin_error(p, "cannot register the handshake hook: %s",
                                host->strerror(rc));
        goto fail;
    }
    if ((rc = host->subscribe(p, "whoami", on_whoami, a)) != SB_OK) {
        rc = host->plugin_error(p, "cannot subscribe 'whoami': %s",
                                host->strerror(rc));
        goto fail;
    }
    /* Last, so that every failure above frees `a` itself and no unload
     * hook is left to free it twice. */
    if ((rc = host->on_unload(p, on_unload, a)) != SB_OK) {
        rc = host->plugin_error(p, "cannot register the unload hook: %s",
                                host->strerror(rc));
        goto fail;
    }
    return SB_OK;
fail:
    free(a);
    return rc;
}

SB_PLUGIN_DEFINE("auth", "1.0.0", auth_init);
