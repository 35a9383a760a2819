/*
 * lg_hist: see lg_hist.h.
 *
 * Slot layout: shift 0 holds the values 0 to 255 one per slot; shift b > 0
 * holds the values [128 << b, 256 << b) in 128 slots of width 1 << b, at
 * slots (b + 1) * 128 to (b + 2) * 128 - 1.  A slot's width is at most
 * 1/128 of its lowest value, so its middle is within 1/256 of any value in
 * it.
 */
#include "lg_hist.h"

#include <math.h>
#include <string.h>

void
lg_hist_init(struct lg_hist *h)
{
	memset(h, 0, sizeof(*h));
}

static unsigned
shift_of(uint64_t v)
{
	if (v < 256)
		return 0;
	return (unsigned)(63 - __builtin_clzll(v)) - 7;
}

static size_t
slot_of(uint64_t v)
{
	unsigned b = shift_of(v);

	if (b == 0)
		return (size_t)v;
	return (size_t)b * 128 + (size_t)(v >> b);
}

/* The middle of slot i's range of values. */
static double
slot_mid(size_t i)
{
	unsigned b;
	uint64_t lo;

	if (i < 256)
		return (double)i;
	b = (unsigned)(i / 128) - 1;
	lo = (uint64_t)(i - (size_t)b * 128) << b;
	return (double)lo + (double)((UINT64_C(1) << b) - 1) / 2;
}

void
lg_hist_add(struct lg_hist *h, uint64_t us)
{
	if (us > LG_HIST_MAX)
		us = LG_HIST_MAX;
	if (h->count == 0 || us < h->min)
		h->min = us;
	if (us > h->max)
		h->max = us;
	h->count++;
	h->sum += (double)us;
	h->slot[slot_of(us)]++;
}

double
lg_hist_mean(const struct lg_hist *h)
{
	return h->count ? h->sum / (double)h->count : 0;
}

double
lg_hist_pct(const struct lg_hist *h, double p)
{
	uint64_t rank, seen = 0;
	double v;
	size_t i;

	if (h->count == 0)
		return 0;
	if (p <= 0)
		return (double)h->min;
	if (p >= 100)
		return (double)h->max;
	/* p * count first: 95 * 100 / 100 is exactly 95, 0.95 * 100 is not. */
	rank = (uint64_t)ceil(p * (double)h->count / 100 - 1e-9);
	if (rank == 0)
		rank = 1;
	for (i = 0; i < LG_HIST_SLOTS; i++) {
		seen += h->slot[i];
		if (seen >= rank)
			break;
	}
	v = slot_mid(i < LG_HIST_SLOTS ? i : LG_HIST_SLOTS - 1);
	if (v < (double)h->min)
		v = (double)h->min;
	if (v > (double)h->max)
		v = (double)h->max;
	return v;
}
