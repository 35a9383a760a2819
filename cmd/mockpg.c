/*
 * mockpg: a mock payment gateway for development and load tests.  It
 * answers the card processor's three calls (authorize, settle, refund)
 * with the processor's JSON shapes, after a random delay, with random
 * declines and faults switched on over HTTP, and counts calls per
 * idempotency key so tests can prove exactly-once behaviour.
 *
 * A delayed request is suspended in libmicrohttpd and resumed by one timer
 * thread when its time is up, so thousands of slow requests cost no
 * threads.  One mutex (mu) guards the settings, the timer heap and the
 * lists of hung requests, so a request cannot slip into a hung list after
 * the fault that would release it has been cleared.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>

#include "diag.h"

#define BODY_MAX (64 * 1024)
#define KEY_MAX 64
#define DELAY_MAX 3600000L
#define LOADTEST_RATE 0.0001
#define GOLDEN 0x9e3779b97f4a7c15ULL
#define CT_JSON "application/json"

enum { EP_AUTHORIZE, EP_SETTLE, EP_REFUND, NEP };
enum { F_NONE, F_FAIL, F_HANG, F_HTTP500, F_GARBAGE, F_CLOSE, NFAULT };

static const char *const ep_names[NEP] = { "authorize", "settle", "refund" };
static const char *const fail_what[NEP] = { "authorization", "settlement",
	"refund" };
static const char *const fault_names[NFAULT] = { "none", "fail", "hang",
	"http500", "garbage", "close" };

/* Field type ('s' non-empty string, 'i' positive integer), then name. */
static const char *const fields[NEP][7] = {
	{ "smerchantId", "iamount", "scurrency", "sidempotencyKey" },
	{ "ipaymentId", "stransactionId", "iamount", "scurrency",
	    "sidempotencyKey" },
	{ "ipaymentId", "stransactionId", "iamount", "scurrency", "sreason",
	    "sidempotencyKey" },
};

struct setting {
	int fault;
	double rate;
	long long dmin, dmax;
};

struct req {
	struct MHD_Connection *conn;
	char *body;
	size_t len, cap;
	bool toolarge;
	bool waiting; /* Suspended; the outcome below is the answer. */
	int ep;
	char key[KEY_MAX + 1]; /* idempotencyKey */
	bool drop;
	unsigned status;
	char *out;
	uint64_t due; /* CLOCK_MONOTONIC ns. */
	struct req *next;
};

/* Distinct idempotency keys of one endpoint: open addressing, linear probe. */
struct keytab {
	pthread_mutex_t mu;
	struct slot {
		uint64_t hash;
		char *key;
		uint64_t count;
		uint64_t first; /* the id of the first approval, if approved */
		bool approved;
	} * slot;
	size_t cap, n;
	uint64_t calls;
};

static struct setting settings[NEP] = {
	{ F_NONE, 0.005, 5, 15 },
	{ F_NONE, 0.05, 50, 150 },
	{ F_NONE, 0.05, 50, 150 },
};
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t timer_cv;
static struct req **heap;
static size_t heap_n, heap_cap;
static struct req *hung[NEP];
static bool stopping;
static atomic_int nsusp;
static _Atomic uint64_t rng;
static struct keytab keys[NEP];
static atomic_bool started;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* splitmix64 on an atomic counter: one sequence, lock-free, seedable. */
static uint64_t
rand64(void)
{
	return mix64(atomic_fetch_add(&rng, GOLDEN) + GOLDEN);
}

static int
lookup(const char *const *names, int n, const char *s)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

static uint64_t
hash_key(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	/* FNV's low bits are weak and the table index uses the low bits. */
	return mix64(h);
}

static struct slot *
keytab_find(struct keytab *t, const char *key, uint64_t h)
{
	size_t i;

	for (i = h & (t->cap - 1); t->slot[i].key != NULL;
	     i = (i + 1) & (t->cap - 1))
		if (t->slot[i].hash == h && strcmp(t->slot[i].key, key) == 0)
			break;
	return &t->slot[i];
}

static void
keytab_grow(struct keytab *t)
{
	struct slot *old = t->slot, *s;
	size_t i, oldcap = t->cap;

	t->cap = oldcap ? oldcap * 2 : 1024;
	t->slot = xcalloc(t->cap, sizeof(*t->slot));
	for (i = 0; i < oldcap; i++) {
		if (old[i].key == NULL)
			continue;
		s = keytab_find(t, old[i].key, old[i].hash);
		*s = old[i];
	}
	free(old);
}

static void
keytab_add(struct keytab *t, const char *key)
{
	uint64_t h = hash_key(key);
	struct slot *s;

	pthread_mutex_lock(&t->mu);
	t->calls++;
	if ((t->n + 1) * 10 > t->cap * 7)
		keytab_grow(t);
	s = keytab_find(t, key, h);
	if (s->key == NULL) {
		s->hash = h;
		s->key = xstrdup(key);
		t->n++;
	}
	s->count++;
	pthread_mutex_unlock(&t->mu);
}

