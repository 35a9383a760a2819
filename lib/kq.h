/*
 * kq: librdkafka set-up shared by every program that talks to Kafka: the
 * bootstrap address and pass-through properties from conf, and the one
 * classification of Kafka errors into exit codes.
 */
#ifndef PAYKIT_KQ_H
#define PAYKIT_KQ_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/*
 * A configuration with bootstrap.servers, client.id, a short
 * message.timeout.ms for producers, and every -X / kafka.* property.
 * NULL with a message in err when a property is refused (exit 78).
 */
rd_kafka_conf_t *kq_conf(const char *client_id, char *err, size_t len);

/* Set one property; 0, or -1 with a message in err. */
int kq_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
    size_t len);

/* Exit code for a Kafka error: 69 unreachable, 75 retryable, 78, 70. */
int kq_classify(rd_kafka_resp_err_t err);

#endif
