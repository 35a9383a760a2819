/*
 * lg_echo: loadgen --echo-target, a stand-in for payctl's stream mode that
 * costs next to nothing: each request line is answered with
 * {"requestId":...,"status":"OK","paymentId":N} after an optional delay,
 * so the scheduler can be measured and tested without the database.
 */
#ifndef PAYKIT_LG_ECHO_H
#define PAYKIT_LG_ECHO_H

/*
 * Answer stdin on stdout until end of input and every delayed answer is
 * out.  Every fail_every-th request (0: none) gets {"error":"ECHO_FAILURE"}.
 * Returns the exit code.
 */
int lg_echo_main(long delay_ms, long fail_every);

#endif