/* Whether the key was approved before. */
static bool
keytab_approved(struct keytab *t, const char *key)
{
	bool yes = false;

	pthread_mutex_lock(&t->mu);
	if (t->cap > 0)
		yes = keytab_find(t, key, hash_key(key))->approved;
	pthread_mutex_unlock(&t->mu);
	return yes;
}

/*
 * The id of the key's first approval: id when this is the first, else the
 * one given before.  A gateway answers a repeated key with its first
 * answer and no second hold.
 */
static uint64_t
keytab_first(struct keytab *t, const char *key, uint64_t id)
{
	struct slot *s;

	pthread_mutex_lock(&t->mu);
	s = keytab_find(t, key, hash_key(key));
	if (s->key != NULL) {
		if (!s->approved) {
			s->approved = true;
			s->first = id;
		}
		id = s->first;
	}
	pthread_mutex_unlock(&t->mu);
	return id;
}

static uint64_t
keytab_count(struct keytab *t, const char *key)
{
	uint64_t n = 0;

	pthread_mutex_lock(&t->mu);
	if (t->cap > 0)
		n = keytab_find(t, key, hash_key(key))->count;
	pthread_mutex_unlock(&t->mu);
	return n;
}

static void
keytab_reset(struct keytab *t)
{
	size_t i;

	pthread_mutex_lock(&t->mu);
	for (i = 0; i < t->cap; i++)
		free(t->slot[i].key);
	free(t->slot);
	t->slot = NULL;
	t->cap = t->n = 0;
	t->calls = 0;
	pthread_mutex_unlock(&t->mu);
}

/* The timer heap, a binary min-heap on due time; mu held. */
static void
heap_push(struct req *r)
{
	size_t i;

	if (heap_n == heap_cap) {
		heap_cap = heap_cap ? heap_cap * 2 : 256;
		heap = xrealloc(heap, heap_cap * sizeof(*heap));
	}
	for (i = heap_n++; i > 0 && heap[(i - 1) / 2]->due > r->due;
	     i = (i - 1) / 2)
		heap[i] = heap[(i - 1) / 2];
	heap[i] = r;
	if (i == 0)
		pthread_cond_signal(&timer_cv);
}

static struct req *
heap_pop(void)
{
	struct req *top = heap[0], *last = heap[--heap_n];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < heap_n) {
		if (c + 1 < heap_n && heap[c + 1]->due < heap[c]->due)
			c++;
		if (last->due <= heap[c]->due)
			break;
		heap[i] = heap[c];
		i = c;
	}
	heap[i] = last;
	return top;
}

/*
 * Resumes requests whose delay is over.  MHD_resume_connection runs
 * outside mu, and a request is not touched after it: its worker thread
 * may answer and free it at once.
 */
