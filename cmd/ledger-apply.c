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
#include "consumer.h"
#include "diag.h"
#include "js.h"
#include "topics.h"
#include "worker.h"

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
	static const struct consumer_topic topics[] = {
		{ TOPIC_CAPTURED, EV_CAPTURED },
		{ TOPIC_REFUNDED, EV_REFUNDED },
	};
	static const struct worker_def d = {
		.usage = usage_text,
		.prefix = "ledger",
		.consumer = {
		    .name = "ledger-apply",
		    .topics = topics,
		    .ntopics = 2,
		    .dlq_event = EV_PAYMENT_DEAD_LETTER,
		    .handle = on_message,
		},
	};

	return worker_main(argc, argv, &d);
}
