/*
 * relay: the Kafka side, see relay.h and relay.c.  One idempotent producer
 * (enable.idempotence=true, so acks=all), key = payment id, headers
 * eventId, eventType and occurredAt; a row's fate is its delivery report.
 */
#include "conf.h"
#include "diag.h"
#include "kq.h"
#include "outbox.h"
#include "relay_int.h"
#include "topics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct relay *r = opaque;
	struct row *w = m->_private;

	r->outstanding--;
	w->err = m->err;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		r->brokers_down = 0;
		w->state = w->dlq ? S_GONE : S_OK;
		return;
	}
	w->state = S_FAIL;
	snprintf(w->errmsg, sizeof(w->errmsg), "%s", rd_kafka_err2str(m->err));
}

static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct relay *r = opaque;

	r->kerr = (rd_kafka_resp_err_t)err;
	snprintf(r->kmsg, sizeof(r->kmsg), "%s", reason);
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		r->fatal = true;
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && r->brokers_down == 0)
		r->brokers_down = now_s();
	diag_info(2, "kafka: %s", reason);
}

/* librdkafka's own log lines only with -vvv: an outage would flood stderr. */
static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	diag_info(3, "kafka %s: %s", fac, buf);
}

/* Whether -X or the file set a Kafka property (or its alias). */
static bool
user_set(const char *key, const char *alias)
{
	const struct conf_kv *kv;
	size_t i, n = conf_kafka_props(&kv);

	for (i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0 ||
		    strcmp(kv[i].key, alias) == 0)
			return true;
	return false;
}

int
relay_producer_open(struct relay *r, char *err, size_t len)
{
	rd_kafka_conf_t *conf;
	char why[512];

	if ((conf = kq_conf("outbox-relay", err, len)) == NULL)
		return EX_CONFIG;
	/*
	 * A wave is produced at once and then awaited, so lingering only
	 * adds latency.
	 */
	if (kq_set(conf, "enable.idempotence", "true", err, len) != 0 ||
	    (!user_set("linger.ms", "queue.buffering.max.ms") &&
	        kq_set(conf, "linger.ms", "0", err, len) != 0)) {
		rd_kafka_conf_destroy(conf);
		return EX_CONFIG;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_opaque(conf, r);
	r->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
	if (r->rk == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, len, "kafka producer: %s", why);
		return EX_CONFIG;
	}
	r->fatal = false;
	return 0;
}

void
relay_producer_close(struct relay *r)
{
	size_t i;

	if (r->rk == NULL)
		return;
	rd_kafka_flush(r->rk, (int)conf_ms("kafka_message_timeout") + 1000);
	for (i = 0; i < r->ntopics; i++)
		rd_kafka_topic_destroy(r->topics[i].rkt);
	r->ntopics = 0;
	rd_kafka_destroy(r->rk);
	r->rk = NULL;
}

static rd_kafka_topic_t *
topic_handle(struct relay *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->ntopics; i++)
		if (strcmp(r->topics[i].name, name) == 0)
			return r->topics[i].rkt;
	if (r->ntopics == MAX_TOPICS)
		diag_die(EX_SOFTWARE, "more than %d topics", MAX_TOPICS);
	r->topics[r->ntopics].name = name;
	r->topics[r->ntopics].rkt = rd_kafka_topic_new(r->rk, name, NULL);
	if (r->topics[r->ntopics].rkt == NULL)
		diag_die(EX_SOFTWARE, "kafka topic '%s': %s", name,
		    rd_kafka_err2str(rd_kafka_last_error()));
	return r->topics[r->ntopics++].rkt;
}

static uint64_t
next_rnd(struct relay *r)
{
	/* xorshift64: jitter needs spread, not secrecy. */
	r->rnd ^= r->rnd << 13;
	r->rnd ^= r->rnd >> 7;
	r->rnd ^= r->rnd << 17;
	return r->rnd;
}

static rd_kafka_resp_err_t
produce(struct relay *r, struct row *w, const char *topic, const char *value,
    size_t len, const char *id, const char *type, const char *at)
{
	rd_kafka_topic_t *rkt = topic_handle(r, topic);
	rd_kafka_resp_err_t e;

	for (;;) {
		e = rd_kafka_producev(r->rk, RD_KAFKA_V_RKT(rkt),
		    RD_KAFKA_V_KEY(w->aggkey, strlen(w->aggkey)),
		    RD_KAFKA_V_VALUE((void *)value, len),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_HEADER("eventId", id, -1),
		    RD_KAFKA_V_HEADER("eventType", type, -1),
		    RD_KAFKA_V_HEADER("occurredAt", at, -1),
		    RD_KAFKA_V_OPAQUE(w), RD_KAFKA_V_END);
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			return e;
		/* The queue drains as delivery reports come back. */
		rd_kafka_poll(r->rk, 10);
	}
}