static void *
timer_main(void *arg)
{
	struct req *due[256];
	struct timespec ts;
	size_t i, n;

	pthread_mutex_lock(&mu);
	while (!stopping) {
		uint64_t now = now_ns();

		for (n = 0; heap_n > 0 && heap[0]->due <= now && n < 256; n++)
			due[n] = heap_pop();
		if (n > 0) {
			pthread_mutex_unlock(&mu);
			for (i = 0; i < n; i++)
				MHD_resume_connection(due[i]->conn);
			pthread_mutex_lock(&mu);
		} else if (heap_n == 0) {
			pthread_cond_wait(&timer_cv, &mu);
		} else {
			ts.tv_sec = (time_t)(heap[0]->due / 1000000000);
			ts.tv_nsec = (long)(heap[0]->due % 1000000000);
			pthread_cond_timedwait(&timer_cv, &mu, &ts);
		}
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

/*
 * Draws a call's outcome and due time under s; may run with mu held.  An
 * approval of a key approved before is that approval again.
 */
static void
decide(struct req *r, const struct setting *s)
{
	uint64_t fail = rand64(), delay = rand64(), id = rand64();
	uint64_t span = (uint64_t)(s->dmax - s->dmin + 1);
	uint64_t ms = (uint64_t)s->dmin + delay % span;
	unsigned a, b;

	r->due = now_ns() + ms * 1000000;
	r->status = MHD_HTTP_OK;
	r->drop = s->fault == F_CLOSE;
	free(r->out);
	if (s->fault == F_HTTP500) {
		r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		r->out = xstrdup("{\"status\":\"ERROR\",\"responseCode\":"
		                 "\"INTERNAL_ERROR\",\"message\":"
		                 "\"injected fault: http500\"}\n");
		return;
	}
	if (s->fault == F_GARBAGE) {
		/* Cut short, as from a proxy that gave up mid-answer. */
		r->out = xstrdup("{\"status\":\"SUCC");
		return;
	}
	/* The random failures are drawn for new keys only. */
	if (s->fault == F_FAIL ||
	    (!keytab_approved(&keys[r->ep], r->key) &&
	        (double)(fail >> 11) * 0x1.0p-53 < s->rate)) {
		r->out = xasprintf("{\"status\":\"FAILED\",\"responseCode\":"
		                   "\"PG_TIMEOUT\",\"message\":\"%s API "
		                   "timeout\"}\n",
		    fail_what[r->ep]);
		return;
	}
	id = keytab_first(&keys[r->ep], r->key, id);
	a = (unsigned)(id >> 32);
	b = (unsigned)id;
	if (r->ep == EP_AUTHORIZE) {
		r->out = xasprintf("{\"status\":\"SUCCESS\",\"approvalNumber\":"
		                   "\"APP%08X\",\"transactionId\":\"txn_%08x\","
		                   "\"responseCode\":\"0000\",\"message\":"
		                   "\"approved\"}\n",
		    a, b);
	} else if (r->ep == EP_SETTLE) {
		r->out = xasprintf("{\"status\":\"SUCCESS\",\"transactionId\":"
		                   "\"txn_%08x\",\"responseCode\":\"0000\","
		                   "\"message\":\"settled\"}\n",
		    b);
	} else {
		r->out = xasprintf("{\"status\":\"SUCCESS\",\"cancelTransaction"
		                   "Id\":\"cancel_%08x\",\"responseCode\":"
		                   "\"0000\",\"message\":\"refunded\"}\n",
		    b);
	}
}

/* Takes body, which must come from malloc; allow is for a 405. */
static enum MHD_Result
send_body(
    struct MHD_Connection *c, unsigned status, char *body, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(
	    strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, CT_JSON);
	if (allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
	char *body;

	json_decref(j);
	if (s == NULL)
		return MHD_NO;
	body = xasprintf("%s\n", s);
	free(s);
	return send_body(c, status, body, NULL);
}

static enum MHD_Result __attribute__((format(printf, 4, 5)))
send_error(struct MHD_Connection *c, unsigned status, const char *code,
    const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	size_t i;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Echoed client bytes must not make the JSON invalid UTF-8. */
	for (i = 0; msg[i] != '\0'; i++)
		if ((unsigned char)msg[i] < 0x20 ||
		    (unsigned char)msg[i] > 0x7e)
			msg[i] = '?';
	return send_json(c, status,
	    json_pack("{s:s,s:s,s:s}", "status", "ERROR", "responseCode", code,
	        "message", msg));
}

static enum MHD_Result
answer(struct req *r)
{
	char *out = r->out;

	if (r->drop)
		return MHD_NO;
	r->out = NULL;
	return send_body(r->conn, r->status, out, NULL);
}

/* mu held. */
static void
suspend(struct req *r)
{
	r->waiting = true;
	atomic_fetch_add(&nsusp, 1);
	MHD_suspend_connection(r->conn);
}

static json_t *
parse_body(struct req *r, char *why, size_t n)
{
	json_error_t e;
	json_t *j;

	j = json_loadb(
	    r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &e);
	if (j == NULL)
		snprintf(why, n, "request body is not JSON: %s", e.text);
	else if (!json_is_object(j))
		snprintf(why, n, "request body is not a JSON object");
	else
		return j;
	json_decref(j);
	return NULL;
}

static bool
check_fields(json_t *j, int ep, char *why, size_t n)
{
	const char *f;
	json_t *v;
	int i;

	for (i = 0; i < 7 && fields[ep][i] != NULL; i++) {
		f = fields[ep][i] + 1;
		v = json_object_get(j, f);
		if (v == NULL)
			snprintf(why, n, "missing field '%s'", f);
		else if (fields[ep][i][0] == 'i' &&
		    (!json_is_integer(v) || json_integer_value(v) <= 0))
			snprintf(why, n, "'%s' must be a positive integer", f);
		else if (fields[ep][i][0] == 's' &&
		    (!json_is_string(v) || json_string_length(v) == 0))
			snprintf(why, n, "'%s' must be a non-empty string", f);
		else if (strcmp(f, "idempotencyKey") == 0 &&
		    json_string_length(v) > KEY_MAX)
			snprintf(
			    why, n, "'%s' is longer than %d bytes", f, KEY_MAX);
		else
			continue;
		return false;
	}
	return true;
}

/* A business call: validate, count, then answer now, later or never. */
static enum MHD_Result
call(struct req *r)
{
	struct setting s;
	char why[256];
	json_t *j;

	if ((j = parse_body(r, why, sizeof(why))) == NULL ||
	    !check_fields(j, r->ep, why, sizeof(why))) {
		json_decref(j);
		return send_error(
		    r->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "%s", why);
	}
	snprintf(r->key, sizeof(r->key), "%s",
	    json_string_value(json_object_get(j, "idempotencyKey")));
	keytab_add(&keys[r->ep], r->key);
	json_decref(j);

	pthread_mutex_lock(&mu);
	s = settings[r->ep];
	if (s.fault == F_HANG && !stopping) {
		suspend(r);
		r->next = hung[r->ep];
		hung[r->ep] = r;
		pthread_mutex_unlock(&mu);
		return MHD_YES;
	}
	pthread_mutex_unlock(&mu);
	if (s.fault == F_HANG)
		return MHD_NO;
	decide(r, &s);
	if (r->due <= now_ns())
		return answer(r);
	pthread_mutex_lock(&mu);
	if (stopping) {
		pthread_mutex_unlock(&mu);
		return answer(r);
	}
	suspend(r);
	heap_push(r);
	pthread_mutex_unlock(&mu);
	return MHD_YES;
}

static json_t *
stats_json(void)
{
	json_t *calls = json_object(), *n = json_object();
	int ep;

	for (ep = 0; ep < NEP; ep++) {
		pthread_mutex_lock(&keys[ep].mu);
		json_object_set_new(calls, ep_names[ep],
		    json_integer((json_int_t)keys[ep].calls));
		json_object_set_new(
		    n, ep_names[ep], json_integer((json_int_t)keys[ep].n));
		pthread_mutex_unlock(&keys[ep].mu);
	}
	return json_pack("{s:o,s:o}", "calls", calls, "keys", n);
}

static enum MHD_Result
get_stats(struct MHD_Connection *c)
{
	const char *e, *key;
	json_t *j;
	int ep;

	e = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "endpoint");
	key = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "key");
	if (e == NULL && key == NULL)
		return send_json(c, MHD_HTTP_OK, stats_json());
	if (e == NULL || (ep = lookup(ep_names, NEP, e)) < 0)
		return send_error(c, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
		    "'endpoint' must be authorize, settle or refund");
	if (key == NULL) {
		pthread_mutex_lock(&keys[ep].mu);
		j = json_pack("{s:s,s:I,s:I}", "endpoint", e, "calls",
		    (json_int_t)keys[ep].calls, "keys", (json_int_t)keys[ep].n);
		pthread_mutex_unlock(&keys[ep].mu);
		return send_json(c, MHD_HTTP_OK, j);
	}
	j = json_pack("{s:s,s:s,s:I}", "endpoint", e, "key", key, "calls",
	    (json_int_t)keytab_count(&keys[ep], key));
	if (j == NULL)
		return send_error(c, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
		    "'key' is not UTF-8");
	return send_json(c, MHD_HTTP_OK, j);
}

static json_t *
settings_json(const struct setting *s)
{
	json_t *o = json_object();
	int ep;

	for (ep = 0; ep < NEP; ep++)
		json_object_set_new(o, ep_names[ep],
		    json_pack("{s:s,s:f,s:[I,I]}", "fault",
		        fault_names[s[ep].fault], "failureRate", s[ep].rate,
		        "delayMs", (json_int_t)s[ep].dmin,
		        (json_int_t)s[ep].dmax));
	return o;
}

static bool
delay_ok(json_t *v, long long *lo, long long *hi)
{
	json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);

	if (json_is_integer(v))
		a = b = v;
	else if (json_array_size(v) != 2)
		return false;
	if (!json_is_integer(a) || !json_is_integer(b))
		return false;
	*lo = json_integer_value(a);
	*hi = json_integer_value(b);
	return *lo >= 0 && *lo <= *hi && *hi <= DELAY_MAX;
}

