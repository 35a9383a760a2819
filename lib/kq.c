/*
 * kq: see kq.h.
 */
#include "kq.h"
#include "conf.h"
#include "diag.h"

#include <stdio.h>

int
kq_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
    size_t len)
{
	char why[256];

	if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) !=
	    RD_KAFKA_CONF_OK) {
		snprintf(err, len, "kafka property '%s': %s", key, why);
		return -1;
	}
	return 0;
}

rd_kafka_conf_t *
kq_conf(const char *client_id, char *err, size_t len)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const struct conf_kv *props;
	char timeout[32];
	size_t i, n;

	snprintf(
	    timeout, sizeof(timeout), "%lld", conf_ms("kafka_message_timeout"));
	if (kq_set(conf, "bootstrap.servers", conf_str("kafka_brokers"), err,
	        len) != 0 ||
	    kq_set(conf, "client.id", client_id, err, len) != 0 ||
	    kq_set(conf, "message.timeout.ms", timeout, err, len) != 0)
		goto fail;
	n = conf_kafka_props(&props);
	for (i = 0; i < n; i++)
		if (kq_set(conf, props[i].key, props[i].value, err, len) != 0)
			goto fail;
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

int
kq_classify(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_NO_ERROR:
		return 0;
	case RD_KAFKA_RESP_ERR__TRANSPORT:
	case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
	case RD_KAFKA_RESP_ERR__RESOLVE:
		return EX_UNAVAILABLE;
	case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
	case RD_KAFKA_RESP_ERR__TIMED_OUT:
	case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
	case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
	case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
	case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
	case RD_KAFKA_RESP_ERR__QUEUE_FULL:
	case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
	case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
		return EX_TEMPFAIL;
	case RD_KAFKA_RESP_ERR__AUTHENTICATION:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
		return EX_CONFIG;
	default:
		return EX_SOFTWARE;
	}
}