/* Send a row's event, or its dead-letter record. */
static void
send_row(struct relay *r, struct row *w)
{
	const char *dlq = topics_name(topics_for_event(EV_PAYMENT_DEAD_LETTER));
	struct relay_dead d;
	rd_kafka_resp_err_t e;
	char id[37], now[32];
	char *text;

	if (w->dead == NULL) {
		e = produce(r, w, w->topic, w->payload, w->len, w->key, w->type,
		    w->occurred);
	} else {
		w->dlq = true;
		outbox_now(now);
		relay_dead_letter_id(w->key, id);
		d = (struct relay_dead){ .event_key = w->key,
			.event_type = w->type,
			.topic = w->topic,
			.outbox_id = w->id,
			.aggregate_id = w->agg,
			.attempts = w->attempts,
			.error_type = w->dead,
			.error_message = w->why,
			.payload = w->payload,
			.payload_len = w->len,
			.occurred_at = now };
		text = relay_dead_letter(&d, false);
		e = produce(r, w, dlq, text, strlen(text), id,
		    EV_PAYMENT_DEAD_LETTER, now);
		if (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
			/* The payload stays in the table, for whoever fixes it. */
			free(text);
			text = relay_dead_letter(&d, true);
			e = produce(r, w, dlq, text, strlen(text), id,
			    EV_PAYMENT_DEAD_LETTER, now);
		}
		free(text);
	}
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		w->state = S_FAIL;
		w->err = e;
		snprintf(
		    w->errmsg, sizeof(w->errmsg), "%s", rd_kafka_err2str(e));
		return;
	}
	w->state = S_SENT;
	r->outstanding++;
}

/*
 * Every report comes within message.timeout.ms; should one not, purge it
 * (it then reports as failed) rather than mark rows on a guess.  Polled,
 * not rd_kafka_flush(): in librdkafka 2.0.2 a flush takes 10 ms at least.
 *
 * With every broker down, waiting out message.timeout.ms only delays what
 * is already known: after a grace of BROKERS_DOWN_GRACE_S without an
 * acknowledgement, the messages still queued are purged and report as
 * failed (not published, sent again later), so the breaker hears of the
 * outage in about a second.  A message that may have reached a broker
 * before it went away is sent again too; consumers dedupe by eventId.
 */
#define BROKERS_DOWN_GRACE_S 1.0

static void
await_reports(struct relay *r)
{
	double limit = (double)conf_ms("kafka_message_timeout") / 1000 + 30;
	double t0 = now_s(), t;
	int purged = 0;

	while (r->outstanding > 0) {
		rd_kafka_poll(r->rk, 100);
		t = now_s();
		if (r->brokers_down > 0 && r->outstanding > 0 &&
		    t - r->brokers_down >= BROKERS_DOWN_GRACE_S &&
		    t - t0 >= BROKERS_DOWN_GRACE_S) {
			diag_info(1,
			    "kafka: every broker is down; %zu "
			    "messages failed without waiting for "
			    "their timeout",
			    r->outstanding);
			rd_kafka_purge(r->rk,
			    RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
			continue;
		}
		if (t - t0 < limit)
			continue;
		if (purged++ > 5)
			diag_die(EX_SOFTWARE, "%zu delivery reports never came",
			    r->outstanding);
		rd_kafka_purge(
		    r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	}
}

/* Errors that say nothing about the row: Kafka is away or restarting. */
bool
relay_transient(rd_kafka_resp_err_t e)
{
	int c = kq_classify(e);

	return c == EX_UNAVAILABLE || c == EX_TEMPFAIL ||
	    e == RD_KAFKA_RESP_ERR__FATAL ||
	    e == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
	    e == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
}

void
relay_send_waves(struct relay *r, int waves)
{
	struct row *w;
	size_t i, sent;
	int k;

	for (k = 0; k < waves; k++) {
		sent = 0;
		for (i = 0; i < r->nrows; i++) {
			w = &r->rows[i];
			if (w->wave != k || w->state != S_NEW)
				continue;
			if (w->prev != NULL && w->prev->state != S_OK &&
			    w->prev->state != S_GONE) {
				w->state = S_HELD;
				w->delay_us = w->prev->delay_us;
				continue;
			}
			send_row(r, w);
			sent++;
		}
		if (sent > 0)
			await_reports(r);
		for (i = 0; i < r->nrows; i++) {
			w = &r->rows[i];
			if (w->wave != k || w->state != S_FAIL)
				continue;
			/* The last attempt is dead-lettered at once. */
			w->delay_us = w->dead == NULL &&
			        w->attempts + 1 >= r->o.max_attempts
			    ? 0
			    : relay_backoff_us(w->attempts + 1, r->o.backoff_ms,
			          r->o.backoff_max_ms, next_rnd(r));
		}
	}
}

/* After a fatal error the idempotent producer must be replaced. */
int
relay_reopen(struct relay *r)
{
	char err[512];
	int rc;

	diag_warn("kafka producer failed (%s): starting a new one", r->kmsg);
	rd_kafka_purge(
	    r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	relay_producer_close(r);
	if ((rc = relay_producer_open(r, err, sizeof(err))) != 0)
		snprintf(r->error, sizeof(r->error), "%s", err);
	return rc;
}