/* mu held.  Released requests are answered as if they had just come in. */
static void
release_hung(int ep)
{
	struct req *r, *next;

	for (r = hung[ep]; r != NULL; r = next) {
		next = r->next;
		decide(r, &settings[ep]);
		heap_push(r);
	}
	hung[ep] = NULL;
}

static enum MHD_Result
set_control(struct req *r)
{
	struct setting snap[NEP];
	int fault = -1, lo = 0, hi = NEP, ep;
	long long dmin = -1, dmax = -1;
	double rate = -1;
	char why[256], *txt;
	const char *k;
	json_t *j, *v;

	if ((j = parse_body(r, why, sizeof(why))) == NULL)
		return send_error(
		    r->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "%s", why);
	why[0] = '\0';
	json_object_foreach(j, k, v)
	{
		if (strcmp(k, "fault") == 0) {
			if (!json_is_string(v) ||
			    (fault = lookup(fault_names, NFAULT,
			         json_string_value(v))) < 0)
				snprintf(why, sizeof(why),
				    "'fault' must be none, fail, hang, "
				    "http500, garbage or close");
		} else if (strcmp(k, "endpoint") == 0) {
			if (json_is_string(v) &&
			    (lo = lookup(
			         ep_names, NEP, json_string_value(v))) >= 0)
				hi = lo + 1;
			else if (json_is_string(v) &&
			    strcmp(json_string_value(v), "all") == 0)
				lo = 0;
			else
				snprintf(why, sizeof(why),
				    "'endpoint' must be authorize, settle, "
				    "refund or all");
		} else if (strcmp(k, "failureRate") == 0) {
			rate = json_number_value(v);
			if (!json_is_number(v) || !(rate >= 0 && rate <= 1))
				snprintf(why, sizeof(why),
				    "'failureRate' must be a number from 0 "
				    "to 1");
		} else if (strcmp(k, "delayMs") == 0) {
			if (!delay_ok(v, &dmin, &dmax))
				snprintf(why, sizeof(why),
				    "'delayMs' must be [min,max] with 0 <= "
				    "min <= max <= %ld",
				    DELAY_MAX);
		} else {
			snprintf(why, sizeof(why), "unknown field '%s'", k);
		}
		if (why[0] != '\0')
			break;
	}
	if (why[0] != '\0') {
		json_decref(j);
		return send_error(
		    r->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "%s", why);
	}
	if (diag_verbose > 0 && (txt = json_dumps(j, JSON_COMPACT)) != NULL) {
		diag_info(1, "control: %s", txt);
		free(txt);
	}
	json_decref(j);

	pthread_mutex_lock(&mu);
	for (ep = lo; ep < hi; ep++) {
		int old = settings[ep].fault;

		if (fault >= 0)
			settings[ep].fault = fault;
		if (rate >= 0)
			settings[ep].rate = rate;
		if (dmin >= 0) {
			settings[ep].dmin = dmin;
			settings[ep].dmax = dmax;
		}
		if (old == F_HANG && settings[ep].fault != F_HANG)
			release_hung(ep);
	}
	memcpy(snap, settings, sizeof(snap));
	pthread_mutex_unlock(&mu);
	return send_json(r->conn, MHD_HTTP_OK, settings_json(snap));
}

