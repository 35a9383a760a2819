/*
 * ledger-apply: the double-entry ledger.  Each payment.captured and
 * payment.refunded event becomes two ledger_entry rows of the same amount,
 * a DEBIT and a CREDIT, keyed by the event's eventId, so that a redelivered
 * event is a no-op twice over: processed_event, and the unique key
 * (event_key, side).
 *
 * Accounts, seen from the payment platform:
 *   captured: DEBIT pg_receivable     the gateway owes us the funds
 *             CREDIT merchant_payable we owe them to the merchant
 *   refunded: the reverse, for the refunded amount.
 * Per payment, merchant_payable's credits less its debits is what was
 * captured less what was refunded; pg_receivable mirrors it.
 */
#include "conf.h"
#include "consumer.h"
#include "diag.h"
#include "js.h"
#include "topics.h"

#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
    "usage: ledger-apply [-hVv] [--once] [-g group] [-n count] "
    "[-X key=value]\n";

#define AMOUNT_MAX 1000000000000000LL
#define RECEIVABLE "pg_receivable"
#define PAYABLE "merchant_payable"

static const char sel_payment[] =
    "SELECT currency, captured_amount, refunded_amount FROM payment"
    " WHERE payment_id = ?";
static const char ins_entries[] =
    "INSERT INTO ledger_entry"
    " (event_key, payment_id, account, side, amount, currency, occurred_at)"
    " VALUES (?, ?, ?, 'DEBIT', ?, ?, IFNULL(?, NOW(6))),"
    " (?, ?, ?, 'CREDIT', ?, ?, IFNULL(?, NOW(6)))"
    " ON DUPLICATE KEY UPDATE entry_id = entry_id";

static int
on_message(
    struct db *db, struct consumer_msg *m, struct consumer_error *e, void *arg)
{
	long long pid, amount;
	int64_t captured, refunded;
	const char *cur, *at = NULL, *debit, *credit;
	char pcur[4], when[27];
	bool refund;
	int rc;

	if (consumer_int(m->event, "paymentId", 1, INT64_MAX, &pid, e) ||
	    consumer_int(m->event, "amount", 1, AMOUNT_MAX, &amount, e) ||
	    consumer_str(m->event, "currency", 3, &cur, e))
		return CONSUMER_REJECT;
	m->payment_id = pid;
	if (json_object_get(m->event, "occurredAt") != NULL &&
	    (consumer_str(m->event, "occurredAt", 40, &at, e) ||
	        consumer_sqltime(at, when) != 0))
		return consumer_reject(e, CE_BAD_FIELD,
		    "'occurredAt' must be an ISO-8601 UTC time");
	refund = strcmp(js_getstr(m->event, "eventType", ""), EV_REFUNDED) == 0;
	if ((rc = db_query(db, sel_payment, "i", (int64_t)pid)) != 0)
		return rc;
	if ((rc = db_next(db)) <= 0) {
		if (rc < 0)
			return -rc;
		return consumer_reject(
		    e, CE_UNKNOWN_PAYMENT, "payment %lld does not exist", pid);
	}
	snprintf(pcur, sizeof(pcur), "%s", db_str(db, 0));
	captured = db_int(db, 1);
	refunded = db_int(db, 2);
	db_next(db);
	if (strcmp(cur, pcur) != 0)
		return consumer_reject(e, CE_CURRENCY_MISMATCH,
		    "'currency' is '%s', payment %lld is in %s", cur, pid,
		    pcur);
	if (!refund && amount != captured)
		return consumer_reject(e, CE_AMOUNT_MISMATCH,
		    "'amount' is %lld, payment %lld captured %lld", amount, pid,
		    (long long)captured);
	if (refund && amount > refunded)
		return consumer_reject(e, CE_AMOUNT_MISMATCH,
		    "'amount' is %lld, payment %lld has %lld refunded", amount,
		    pid, (long long)refunded);
	debit = refund ? PAYABLE : RECEIVABLE;
	credit = refund ? RECEIVABLE : PAYABLE;
	at = at != NULL ? when : NULL;
	return db_exec(db, ins_entries, "sisisssisiss", m->event_id,
	    (int64_t)pid, debit, (int64_t)amount, cur, at, m->event_id,
	    (int64_t)pid, credit, (int64_t)amount, cur, at);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ "max-messages", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct consumer_topic topics[] = {
		{ TOPIC_CAPTURED, EV_CAPTURED },
		{ TOPIC_REFUNDED, EV_REFUNDED },
	};
	struct consumer_opts o;
	struct db *db;
	long long n;
	int c, rc;

	diag_init(argv[0]);
	diag_ignore_sigpipe();
	memset(&o, 0, sizeof(o));
	while ((c = getopt_long(argc, argv, ":g:hn:vVX:", opts, NULL)) != -1) {
		switch (c) {
		case 'g':
			if (*optarg == '\0')
				return diag_usage(
				    "option '--group': must not be empty");
			conf_set_flag("ledger_group", optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return diag_close_stdout();
		case 'n':
			if (conf_parse_int(optarg, 1, 1000000000000LL, &n) != 0)
				return diag_usage("option '--max-messages': "
				                  "'%s' is not a count",
				    optarg);
			o.max_messages = n;
			break;
		case 'o':
			o.once = true;
			break;
		case 'v':
			diag_verbose++;
			break;
		case 'V':
			diag_version();
			return diag_close_stdout();
		case 'X':
			if (conf_kafka_prop(optarg) != 0)
				return diag_usage("option '-X': '%s' is not "
				                  "key=value",
				    optarg);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if ((rc = conf_load()) != 0)
		return rc;
	if (*conf_str("ledger_group") == '\0') {
		diag_warn("setting 'ledger_group' must not be empty");
		return EX_CONFIG;
	}
	consumer_signals();
	if ((db = consumer_connect(&rc)) == NULL)
		return rc;
	o.name = "ledger-apply";
	o.group = conf_str("ledger_group");
	o.topics = topics;
	o.ntopics = 2;
	o.dlq_event = EV_PAYMENT_DEAD_LETTER;
	o.handle = on_message;
	rc = consumer_run(&o, &db);
	if (consumer_signal() != 0)
		diag_warn("stopped on %s",
		    consumer_signal() == SIGTERM ? "SIGTERM" : "SIGINT");
	db_close(db);
	return rc;
}
