/*
 * dbstat's view of Kafka and the gateway.  Kafka: one metadata request is
 * both the broker probe and the list of partitions; message counts are end
 * minus start offsets; a consumer group's lag is the end offset minus the
 * group's committed offset, per partition that has one, read with a
 * consumer that never joins the group (so the group is left alone).  The
 * gateway: GET pg_url/health.
 */
#include "conf.h"
#include "dbstat.h"
#include "diag.h"
#include "http.h"
#include "kq.h"
#include "topics.h"

#include <stdlib.h>
#include <string.h>

struct part {
	const char *topic;
	int32_t partition;
	int64_t end;
};

struct parts {
	struct part *p;
	size_t n;
};

/* librdkafka logs on stderr by default; dbstat reports errors itself. */
static void
quiet(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
}

static rd_kafka_t *
client(rd_kafka_type_t type, const char *group, char *err, size_t len)
{
	rd_kafka_conf_t *conf = kq_conf("dbstat", err, len);
	rd_kafka_t *rk;

	if (conf == NULL)
		return NULL;
	rd_kafka_conf_set_log_cb(conf, quiet);
	if (group != NULL &&
	    (kq_set(conf, "group.id", group, err, len) != 0 ||
	        kq_set(conf, "enable.auto.commit", "false", err, len) != 0)) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rk = rd_kafka_new(type, conf, err, len);
	if (rk == NULL)
		rd_kafka_conf_destroy(conf);
	return rk;
}

static const rd_kafka_metadata_topic_t *
find_topic(const struct rd_kafka_metadata *md, const char *name)
{
	int i;

	for (i = 0; i < md->topic_cnt; i++)
		if (strcmp(md->topics[i].topic, name) == 0 &&
		    md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return &md->topics[i];
	return NULL;
}

static bool
is_dlq(const char *base)
{
	return strcmp(base, TOPIC_PAYMENT_DLQ) == 0 ||
	    strcmp(base, TOPIC_SETTLEMENT_DLQ) == 0 ||
	    strcmp(base, TOPIC_REFUND_DLQ) == 0;
}

/* Message counts per topic; fills ps with every partition's end offset. */
static int
topics(rd_kafka_t *rk, const struct rd_kafka_metadata *md, const struct opts *o,
    struct parts *ps, json_t *out, json_t *dlq, char *err, size_t len)
{
	const rd_kafka_metadata_topic_t *t;
	rd_kafka_resp_err_t e;
	int64_t lo, hi, total;
	const char *name;
	size_t i;
	int p;

	for (i = 0; topics_all[i] != NULL; i++) {
		name = topics_name(topics_all[i]);
		t = find_topic(md, name);
		total = 0;
		for (p = 0; t != NULL && p < t->partition_cnt; p++) {
			e = rd_kafka_query_watermark_offsets(rk, name,
			    t->partitions[p].id, &lo, &hi, (int)o->timeout_ms);
			if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
				snprintf(err, len, "offsets of '%s' [%d]: %s",
				    name, (int)t->partitions[p].id,
				    rd_kafka_err2str(e));
				return EX_UNAVAILABLE;
			}
			total += hi - lo;
			ps->p = xrealloc(ps->p, (ps->n + 1) * sizeof(*ps->p));
			ps->p[ps->n++] =
			    (struct part){ name, t->partitions[p].id, hi };
		}
		json_object_set_new(out, topics_all[i],
		    json_pack("{s:s, s:i, s:I}", "topic", name, "partitions",
		        t ? t->partition_cnt : 0, "messages",
		        (json_int_t)total));
		if (is_dlq(topics_all[i]))
			json_object_set_new(dlq, topics_all[i],
			    json_pack("{s:s, s:I}", "topic", name, "messages",
			        (json_int_t)total));
	}
	return 0;
}

/* One group's committed offsets and lag; the group object, or NULL. */
static json_t *
group_lag(const char *group, const struct parts *ps, const struct opts *o,
    int64_t *lag, char *err, size_t len)
{
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_topic_partition_t *tp;
	rd_kafka_resp_err_t e;
	json_t *arr = json_array();
	int64_t l;
	rd_kafka_t *c;
	size_t i;

	*lag = 0;
	if ((c = client(RD_KAFKA_CONSUMER, group, err, len)) == NULL) {
		json_decref(arr);
		return NULL;
	}
	list = rd_kafka_topic_partition_list_new((int)(ps->n ? ps->n : 1));
	for (i = 0; i < ps->n; i++)
		rd_kafka_topic_partition_list_add(
		    list, ps->p[i].topic, ps->p[i].partition);
	e = rd_kafka_committed(c, list, (int)o->timeout_ms);
	for (i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < ps->n; i++) {
		tp = &list->elems[i];
		/* No committed offset: the group does not read this one. */
		if (tp->err != RD_KAFKA_RESP_ERR_NO_ERROR || tp->offset < 0)
			continue;
		l = ps->p[i].end > tp->offset ? ps->p[i].end - tp->offset : 0;
		*lag += l;
		json_array_append_new(arr,
		    json_pack("{s:s, s:i, s:I, s:I, s:I}", "topic",
		        ps->p[i].topic, "partition", (int)ps->p[i].partition,
		        "committed", (json_int_t)tp->offset, "end",
		        (json_int_t)ps->p[i].end, "lag", (json_int_t)l));
	}
	rd_kafka_topic_partition_list_destroy(list);
	rd_kafka_destroy(c);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, len, "committed offsets of group '%s': %s", group,
		    rd_kafka_err2str(e));
		json_decref(arr);
		return NULL;
	}
	return json_pack(
	    "{s:I, s:o}", "lag", (json_int_t)*lag, "partitions", arr);
}