static enum MHD_Result
not_allowed(struct MHD_Connection *c, const char *allow)
{
	return send_body(c, MHD_HTTP_METHOD_NOT_ALLOWED,
	    xasprintf("{\"status\":\"ERROR\",\"responseCode\":"
	              "\"METHOD_NOT_ALLOWED\",\"message\":\"use %s\"}\n",
	        allow),
	    allow);
}

static enum MHD_Result
route(struct req *r, const char *url, const char *method)
{
	struct MHD_Connection *c = r->conn;
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
	    strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	struct setting snap[NEP];
	int ep;

	if (strncmp(url, "/v1/", 4) == 0 &&
	    (r->ep = lookup(ep_names, NEP, url + 4)) >= 0)
		return post ? call(r) : not_allowed(c, "POST");
	if (strcmp(url, "/health") == 0)
		return get ? send_body(c, MHD_HTTP_OK,
		                 xstrdup("{\"status\":\"UP\"}\n"), NULL)
		           : not_allowed(c, "GET");
	if (strcmp(url, "/stats") == 0)
		return get ? get_stats(c) : not_allowed(c, "GET");
	if (strcmp(url, "/stats/reset") == 0) {
		if (!post)
			return not_allowed(c, "POST");
		for (ep = 0; ep < NEP; ep++)
			keytab_reset(&keys[ep]);
		return send_json(c, MHD_HTTP_OK, stats_json());
	}
	if (strcmp(url, "/control") == 0) {
		if (post)
			return set_control(r);
		if (!get)
			return not_allowed(c, "GET, POST");
		pthread_mutex_lock(&mu);
		memcpy(snap, settings, sizeof(snap));
		pthread_mutex_unlock(&mu);
		return send_json(c, MHD_HTTP_OK, settings_json(snap));
	}
	return send_error(c, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such path");
}

static enum MHD_Result
too_large(struct MHD_Connection *c)
{
	return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "PAYLOAD_TOO_LARGE",
	    "request body is larger than %d bytes", BODY_MAX);
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
    const char *version, const char *data, size_t *size, void **ctx)
{
	struct req *r = *ctx;
	const char *cl;

	if (r == NULL) {
		r = xcalloc(1, sizeof(*r));
		r->conn = c;
		*ctx = r;
		/* Refuse a large body before reading it. */
		cl = MHD_lookup_connection_value(
		    c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL && strtoull(cl, NULL, 10) > BODY_MAX) {
			r->toolarge = true;
			return too_large(c);
		}
		return MHD_YES;
	}
	if (*size > 0) {
		if (r->len + *size > BODY_MAX)
			r->toolarge = true;
		if (!r->toolarge) {
			if (r->len + *size > r->cap) {
				r->cap = r->len + *size + 1024;
				r->body = xrealloc(r->body, r->cap);
			}
			memcpy(r->body + r->len, data, *size);
			r->len += *size;
		}
		*size = 0;
		return MHD_YES;
	}
	if (r->waiting) {
		r->waiting = false;
		atomic_fetch_sub(&nsusp, 1);
		return answer(r);
	}
	if (r->toolarge)
		return too_large(c);
	return route(r, url, method);
}

