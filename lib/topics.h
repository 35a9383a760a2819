/*
 * topics: the one mapping from outbox event types to Kafka topics, and the
 * topic prefix that lets several pipelines (or test files) share a broker.
 */
#ifndef PAYKIT_TOPICS_H
#define PAYKIT_TOPICS_H

#define EV_AUTHORIZED "PAYMENT_AUTHORIZED"
#define EV_CAPTURE_REQUESTED "PAYMENT_CAPTURE_REQUESTED"
#define EV_CAPTURED "PAYMENT_CAPTURED"
#define EV_REFUND_REQUESTED "PAYMENT_REFUND_REQUESTED"
#define EV_REFUNDED "PAYMENT_REFUNDED"
#define EV_PAYMENT_DEAD_LETTER "PAYMENT_DEAD_LETTER"
#define EV_SETTLEMENT_DEAD_LETTER "SETTLEMENT_DEAD_LETTER"
#define EV_REFUND_DEAD_LETTER "REFUND_DEAD_LETTER"

#define TOPIC_AUTHORIZED "payment.authorized"
#define TOPIC_CAPTURE_REQUESTED "payment.capture-requested"
#define TOPIC_CAPTURED "payment.captured"
#define TOPIC_REFUND_REQUESTED "payment.refund-requested"
#define TOPIC_REFUNDED "payment.refunded"
#define TOPIC_PAYMENT_DLQ "payment.dlq"
#define TOPIC_SETTLEMENT_DLQ "settlement.dlq"
#define TOPIC_REFUND_DLQ "refund.dlq"

/* Version of the event payloads' shape ("schemaVersion"). */
#define EVENT_SCHEMA_VERSION 1

/* The topic of an event type without the prefix, or NULL if unknown. */
const char *topics_for_event(const char *event_type);

/*
 * The full topic name, prefix included (conf's topic_prefix), in a buffer
 * that stays valid until the program ends.
 */
const char *topics_name(const char *topic);

/* Every topic, without the prefix, ended by NULL. */
extern const char *const topics_all[];

#endif
