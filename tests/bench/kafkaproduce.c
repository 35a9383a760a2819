/*
 * kafkaproduce: librdkafka's raw produce ceiling for what outbox-relay
 * sends.  count messages shaped like an authorization's outbox events (the
 * payload payctl writes, the payment id as key, the eventId, eventType and
 * occurredAt headers) go to the events' topics, alternating as a payment's
 * two events do, from one idempotent producer (enable.idempotence=true,
 * so acks=all), as fast as librdkafka takes them; the clock stops when
 * the last delivery report is in.  A warm-up batch first connects and
 * gets the producer id.  One JSON line on stdout:
 *
 *   {"messages":100000,"seconds":1.9,"msgs_per_s":52631.6,"failed":0,
 *    "bytes":33000000}
 */
#include "bench.h"
#include "kq.h"
#include "topics.h"

#include <getopt.h>
#include <string.h>

static const char usage_text[] =
    "usage: kafkaproduce [-h] [-n count] [-w warm-up-count] [-X key=value]\n";

static long long delivered, failed;
static rd_kafka_resp_err_t last_err;

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		failed++;
		last_err = m->err;
	} else
		delivered++;
}

static int
produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt[2], int64_t first, long long n)
{
	char key[24], ev[37], now[32], payload[1024];
	rd_kafka_resp_err_t e;
	long long i;
	int64_t id;
	int len, k;

	for (i = 0; i < n; i++) {
		id = first + i / 2;
		k = (int)(i % 2);
		snprintf(key, sizeof(key), "%lld", (long long)id);
		outbox_uuid(ev);
		outbox_now(now);
		len = bench_payload(payload, sizeof(payload), id, k, ev);
		for (;;) {
			e = rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt[k]),
			    RD_KAFKA_V_KEY(key, strlen(key)),
			    RD_KAFKA_V_VALUE(payload, (size_t)len),
			    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			    RD_KAFKA_V_HEADER("eventId", ev, -1),
			    RD_KAFKA_V_HEADER(
			        "eventType", bench_event_types[k], -1),
			    RD_KAFKA_V_HEADER("occurredAt", now, -1),
			    RD_KAFKA_V_END);
			if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				break;
			rd_kafka_poll(rk, 10);
		}
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
			diag_warn("produce: %s", rd_kafka_err2str(e));
			return kq_classify(e);
		}
		rd_kafka_poll(rk, 0);
	}
	while (rd_kafka_outq_len(rk) > 0)
		rd_kafka_poll(rk, 50);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "warm-up", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	long long count = 100000, warm = 2000;
	rd_kafka_topic_t *rkt[2];
	rd_kafka_conf_t *conf;
	char err[512];
	rd_kafka_t *rk;
	double t0, t1;
	int c, i, rc;

	diag_init(argv[0]);
	while (
	    (c = getopt_long(argc, argv, ":hn:w:X:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return diag_close_stdout();
		case 'n':
			count = bench_int("n", optarg, 1, 100000000);
			break;
		case 'w':
			warm = bench_int("w", optarg, 0, 100000000);
			break;
		case 'X':
			if (conf_kafka_prop(optarg) != 0)
				return diag_usage(
				    "-X: '%s' is not key=value", optarg);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind != argc)
		return diag_usage("no operands expected");
	if ((rc = conf_load()) != 0)
		return rc;
	if ((conf = kq_conf("kafkaproduce", err, sizeof(err))) == NULL)
		diag_die(EX_CONFIG, "%s", err);
	/*
	 * A backlog of this size outlasts the short timeout the programs use
	 * to notice outages; here a slow broker should be measured, not
	 * failed.
	 */
	if (kq_set(conf, "enable.idempotence", "true", err, sizeof(err)) != 0 ||
	    kq_set(conf, "message.timeout.ms", "60000", err, sizeof(err)) != 0)
		diag_die(EX_CONFIG, "%s", err);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (rk == NULL)
		diag_die(EX_CONFIG, "kafka producer: %s", err);
	for (i = 0; i < 2; i++) {
		rkt[i] = rd_kafka_topic_new(rk,
		    topics_name(topics_for_event(bench_event_types[i])), NULL);
	}
	if (warm > 0 && (rc = produce(rk, rkt, 1, warm)) != 0)
		return rc;
	delivered = failed = 0;
	t0 = bench_now();
	rc = produce(rk, rkt, warm / 2 + 1, count);
	t1 = bench_now();
	for (i = 0; i < 2; i++)
		rd_kafka_topic_destroy(rkt[i]);
	rd_kafka_destroy(rk);
	if (rc != 0)
		return rc;
	if (failed > 0)
		diag_warn("%lld deliveries failed, the last with: %s", failed,
		    rd_kafka_err2str(last_err));
	printf("{\"messages\":%lld,\"seconds\":%.3f,\"msgs_per_s\":%.1f,"
	       "\"failed\":%lld}\n",
	    delivered, t1 - t0, (double)delivered / (t1 - t0), failed);
	if (delivered == 0)
		return EX_UNAVAILABLE;
	return diag_close_stdout();
}
