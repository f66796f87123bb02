/*
 * The auth plugin: a JWT handshake guard. The tests make their own tokens
 * with OpenSSL's HMAC (as an issuer would), and check that a good one is
 * accepted from `?token=` and from `Authorization: Bearer`, that its claims
 * come back from `whoami` (read through host->client_identity, the call
 * every other plugin uses), that every kind of bad token is refused with
 * HTTP 401 and a log line that says why without the token, that `exp`,
 * `nbf` and `leeway_s` are honoured, that `required = false` admits
 * anonymous clients but still refuses bad tokens, and that a missing
 * secret stops the plugin from loading.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "harness.h"

#define SECRET "s3cret-for-tests"

static sb_srv srv;

/* ---- making tokens ----------------------------------------------------- */

/* Unpadded base64url of len bytes, appended to out at *o. */
static void b64url(char *out, size_t *o, const void *data, size_t len)
{
    unsigned char *tmp = malloc(4 * ((len + 2) / 3) + 1);
    ck_assert_ptr_nonnull(tmp);
    int n = EVP_EncodeBlock(tmp, data, (int)len);
    for (int i = 0; i < n && tmp[i] != '='; i++)
        out[(*o)++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
    out[*o] = 0;
    free(tmp);
}

/* header.payload.signature, the signature an HMAC-SHA256 with `secret`
 * (NULL: an empty signature, as alg "none" has). Static storage, reused
 * after 64 calls: enough for one test's table of tokens. */
static const char *jwt(const char *header, const char *payload,
                       const char *secret)
{
    static char tok[64][1024];
    static int slot;
    char *t = tok[slot++ % 64];
    ck_assert_int_lt(4 * (strlen(header) + strlen(payload)) / 3 + 50,
                     sizeof(tok[0]));
    size_t o = 0;
    b64url(t, &o, header, strlen(header));
    t[o++] = '.';
    b64url(t, &o, payload, strlen(payload));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), secret ? secret : "",
                               secret ? (int)strlen(secret) : 0,
                               (unsigned char *)t, o, mac, &mac_len));
    t[o++] = '.';
    t[o] = 0;
    if (secret)
        b64url(t, &o, mac, mac_len);
    return t;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* A payload with exp/nbf relative to now. Static storage, reused after 16
 * calls. */
static const char *claims_at(const char *sub, const char *field, long delta)
{
    static char buf[16][256];
    static int slot;
    char *b = buf[slot++ % 16];
    snprintf(b, sizeof(buf[0]), "{\"sub\":\"%s\",\"%s\":%lld}", sub, field,
             (long long)time(NULL) + delta);
    return b;
}

/* ---- talking to the server --------------------------------------------- */

static int status_of(const char *path, const char *headers)
{
    return ws_connect_status("127.0.0.1", srv.port, path, headers, SB_TIMEOUT);
}

static ws_client *connect_ok(const char *path, const char *headers)
{
    ws_client *c = ws_connect("127.0.0.1", srv.port, path, headers, SB_TIMEOUT);
    ck_assert_msg(c != NULL, "connect %s: %s", path, ws_last_error());
    return c;
}

static ws_client *connect_query(const char *token)
{
    char path[4200];
    snprintf(path, sizeof(path), "/?token=%s", token);
    return connect_ok(path, NULL);
}

/* Sends whoami and asserts that the answer's data equals `want` (JSON
 * text), compared as JSON so that key order does not matter. */