static void
completed(void *cls, struct MHD_Connection *c, void **ctx,
    enum MHD_RequestTerminationCode toe)
{
	struct req *r = *ctx;

	if (r == NULL)
		return;
	if (r->waiting)
		atomic_fetch_sub(&nsusp, 1);
	free(r->body);
	free(r->out);
	free(r);
	*ctx = NULL;
}

/* libmicrohttpd's own messages: start-up errors, and later only with -vv. */
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	if (started && diag_verbose < 2)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	diag_warn("microhttpd: %s", buf);
}

/* Command line and environment. */

struct laddr {
	struct sockaddr_storage ss;
	socklen_t len;
};

static struct laddr laddr;
static uint64_t seed;
static bool loadtest;

static const char *
parse_listen(const char *v, void *dst)
{
	struct laddr *la = dst;
	const char *colon = strrchr(v, ':'), *h = v;
	struct addrinfo hints = { 0 }, *ai, *p;
	char host[256], *end;
	long long port;
	size_t hl;
	int rc;

	if (colon == NULL || colon == v)
		return "expected ADDR:PORT";
	hl = (size_t)(colon - v);
	if (v[0] == '[') {
		if (hl < 3 || v[hl - 1] != ']')
			return "expected ADDR:PORT or [ADDR]:PORT";
		h = v + 1;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return "address is too long";
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtoll(colon + 1, &end, 10);
	if (!isdigit((unsigned char)colon[1]) || *end != '\0' || errno != 0 ||
	    port > 65535)
		return "port is not a number from 0 to 65535";
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, NULL, &hints, &ai)) != 0)
		return gai_strerror(rc);
	/* "localhost" may list ::1 first; IPv4 is what clients expect. */
	for (p = ai; p->ai_next != NULL && p->ai_family != AF_INET;)
		p = p->ai_next;
	if (p->ai_family != AF_INET)
		p = ai;
	memcpy(&la->ss, p->ai_addr, p->ai_addrlen);
	la->len = p->ai_addrlen;
	freeaddrinfo(ai);
	if (la->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&la->ss)->sin_port =
		    htons((uint16_t)port);
	else if (la->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&la->ss)->sin6_port =
		    htons((uint16_t)port);
	else
		return "not an IP address";
	return NULL;
}

static const char *
parse_seed(const char *v, void *dst)
{
	char *end;

	errno = 0;
	*(uint64_t *)dst = strtoull(v, &end, 10);
	if (!isdigit((unsigned char)*v) || *end != '\0' || errno != 0)
		return "expected an integer from 0 to 18446744073709551615";
	return NULL;
}

static const char *
parse_delay(const char *v, void *dst)
{
	struct setting *s = dst;
	long long lo, hi;
	char *end;

	errno = 0;
	lo = hi = strtoll(v, &end, 10);
	if (isdigit((unsigned char)*v) && *end == '-' &&
	    isdigit((unsigned char)end[1]))
		hi = strtoll(end + 1, &end, 10);
	if (!isdigit((unsigned char)*v) || *end != '\0')
		return "expected MIN-MAX in milliseconds";
	if (errno != 0 || hi > DELAY_MAX)
		return "delay is longer than 3600000 ms";
	if (lo > hi)
		return "minimum is greater than maximum";
	s->dmin = lo;
	s->dmax = hi;
	return NULL;
}

static const char *
parse_rate(const char *v, void *dst)
{
	char *end;
	double r;

	r = strtod(v, &end);
	if (end == v || *end != '\0' || !(r >= 0 && r <= 1))
		return "expected a rate from 0 to 1";
	((struct setting *)dst)->rate = r;
	return NULL;
}

static const char *
parse_bool(const char *v, void *dst)
{
	static const char *const yes[] = { "true", "1", "yes", "on" };
	static const char *const no[] = { "false", "0", "no", "off" };

	if (lookup(yes, 4, v) >= 0)
		*(bool *)dst = true;
	else if (lookup(no, 4, v) >= 0)
		*(bool *)dst = false;
	else
		return "expected true or false";
	return NULL;
}

/* MODE[:ENDPOINT]; applied at once, so --fault may be repeated. */
static const char *
parse_fault(const char *v)
{
	const char *colon = strchr(v, ':');
	size_t n = colon ? (size_t)(colon - v) : strlen(v);
	int f, ep;

	for (f = 0; f < NFAULT; f++)
		if (strlen(fault_names[f]) == n &&
		    strncmp(fault_names[f], v, n) == 0)
			break;
	if (f == NFAULT)
		return "mode must be none, fail, hang, http500, garbage or "
		       "close";
	if (colon == NULL || strcmp(colon + 1, "all") == 0) {
		for (ep = 0; ep < NEP; ep++)
			settings[ep].fault = f;
	} else if ((ep = lookup(ep_names, NEP, colon + 1)) >= 0) {
		settings[ep].fault = f;
	} else {
		return "endpoint must be authorize, settle, refund or all";
	}
	return NULL;
}

