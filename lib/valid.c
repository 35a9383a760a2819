/*
 * valid: see valid.h.
 */
#include "valid.h"
#include "conf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * ISO 4217 alpha-3 codes in use (list 181, 2025), sorted for bsearch.
 * Precious metals, bond units, SDR and the test and "no currency" codes
 * (XAU, XBA, XDR, XTS, XXX, ...) are left out: no card payment uses them.
 */
static const char currencies[][4] = { "AED", "AFN", "ALL", "AMD", "ANG", "AOA",
	"ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
	"BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
	"CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU",
	"CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
	"ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF",
	"GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD",
	"IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW",
	"KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD",
	"MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
	"MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR",
	"NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
	"RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD",
	"SHP", "SLE", "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL",
	"THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH",
	"UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND",
	"VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW",
	"ZWG", "ZWL" };

static const char *const statuses[] = { "PENDING", "AUTHORIZED", "AUTH_FAILED",
	"CAPTURE_REQUESTED", "CAPTURED", "CAPTURE_FAILED", "REFUND_REQUESTED",
	"PARTIALLY_REFUNDED", "REFUNDED", "REFUND_FAILED" };

bool
valid_id(const char *s, size_t max)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (s[n] <= ' ' || s[n] > '~' || n >= max)
			return false;
	return n > 0;
}

bool
valid_amount(const char *s, int64_t *out)
{
	long long v;

	if (!isdigit((unsigned char)*s) ||
	    conf_parse_int(s, 1, VALID_AMOUNT_MAX, &v) != 0)
		return false;
	*out = v;
	return true;
}

static int
cmp_code(const void *a, const void *b)
{
	return strcmp(a, b);
}

bool
valid_currency(const char *s)
{
	if (strlen(s) != 3)
		return false;
	return bsearch(s, currencies,
	           sizeof(currencies) / sizeof(currencies[0]),
	           sizeof(currencies[0]), cmp_code) != NULL;
}

bool
valid_status(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (strcmp(s, statuses[i]) == 0)
			return true;
	return false;
}

/* Length of the UTF-8 sequence at s, or 0 if it is not well formed. */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n, i;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1fu;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07u;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	/* Overlong forms, surrogates, beyond U+10FFFF. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

bool
valid_text(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t chars = 0, n;

	while (*p != '\0') {
		if (*p < 0x20 || *p == 0x7f)
			return false;
		if ((n = utf8_len(p)) == 0)
			return false;
		p += n;
		if (++chars > max)
			return false;
	}
	return chars > 0;
}

/* n digits at *s as a number within [min, max]; advances *s. */
static bool
digits(const char **s, int n, int min, int max, int *out)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*s)[i]))
			return false;
		v = v * 10 + ((*s)[i] - '0');
	}
	*s += n;
	*out = v;
	return v >= min && v <= max;
}

static bool
leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
parse_time(const char *s, char ts[27])
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30,
		31 };
	int y, mo, d, h = 0, mi = 0, sec = 0, usec = 0, oh = 0, om = 0, sign;
	int i;
	struct tm tm = { 0 };
	char buf[64];
	time_t t;

	if (!digits(&s, 4, 1970, 9999, &y) || *s++ != '-' ||
	    !digits(&s, 2, 1, 12, &mo) || *s++ != '-' ||
	    !digits(&s, 2, 1, 31, &d))
		return -1;
	if (d > mdays[mo - 1] + (mo == 2 && leap(y)))
		return -1;
	if (*s == 'T' || *s == ' ') {
		s++;
		if (!digits(&s, 2, 0, 23, &h) || *s++ != ':' ||
		    !digits(&s, 2, 0, 59, &mi) || *s++ != ':' ||
		    !digits(&s, 2, 0, 59, &sec))
			return -1;
		if (*s == '.') {
			s++;
			for (i = 0; i < 6 && isdigit((unsigned char)*s); i++)
				usec = usec * 10 + (*s++ - '0');
			if (i == 0 || isdigit((unsigned char)*s))
				return -1;
			for (; i < 6; i++)
				usec *= 10;
		}
		if (*s == 'Z') {
			s++;
		} else if (*s == '+' || *s == '-') {
			sign = *s++ == '+' ? 1 : -1;
			if (!digits(&s, 2, 0, 23, &oh) || *s++ != ':' ||
			    !digits(&s, 2, 0, 59, &om))
				return -1;
			oh *= sign;
			om *= sign;
		} else {
			return -1;
		}
	}
	if (*s != '\0')
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h - oh;
	tm.tm_min = mi - om;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year < 70)
		return -1;
	snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d.%06d",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, usec);
	if (strlen(buf) != 26)
		return -1;
	memcpy(ts, buf, 27);
	return 0;
}

int
valid_since(const char *s, char ts[27], long long *ms)
{
	/* 100 years back is as far as a duration may go. */
	const long long most = 100LL * 366 * 86400 * 1000;

	if (strlen(s) >= 10 && s[4] == '-')
		return parse_time(s, ts);
	if (conf_parse_duration(s, ms) != 0 || *ms <= 0 || *ms > most)
		return -1;
	return 1;
}
