/*
 * work — slow work done on the thread pool, answered when it is over.
 *
 * `hash {"text":T,"rounds":N}` computes N rounds of SHA-256 over T (round 1
 * hashes T, each later round hashes the previous 32-byte digest) and
 * replies {"event":"hash","data":{"hex":"<64 hex digits>","rounds":N}} with
 * the request's `id`, so a client can match the answer to its question.
 * Ten million rounds take a second or more: done on the loop they would
 * stall every client, so the handler only validates and queues
 * (host->work_queue), the digest runs on a pool thread, and the completion,
 * back on the loop, sends the acknowledgement (host->send_ack). A client that
 * left meanwhile gets nothing; work cancelled at unload is just freed.
 *
 * The digest is OpenSSL's EVP API. The SHA-256 implementation is fetched
 * once at init (an EVP_MD may be shared by threads) rather than looked up
 * again for each of millions of rounds.
 *
 * Config:
 *   max_rounds = 10000000   the largest `rounds` accepted (k/m/g allowed)
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <switchboard/plugin.h>

#define WORK_DEFAULT_MAX_ROUNDS 10000000
#define SHA256_LEN              32

/* One [plugin.NAME] instance; handed to every callback as udata. */
typedef struct work {
    const sb_host *host;
    EVP_MD *sha256; /* fetched at init, freed at unload */
    int64_t max_rounds;
} work;

/* One queued hash. The pool thread reads text/rounds/md and writes
 * digest/ok; the loop thread touches it only before work_queue() and in
 * the done callback, so it needs no lock. */
typedef struct hash_job {
    const sb_host *host;
    sb_client_id client; /* an id, never a pointer: it may be gone by then */
    char *id;            /* copy of the request's id JSON text, or NULL */
    size_t id_len;
    char *text;
    size_t text_len;
    int64_t rounds;
    const EVP_MD *md;
    unsigned char digest[SHA256_LEN];
    int ok; /* the digest was computed */
} hash_job;

static void job_free(hash_job *j)
{
    free(j->id);
    free(j->text);
    free(j);
}

/* On a pool thread: no host calls here (the header allows only post()). */
static void hash_run(void *udata)
{
    hash_job *j = udata;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return;
    unsigned int n = 0;
    int ok = EVP_DigestInit_ex2(ctx, j->md, NULL) &&
             EVP_DigestUpdate(ctx, j->text, j->text_len) &&
             EVP_DigestFinal_ex(ctx, j->digest, &n);
    for (int64_t r = 1; ok && r < j->rounds; r++)
        ok = EVP_DigestInit_ex2(ctx, j->md, NULL) &&
             EVP_DigestUpdate(ctx, j->digest, SHA256_LEN) &&
             EVP_DigestFinal_ex(ctx, j->digest, &n);
    EVP_MD_CTX_free(ctx);
    j->ok = ok && n == SHA256_LEN;
}

/* Back on the loop thread. */
static void hash_done(sb_plugin *p, int status, void *udata)
{
    hash_job *j = udata;
    const sb_host *host = j->host;
    if (status != SB_OK) {
        /* SB_ERR_CANCELLED: the plugin is unloading; nobody to tell. */
        if (status != SB_ERR_CANCELLED)
            host->log(p, SB_LOG_WARN, "hash for client %llu: %s",
                      (unsigned long long)j->client, host->strerror(status));
        job_free(j);
        return;
    }
    int rc;
    if (j->ok) {
        static const char digits[] = "0123456789abcdef";
        char hex[2 * SHA256_LEN + 1];
        for (int i = 0; i < SHA256_LEN; i++) {
            hex[2 * i] = digits[j->digest[i] >> 4];
            hex[2 * i + 1] = digits[j->digest[i] & 15];
        }
        hex[2 * SHA256_LEN] = 0;
        rc = host->send_ack(p, j->client, "hash",
                            json_pack("{s:s, s:I}", "hex", hex, "rounds",
                                      (json_int_t)j->rounds),
                            j->id, j->id_len);
    } else {
        /* The handler has returned, so fail() is no longer possible: send
         * the exception's shape by hand, with the id to match it. */
        rc = host->send_ack(p, j->client, "exception",
                            json_pack("{s:s, s:s}", "status", "error",
                                      "message", "hash failed"),
                            j->id, j->id_len);
    }
    if (rc == SB_ERR_NOT_FOUND || rc == SB_ERR_CLOSED)
        host->log(p, SB_LOG_DEBUG, "client %llu left before its hash was done",
                  (unsigned long long)j->client);
    else if (rc != SB_OK)
        host->log(p, SB_LOG_WARN, "cannot answer client %llu: %s",
                  (unsigned long long)j->client, host->strerror(rc));
    job_free(j);
}