static void expect_whoami(ws_client *c, const char *want)
{
    cli_send(c, "{\"event\":\"whoami\",\"id\":1}");
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    json_t *got = json_loads((char *)f.data, 0, NULL);
    json_t *exp = json_loads(want, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(exp);
    ck_assert_msg(got != NULL, "not JSON: %s", f.data);
    ck_assert_str_eq(json_string_value(json_object_get(got, "event")),
                     "whoami");
    ck_assert_int_eq(json_integer_value(json_object_get(got, "id")), 1);
    json_t *data = json_object_get(got, "data");
    ck_assert_msg(data && json_equal(data, exp), "whoami: got %s, want %s",
                  f.data, want);
    json_decref(got);
    json_decref(exp);
    ws_frame_free(&f);
}

/* The number of log lines saying "refused" and `why`. */
static int refusals(const char *why)
{
    int n = 0;
    const char *log = srv_logtext(&srv);
    for (const char *p = strstr(log, "refused "); p;
         p = strstr(p + 1, "refused ")) {
        const char *eol = strchr(p, '\n');
        const char *w = strstr(p, why);
        n += w && (!eol || w < eol);
    }
    return n;
}

/* Waits (the log is another process's output) for at least `want` such
 * lines. */
static bool wait_refusals(const char *why, int want)
{
    for (int waited = 0; waited < SB_TIMEOUT; waited += 10) {
        if (refusals(why) >= want)
            return true;
        usleep(10 * 1000);
    }
    return false;
}

static void start(const char *auth_extra)
{
    char sections[1024];
    snprintf(sections, sizeof(sections),
             "[plugin.auth]\nfile = %%P/auth.so\nsecret = " SECRET "\n%s"
             "[plugin.nest]\nfile = %%P/nest-example.so\n"
             "[plugin.probe]\nfile = %%P/test-probe.so\njournal = %%J\n",
             auth_extra ? auth_extra : "");
    srv_start(&srv, NULL, sections);
}

/* ---- tests ------------------------------------------------------------- */

START_TEST(test_query_token)
{
    start(NULL);
    const char *claims = claims_at("alice", "exp", 3600);
    ws_client *c = connect_query(jwt(HS256, claims, SECRET));
    expect_whoami(c, claims);
    /* The client is an ordinary client for every other plugin. */
    cli_send(c, "{\"event\":\"identity\",\"data\":5}");
    cli_expect(c, "5");
    cli_send(c, "{\"event\":\"info\"}");
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    ck_assert_msg(strstr((char *)f.data, "\"event\":\"info\""), "%s", f.data);
    ws_frame_free(&f);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_bearer_header)
{
    start(NULL);
    /* Nested claims come back as they were signed; no exp is fine. */
    const char *claims =
        "{\"sub\":\"bob\",\"roles\":[\"a\",\"b\"],\"org\":{\"id\":7}}";
    char hdr[4200];
    snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n",
             jwt(HS256, claims, SECRET));
    ws_client *c = connect_ok("/", hdr);
    expect_whoami(c, claims);
    /* Two clients, two identities: each sees its own. */
    const char *claims2 = "{\"sub\":\"carol\"}";
    snprintf(hdr, sizeof(hdr), "authorization: bearer   %s\r\n",
             jwt(HS256, claims2, SECRET));
    ws_client *d = connect_ok("/", hdr);
    expect_whoami(d, claims2);
    expect_whoami(c, claims);
    ws_close(c);
    ws_close(d);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_refusals)
{
    start(NULL);
    const char *good = claims_at("alice", "exp", 3600);
    const char *other = jwt(HS256, "{\"sub\":\"mallory\"}", SECRET);
    char tampered[4096];
    {
        /* alice's header and payload with mallory's valid signature. */
        const char *t = jwt(HS256, good, SECRET);
        const char *sig = strrchr(other, '.');
        snprintf(tampered, sizeof(tampered), "%.*s%s",
                 (int)(strrchr(t, '.') - t), t, sig);
    }
    char padded[4096];
    snprintf(padded, sizeof(padded), "%s=", jwt(HS256, good, SECRET));
    char not_json[256];
    {
        size_t o = 0;
        b64url(not_json, &o, "hello", 5);
        snprintf(not_json + o, sizeof(not_json) - o, ".e30.AAAA");
    }
    static struct {
        const char *what;
        const char *token;
        const char *log; /* the reason the log must give */
    } rows[32];
    size_t n = 0;
#define ROW(w, t, l)                                                           \
    rows[n].what = (w), rows[n].token = (t), rows[n++].log = (l)
    ROW("bad signature", jwt(HS256, good, "another secret"), "bad signature");
    ROW("tampered payload", tampered, "bad signature");
    ROW("expired", jwt(HS256, claims_at("a", "exp", -10), SECRET), "expired");
    ROW("expires now", jwt(HS256, claims_at("a", "exp", 0), SECRET), "expired");
    ROW("not yet valid", jwt(HS256, claims_at("a", "nbf", 3600), SECRET),
        "nbf");
    ROW("alg none", jwt("{\"alg\":\"none\"}", good, NULL), "wrong algorithm");
    ROW("alg none, signed", jwt("{\"alg\":\"none\"}", good, SECRET),
        "wrong algorithm");
    ROW("alg HS512", jwt("{\"alg\":\"HS512\"}", good, SECRET),
        "wrong algorithm");
    ROW("alg lower case", jwt("{\"alg\":\"hs256\"}", good, SECRET),
        "wrong algorithm");
    ROW("no alg", jwt("{\"typ\":\"JWT\"}", good, SECRET), "wrong algorithm");
    ROW("crit", jwt("{\"alg\":\"HS256\",\"crit\":[\"b64\"]}", good, SECRET),
        "critical");
    ROW("garbage", "garbage", "malformed");
    ROW("two segments", "abc.def", "malformed");
    ROW("four segments", "a.b.c.d", "malformed");
    /* An empty value may count as no token or as a malformed one. */
    ROW("empty", "", "");
    ROW("header not JSON", not_json, "malformed");
    ROW("payload an array", jwt(HS256, "[1,2]", SECRET), "malformed");
    ROW("exp a string", jwt(HS256, "{\"exp\":\"tomorrow\"}", SECRET),
        "malformed");
    ROW("padded signature", padded, "malformed");
    ROW("duplicate exp", jwt(HS256, "{\"exp\":1,\"exp\":99999999999}", SECRET),
        "malformed");
#undef ROW
    char path[4200], hdr[4200];
    int before[32];
    for (size_t i = 0; i < n; i++) {
        before[i] = refusals(rows[i].log);
        snprintf(path, sizeof(path), "/?token=%s", rows[i].token);
        ck_assert_msg(status_of(path, NULL) == 401, "%s in the query: %d",
                      rows[i].what, status_of(path, NULL));
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n",
                 rows[i].token);
        ck_assert_msg(status_of("/", hdr) == 401, "%s as Bearer: %d",
                      rows[i].what, status_of("/", hdr));
        ck_assert_msg(wait_refusals(rows[i].log, before[i] + 2),
                      "%s: no two log lines saying 'refused ... %s':\n%s",
                      rows[i].what, rows[i].log, srv_logtext(&srv));
    }
    /* No token at all, or a token of another scheme. */
    ck_assert_int_eq(status_of("/", NULL), 401);
    ck_assert_int_eq(status_of("/?other=1", NULL), 401);
    ck_assert_int_eq(status_of("/", "Authorization: Basic YTpi\r\n"), 401);
    ck_assert_int_eq(status_of("/", "Authorization: Bearer\r\n"), 401);
    ck_assert_ptr_nonnull(strstr(srv_logtext(&srv), "no token"));
    /* The log says why, never what: no token text in it. */
    const char *log = srv_logtext(&srv);
    for (size_t i = 0; i < n; i++) {
        if (strlen(rows[i].token) < 20)
            continue; /* "garbage" and co. could match by chance */
        ck_assert_msg(strstr(log, rows[i].token) == NULL,
                      "token of '%s' in the log", rows[i].what);
        const char *sig = strrchr(rows[i].token, '.');
        if (sig && strlen(sig) > 20)
            ck_assert_msg(strstr(log, sig + 1) == NULL,
                          "signature of '%s' in the log", rows[i].what);
    }
    /* After all that, a good token still gets in. */
    ws_client *c = connect_query(jwt(HS256, good, SECRET));
    expect_whoami(c, good);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_leeway)
{
    start("leeway_s = 60\n");
    const char *t = jwt(HS256, claims_at("a", "exp", -10), SECRET);
    char path[4200];
    snprintf(path, sizeof(path), "/?token=%s", t);
    ck_assert_int_eq(status_of(path, NULL), 101);
    t = jwt(HS256, claims_at("a", "exp", -120), SECRET);
    snprintf(path, sizeof(path), "/?token=%s", t);
    ck_assert_int_eq(status_of(path, NULL), 401);
    t = jwt(HS256, claims_at("a", "nbf", 10), SECRET);
    snprintf(path, sizeof(path), "/?token=%s", t);
    ck_assert_int_eq(status_of(path, NULL), 101);
    t = jwt(HS256, claims_at("a", "nbf", 120), SECRET);
    snprintf(path, sizeof(path), "/?token=%s", t);
    ck_assert_int_eq(status_of(path, NULL), 401);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_not_required)
{
    start("required = false\n");
    /* No token: in, anonymous. */
    ws_client *anon = connect_ok("/", NULL);
    expect_whoami(anon, "null");
    cli_send(anon, "{\"event\":\"identity\",\"data\":3}");
    cli_expect(anon, "3");
    /* A token that is there must still be good. */
    char path[4200];
    snprintf(path, sizeof(path), "/?token=%s",
             jwt(HS256, "{\"sub\":\"x\"}", "wrong"));
    ck_assert_int_eq(status_of(path, NULL), 401);
    snprintf(path, sizeof(path), "/?token=%s",
             jwt("{\"alg\":\"none\"}", "{\"sub\":\"x\"}", NULL));
    ck_assert_int_eq(status_of(path, NULL), 401);
    const char *claims = "{\"sub\":\"dave\"}";
    ws_client *c = connect_query(jwt(HS256, claims, SECRET));
    expect_whoami(c, claims);
    expect_whoami(anon, "null");
    ws_close(anon);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

/* `-t` with an auth section: exit status and output. */
static int check_config(const char *auth_section, char *out, size_t outlen)
{
    char dir[] = "/tmp/sb-it-auth-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[300], text[1024];
    snprintf(ini, sizeof(ini), "%s/t.ini", dir);
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n[plugin.auth]\nfile = %s/auth.so\n%s",
             SB_TEST_PLUGIN_DIR, auth_section);
    FILE *f = fopen(ini, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    const char *args[] = {"-t", "-c", ini, NULL};
    int rc = srv_run(args, out, outlen);
    unlink(ini);
    rmdir(dir);
    return rc;
}

START_TEST(test_config_errors)
{
    char out[8192];
    ck_assert_int_eq(check_config("secret = x\n", out, sizeof(out)), 0);
    ck_assert_int_ne(check_config("", out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "secret"), "no word of the secret:\n%s", out);
    ck_assert_int_ne(check_config("secret =\n", out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "secret"), "no word of the secret:\n%s", out);
    ck_assert_int_ne(
        check_config("secret = x\nleeway_s = -5\n", out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "leeway_s"), "%s", out);
    ck_assert_int_ne(
        check_config("secret = x\nrequired = perhaps\n", out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "required"), "%s", out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_query_token);
    tcase_add_test(tc, test_bearer_header);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_leeway);
    tcase_add_test(tc, test_not_required);
    tcase_add_test(tc, test_config_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