enum {
	O_LISTEN,
	O_SEED,
	O_DELAY,
	O_RATE = O_DELAY + NEP,
	O_LOADTEST = O_RATE + NEP,
	NOPT
};

static struct opt {
	const char *flag, *env;
	const char *(*parse)(const char *, void *);
	void *dst;
	const char *val; /* From the command line. */
} opts[NOPT] = {
	{ "listen", "PAY_PG_LISTEN", parse_listen, &laddr, NULL },
	{ "seed", "PAY_PG_SEED", parse_seed, &seed, NULL },
	{ "authorize-delay", "PAY_PG_AUTHORIZE_DELAY", parse_delay,
	    &settings[EP_AUTHORIZE], NULL },
	{ "settle-delay", "PAY_PG_SETTLE_DELAY", parse_delay,
	    &settings[EP_SETTLE], NULL },
	{ "refund-delay", "PAY_PG_REFUND_DELAY", parse_delay,
	    &settings[EP_REFUND], NULL },
	{ "authorize-failure-rate", "PAY_PG_AUTHORIZE_FAILURE_RATE", parse_rate,
	    &settings[EP_AUTHORIZE], NULL },
	{ "settle-failure-rate", "PAY_PG_SETTLE_FAILURE_RATE", parse_rate,
	    &settings[EP_SETTLE], NULL },
	{ "refund-failure-rate", "PAY_PG_REFUND_FAILURE_RATE", parse_rate,
	    &settings[EP_REFUND], NULL },
	{ "loadtest", "PAY_PG_LOADTEST_MODE", parse_bool, &loadtest, NULL },
};

static void
usage(FILE *fp)
{
	fputs("usage: mockpg [-hVv] [-l addr:port] [--fault mode[:endpoint]] "
	      "[--loadtest]\n"
	      "              [--seed n] [--authorize-delay min-max] "
	      "[--settle-delay min-max]\n"
	      "              [--refund-delay min-max] "
	      "[--authorize-failure-rate rate]\n"
	      "              [--settle-failure-rate rate] "
	      "[--refund-failure-rate rate]\n",
	    fp);
}

static _Noreturn void __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	exit(diag_usage("%s", buf));
}

/* Flag, then environment (empty is unset), then default. */
static char *
parse_args(int argc, char *argv[])
{
	static struct option longopts[NOPT + 5];
	const char *v, *why, *spec = "127.0.0.1:18080";
	bool given[NOPT] = { false };
	int c, i;

	for (i = 0; i < NOPT; i++)
		longopts[i] = (struct option){ opts[i].flag,
			i == O_LOADTEST ? no_argument : required_argument, NULL,
			256 + i };
	longopts[i++] =
	    (struct option){ "fault", required_argument, NULL, 'f' };
	longopts[i++] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[i++] = (struct option){ "verbose", no_argument, NULL, 'v' };
	longopts[i++] = (struct option){ "version", no_argument, NULL, 'V' };
	/* A leading ':' lets us word the missing-argument message ourselves. */
	while ((c = getopt_long(argc, argv, ":hl:vV", longopts, NULL)) != -1) {
		if (c == 'l')
			c = 256 + O_LISTEN;
		if (c >= 256)
			opts[c - 256].val =
			    c == 256 + O_LOADTEST ? "true" : optarg;
		else if (c == 'f' && (why = parse_fault(optarg)) != NULL)
			usage_error("--fault '%s': %s", optarg, why);
		else if (c == 'h') {
			usage(stdout);
			exit(diag_close_stdout());
		} else if (c == 'v')
			diag_verbose++;
		else if (c == 'V') {
			diag_version();
			exit(diag_close_stdout());
		} else if (c == ':' || c == '?') {
			exit(diag_badopt(c, argv));
		}
	}
	if (optind < argc)
		usage_error(
		    "argument '%s': mockpg takes no operands", argv[optind]);
	for (i = 0; i < NOPT; i++) {
		if ((v = opts[i].val) != NULL) {
			if ((why = opts[i].parse(v, opts[i].dst)) != NULL)
				usage_error(
				    "--%s '%s': %s", opts[i].flag, v, why);
		} else if ((v = getenv(opts[i].env)) != NULL && *v != '\0') {
			if ((why = opts[i].parse(v, opts[i].dst)) != NULL)
				diag_die(EX_CONFIG, "%s '%s': %s", opts[i].env,
				    v, why);
		} else {
			continue;
		}
		given[i] = true;
		if (i == O_LISTEN)
			spec = v;
	}
	if (!given[O_LISTEN])
		parse_listen(spec, &laddr);
	if (!given[O_SEED])
		seed = mix64(now_ns() ^ (uint64_t)getpid());
	for (i = 0; i < NEP && loadtest; i++)
		if (!given[O_RATE + i])
			settings[i].rate = LOADTEST_RATE;
	return xstrdup(spec);
}