/* {"event":"hash","data":{"text":T,"rounds":N},"id":I} → later
 * {"event":"hash","data":{"hex":H,"rounds":N},"id":I}. */
static int on_hash(sb_plugin *p, sb_message *msg, void *udata)
{
    work *w = udata;
    const sb_host *host = w->host;
    json_t *data = host->message_data(msg);
    if (!json_is_object(data))
        return host->fail(msg, "hash expects {\"text\": string, \"rounds\": "
                               "integer}");
    json_t *text = json_object_get(data, "text");
    json_t *rounds = json_object_get(data, "rounds");
    if (!json_is_string(text))
        return host->fail(msg, "\"text\" must be a string");
    if (!json_is_integer(rounds) || json_integer_value(rounds) < 1 ||
        json_integer_value(rounds) > w->max_rounds)
        return host->fail(msg, "\"rounds\" must be an integer from 1 to %lld",
                          (long long)w->max_rounds);

    hash_job *j = calloc(1, sizeof(*j));
    if (!j)
        return SB_ERR_NOMEM;
    j->host = host;
    j->md = w->sha256;
    j->client = host->message_client(msg);
    j->rounds = json_integer_value(rounds);
    /* The message and its data die with this handler: copy what the pool
     * thread and the completion need. The text may hold NUL bytes. */
    j->text_len = json_string_length(text);
    j->text = malloc(j->text_len + 1);
    size_t id_len = 0;
    const char *id = host->message_id_raw(msg, &id_len);
    if (id) {
        j->id = malloc(id_len);
        j->id_len = id_len;
    }
    if (!j->text || (id && !j->id)) {
        job_free(j);
        return SB_ERR_NOMEM;
    }
    memcpy(j->text, json_string_value(text), j->text_len + 1);
    if (id)
        memcpy(j->id, id, id_len);

    int rc = host->work_queue(p, hash_run, hash_done, j);
    if (rc != SB_OK) {
        job_free(j); /* not queued: done will never be called */
        return host->fail(msg, "cannot queue the hash: %s", host->strerror(rc));
    }
    return SB_OK;
}

static void on_unload(sb_plugin *p, void *udata)
{
    /* The host has cancelled or waited for all our work by now, so no job
     * still points at the digest or at this struct. */
    work *w = udata;
    EVP_MD_free(w->sha256);
    free(w);
}

static int work_init(sb_plugin *p, const sb_host *host)
{
    work *w = calloc(1, sizeof(*w));
    if (!w)
        return host->plugin_error(p, "out of memory");
    w->host = host;
    int rc = host->config_int(p, "max_rounds", WORK_DEFAULT_MAX_ROUNDS,
                              &w->max_rounds);
    if (rc != SB_OK)
        goto fail; /* the getter recorded why */
    if (w->max_rounds < 1) {
        rc = host->plugin_error(p, "max_rounds must be at least 1, got %lld",
                                (long long)w->max_rounds);
        goto fail;
    }
    w->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!w->sha256) {
        rc = host->plugin_error(p, "OpenSSL has no SHA256 digest");
        goto fail;
    }
    if ((rc = host->subscribe(p, "hash", on_hash, w)) != SB_OK) {
        rc = host->plugin_error(p, "cannot subscribe 'hash': %s",
                                host->strerror(rc));
        goto fail;
    }
    /* Last, so that every failure above frees `w` itself. */
    if ((rc = host->on_unload(p, on_unload, w)) != SB_OK) {
        rc = host->plugin_error(p, "cannot register the unload hook: %s",
                                host->strerror(rc));
        goto fail;
    }
    return SB_OK;
fail:
    EVP_MD_free(w->sha256);
    free(w);
    return rc;
}

SB_PLUGIN_DEFINE("work", "1.0.0", work_init);
