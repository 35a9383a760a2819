/*
 * outbox: the event envelope and the only way events enter the pipeline:
 * a row in outbox_event written in the caller's transaction, published to
 * Kafka later by outbox-relay.  Nothing sends to Kafka directly.
 *
 * Every payload carries eventId (a UUID, the consumers' dedup key),
 * eventType, schemaVersion and occurredAt (ISO-8601 UTC, microseconds)
 * beside the event's own fields:
 *   PAYMENT_AUTHORIZED         paymentId status="AUTHORIZED" merchantId amount
 *                              currency approvalNumber transactionId
 *   PAYMENT_CAPTURE_REQUESTED  paymentId status="CAPTURE_REQUESTED" merchantId
 *                              amount currency approvalNumber transactionId
 *   PAYMENT_CAPTURED           paymentId status="CAPTURED" merchantId amount
 *                              currency settlementId pgTransactionId
 *   PAYMENT_REFUND_REQUESTED   paymentId status="REFUND_REQUESTED" merchantId
 *                              amount currency refundId reason transactionId
 *   PAYMENT_REFUNDED           paymentId status="REFUNDED" merchantId amount
 *                              currency refundId cancelTransactionId
 * Dead-letter records (PAYMENT_/SETTLEMENT_/REFUND_DEAD_LETTER) carry what
 * failed and why; see each producer's man page.
 */
#ifndef PAYKIT_OUTBOX_H
#define PAYKIT_OUTBOX_H

#include "db.h"
#include "js.h"

#include <jansson.h>
#include <stdint.h>

/* A fresh random UUID (version 4) in out. */
void outbox_uuid(char out[37]);

/* The current time as ISO-8601 UTC with microseconds, in out. */
void outbox_now(char out[32]);

/*
 * Add eventId, eventType, schemaVersion and occurredAt to payload (those
 * already set are kept) and insert it as a PENDING outbox row for
 * aggregate_id.  The eventId is copied to key_out when not NULL.  Returns 0
 * or a db exit code; the caller owns the transaction and the payload.
 */
int outbox_insert(struct db *db, const char *event_type, int64_t aggregate_id,
    json_t *payload, char key_out[37]);

/*
 * Many events at once, in one round trip: what outbox_insert() does for
 * each, with the payload's text made by outbox_text().
 */
struct outbox_event {
	const char *type;
	int64_t aggregate_id;
	char key[37];
	char *text;
};

/*
 * Add the envelope to payload as outbox_insert() does and return the text
 * of the row's payload (the caller frees it); the eventId goes to key_out.
 */
char *outbox_text(const char *event_type, json_t *payload, char key_out[37]);

/*
 * The same for a payload written with js_out (its own fields only): the
 * envelope is added and the text returned, as outbox_text() would make it
 * of that payload built with jansson.
 */
char *outbox_seal(
    struct js_out *payload, const char *event_type, char key_out[37]);

/* Insert ev[0..n) as PENDING rows; 0 or a db exit code. */
int outbox_insert_many(struct db *db, const struct outbox_event *ev, size_t n);

#endif