static int
open_listener(const char *spec)
{
	int fd, one = 1;

	fd = socket(laddr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		diag_die(EX_UNAVAILABLE, "socket for '%s': %s", spec,
		    strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* A busy port may free up; a foreign address will not. */
	if (bind(fd, (struct sockaddr *)&laddr.ss, laddr.len) == -1)
		diag_die(errno == EADDRINUSE ? EX_TEMPFAIL : EX_CONFIG,
		    "bind '%s': %s", spec, strerror(errno));
	if (listen(fd, 4096) == -1)
		diag_die(EX_UNAVAILABLE, "listen on '%s': %s", spec,
		    strerror(errno));
	return fd;
}

/*
 * MHD_stop_daemon must not meet a suspended connection: stop the timer,
 * answer what is delayed at once, drop what hangs, and give the workers a
 * moment to send those answers.
 */
static void
drain(pthread_t timer)
{
	struct req *list = NULL, *r, *next;
	uint64_t until;
	int ep;

	pthread_mutex_lock(&mu);
	stopping = true;
	while (heap_n > 0) {
		r = heap_pop();
		r->next = list;
		list = r;
	}
	for (ep = 0; ep < NEP; ep++) {
		for (r = hung[ep]; r != NULL; r = next) {
			next = r->next;
			r->drop = true;
			r->next = list;
			list = r;
		}
		hung[ep] = NULL;
	}
	pthread_cond_signal(&timer_cv);
	pthread_mutex_unlock(&mu);
	pthread_join(timer, NULL);
	for (r = list; r != NULL; r = next) {
		next = r->next;
		MHD_resume_connection(r->conn);
	}
	until = now_ns() + 2000000000;
	while (atomic_load(&nsusp) > 0 && now_ns() < until)
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
}

int
main(int argc, char *argv[])
{
	struct MHD_Daemon *d;
	pthread_condattr_t ca;
	pthread_t timer;
	struct rlimit rl;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN], *spec, *url;
	unsigned nthr, limit;
	uint64_t calls = 0;
	sigset_t sigs;
	long ncpu;
	int fd, sig, ep;

	diag_init(argv[0]);
	spec = parse_args(argc, argv);
	atomic_store(&rng, seed);
	diag_ignore_sigpipe();
	/* Threads inherit the mask; main takes the signals with sigwait. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	/* Every waiting request holds a socket. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	limit = rl.rlim_cur > 100064 ? 100000 : (unsigned)rl.rlim_cur - 64;
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	nthr = ncpu < 2 ? 2 : ncpu > 8 ? 8 : (unsigned)ncpu;

	for (ep = 0; ep < NEP; ep++)
		pthread_mutex_init(&keys[ep].mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&timer_cv, &ca);
	if ((errno = pthread_create(&timer, NULL, timer_main, NULL)) != 0)
		diag_die(
		    EX_SOFTWARE, "start timer thread: %s", strerror(errno));

	fd = open_listener(spec);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
		    host, sizeof(host));
		url = xasprintf("http://[%s]:%u", host,
		    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
		    sizeof(host));
		url = xasprintf("http://%s:%u", host,
		    ntohs(((struct sockaddr_in *)&ss)->sin_port));
	}
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	        MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
	        (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	    0, NULL, NULL, handle, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
	    NULL, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_THREAD_POOL_SIZE,
	    nthr, MHD_OPTION_CONNECTION_LIMIT, limit,
	    MHD_OPTION_CONNECTION_TIMEOUT, 60u,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)8192,
	    MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
	if (d == NULL)
		diag_die(
		    EX_SOFTWARE, "start HTTP server on '%s': failed", spec);
	started = true;
	printf("{\"listen\":\"%s\"}\n", url);
	if (fflush(stdout) != 0 && errno != EPIPE)
		diag_die(
		    EX_IOERR, "write to standard output: %s", strerror(errno));
	diag_warn("listening on %s (seed %llu, %u threads)", url,
	    (unsigned long long)seed, nthr);

	while (sigwait(&sigs, &sig) != 0)
		;
	drain(timer);
	MHD_stop_daemon(d);
	for (ep = 0; ep < NEP; ep++)
		calls += keys[ep].calls;
	diag_warn("stopped on %s after %llu calls",
	    sig == SIGTERM ? "SIGTERM" : "SIGINT", (unsigned long long)calls);
	free(spec);
	free(url);
	return diag_close_stdout();
}
