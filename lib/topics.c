/*
 * topics: see topics.h.
 */
#include "topics.h"
#include "conf.h"
#include "diag.h"

#include <stdlib.h>
#include <string.h>

static const struct {
	const char *event;
	const char *topic;
} map[] = {
	{ EV_AUTHORIZED, TOPIC_AUTHORIZED },
	{ EV_CAPTURE_REQUESTED, TOPIC_CAPTURE_REQUESTED },
	{ EV_CAPTURED, TOPIC_CAPTURED },
	{ EV_REFUND_REQUESTED, TOPIC_REFUND_REQUESTED },
	{ EV_REFUNDED, TOPIC_REFUNDED },
	{ EV_PAYMENT_DEAD_LETTER, TOPIC_PAYMENT_DLQ },
	{ EV_SETTLEMENT_DEAD_LETTER, TOPIC_SETTLEMENT_DLQ },
	{ EV_REFUND_DEAD_LETTER, TOPIC_REFUND_DLQ },
};

const char *const topics_all[] = {
	TOPIC_AUTHORIZED,
	TOPIC_CAPTURE_REQUESTED,
	TOPIC_CAPTURED,
	TOPIC_REFUND_REQUESTED,
	TOPIC_REFUNDED,
	TOPIC_PAYMENT_DLQ,
	TOPIC_SETTLEMENT_DLQ,
	TOPIC_REFUND_DLQ,
	NULL,
};

const char *
topics_for_event(const char *event_type)
{
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].event, event_type) == 0)
			return map[i].topic;
	return NULL;
}

const char *
topics_name(const char *topic)
{
	static struct {
		const char *topic;
		char *name;
	} cache[16];
	const char *prefix = conf_str("topic_prefix");
	size_t i;

	if (*prefix == '\0')
		return topic;
	for (i = 0; i < 16 && cache[i].topic != NULL; i++)
		if (cache[i].topic == topic ||
		    strcmp(cache[i].topic, topic) == 0)
			return cache[i].name;
	if (i == 16)
		return xasprintf("%s%s", prefix, topic);
	cache[i].topic = topic;
	cache[i].name = xasprintf("%s%s", prefix, topic);
	return cache[i].name;
}
