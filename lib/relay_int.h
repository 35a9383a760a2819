/*
 * relay_int: what relay.c (claiming, ordering, marking) and relay_kafka.c
 * (the producer and the waves) share; nothing else includes it.
 */
#ifndef PAYKIT_RELAY_INT_H
#define PAYKIT_RELAY_INT_H

#include "breaker.h"
#include "relay.h"

#include <librdkafka/rdkafka.h>

#define MAX_TOPICS 16

enum state {
	S_NEW, /* claimed, not sent */
	S_SENT, /* produced, delivery report awaited */
	S_OK, /* published */
	S_GONE, /* dead-letter record delivered: DEAD */
	S_FAIL, /* not delivered: retried later */
	S_HELD, /* an earlier event of its payment is not out */
};

struct row {
	int64_t id, agg;
	long long attempts;
	char key[37], aggkey[24], occurred[40];
	char *type, *payload, *last_error;
	size_t len;
	const char *topic; /* full name; NULL for an unknown type */
	const char *dead; /* error type when it is to be dead-lettered */
	char *why; /* and its message */
	struct row *prev; /* previous row of its payment in this batch */
	int wave;
	enum state state;
	bool dlq; /* what was sent is its dead-letter record */
	bool brief; /* held for an earlier event that is due: in flight */
	rd_kafka_resp_err_t err;
	char errmsg[256];
	long long delay_us; /* retry or hold delay */
};

struct relay {
	struct db *db;
	struct breaker *breaker; /* kafka */
	struct breaker_call bc;
	long long t0; /* when the batch began, ms */
	struct relay_opts o;
	rd_kafka_t *rk;
	struct {
		const char *name;
		rd_kafka_topic_t *rkt;
	} topics[MAX_TOPICS];
	size_t ntopics;
	struct row *rows;
	struct relay_item *items;
	size_t nrows, cap;
	struct relay_pending *pend;
	size_t npend, pendcap;
	size_t outstanding;
	uint64_t rnd;
	rd_kafka_resp_err_t kerr; /* the last error the client reported */
	char kmsg[256];
	bool fatal;
	/*
	 * Every broker went away (librdkafka said so) and none has
	 * acknowledged a message since: CLOCK_MONOTONIC seconds, or 0.
	 */
	double brokers_down;
	char error[1024];
	char *buf; /* JSON arrays for the statements */
	size_t buflen, bufcap;
	/*
	 * Where the next claim may resume in ix_outbox_due: the last
	 * claimed row's next_attempt_at and event_id, when from is set.
	 */
	bool from;
	char from_at[32];
	int64_t from_id;
	double scanned_at; /* when a claim last read from the start, s */
};

/* relay_kafka.c */
int relay_producer_open(struct relay *r, char *err, size_t len);
void relay_producer_close(struct relay *r);
/* After a fatal error the idempotent producer must be replaced. */
int relay_reopen(struct relay *r);
/* Send the planned waves, each after the previous one's reports. */
void relay_send_waves(struct relay *r, int waves);
/* Errors that say nothing about the row: Kafka is away or restarting. */
bool relay_transient(rd_kafka_resp_err_t e);

#endif