static void
groups(
    const struct opts *o, const struct parts *ps, struct result *r, json_t *out)
{
	char *list = xstrdup(o->groups), *save = NULL, *g;
	char err[400];
	bool ok = true;
	int64_t lag;
	json_t *j;

	for (g = strtok_r(list, ", ", &save); g != NULL;
	     g = strtok_r(NULL, ", ", &save)) {
		j = group_lag(g, ps, o, &lag, err, sizeof(err));
		if (j == NULL) {
			json_object_set_new(
			    out, g, json_pack("{s:s}", "error", err));
			r->code = EX_UNAVAILABLE;
			snprintf(r->err, sizeof(r->err), "kafka '%s': %s",
			    conf_str("kafka_brokers"), err);
			continue;
		}
		if (o->max_lag >= 0 && lag > o->max_lag)
			ok = false;
		json_object_set_new(out, g, j);
	}
	free(list);
	if (o->max_lag >= 0)
		result_check(r, CHK_KAFKA_LAG, ok);
}

static void
section(rd_kafka_t *rk, const struct rd_kafka_metadata *md,
    const struct opts *o, struct result *r)
{
	json_t *tj = json_object(), *dlq = json_object(), *gj = json_object();
	struct parts ps = { NULL, 0 };
	char err[400];
	int rc;

	if ((rc = topics(rk, md, o, &ps, tj, dlq, err, sizeof(err))) != 0) {
		json_decref(tj);
		json_decref(dlq);
		json_decref(gj);
		free(ps.p);
		result_fail(
		    r, rc, "kafka '%s': %s", conf_str("kafka_brokers"), err);
		return;
	}
	r->json = json_pack("{s:i, s:o, s:o, s:o, s:o}", "brokers",
	    md->broker_cnt, "topics", tj, "dlq", dlq, "groups", gj, "max_lag",
	    o->max_lag >= 0 ? json_integer(o->max_lag) : json_null());
	groups(o, &ps, r, gj);
	free(ps.p);
}

void
net_kafka(const struct opts *o, bool want, struct result *health,
    struct result *kafka)
{
	const struct rd_kafka_metadata *md = NULL;
	const char *brokers = conf_str("kafka_brokers");
	rd_kafka_resp_err_t e;
	char err[400];
	rd_kafka_t *rk;
	double t0;

	if ((rk = client(RD_KAFKA_PRODUCER, NULL, err, sizeof(err))) == NULL) {
		result_fail(health, EX_CONFIG, "kafka: %s", err);
		result_down(health);
		if (want)
			result_fail(kafka, EX_CONFIG, "kafka: %s", err);
		return;
	}
	t0 = dbstat_now_ms();
	e = rd_kafka_metadata(rk, 1, NULL, &md, (int)o->timeout_ms);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		result_fail(health, EX_UNAVAILABLE, "kafka '%s': %s", brokers,
		    rd_kafka_err2str(e));
		result_down(health);
		if (want)
			result_fail(kafka, EX_UNAVAILABLE, "kafka '%s': %s",
			    brokers, rd_kafka_err2str(e));
		rd_kafka_destroy(rk);
		return;
	}
	health->json = json_pack("{s:b, s:o, s:i}", "up", 1, "rtt_ms",
	    sql_ms(dbstat_now_ms() - t0), "brokers", md->broker_cnt);
	if (want)
		section(rk, md, o, kafka);
	rd_kafka_metadata_destroy(md);
	rd_kafka_destroy(rk);
}

void
net_gateway(const struct opts *o, struct result *health)
{
	const char *base = conf_str("pg_url");
	size_t n = strlen(base);
	struct http_reply r;
	struct http *h;
	char *url;
	int rc;

	while (n > 0 && base[n - 1] == '/')
		n--;
	url = xasprintf("%.*s/health", (int)n, base);
	h = http_new();
	rc = http_get(h, url, &r);
	if (rc != 0) {
		result_fail(
		    health, EX_UNAVAILABLE, "gateway '%s': %s", url, r.err);
		result_down(health);
	} else if (r.status < 200 || r.status > 299) {
		result_fail(health, EX_UNAVAILABLE,
		    "gateway '%s': HTTP status %ld", url, r.status);
		result_down(health);
		json_object_set_new(
		    health->json, "http_status", json_integer(r.status));
	} else
		health->json = json_pack("{s:b, s:o, s:i}", "up", 1, "rtt_ms",
		    sql_ms(r.ms), "http_status", (int)r.status);
	http_free(&r);
	http_close(h);
	free(url);
}
