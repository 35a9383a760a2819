/*
 * conf: every paykit setting in one table, read with the precedence
 * flag > environment (PAY_ prefix; empty means unset) > file ($PAY_CONFIG,
 * else /etc/paykit/paykit.conf) > built-in default.  Values are validated
 * when loaded, so a bad setting stops a program before it does anything.
 * Kafka client properties pass through untouched (-X key=value, or
 * "kafka.KEY = value" lines in the file).
 */
#ifndef PAYKIT_CONF_H
#define PAYKIT_CONF_H

#include <stdbool.h>
#include <stdio.h>

enum conf_source { CONF_DEFAULT, CONF_FILE, CONF_ENV, CONF_FLAG };

/* Set a setting from a command-line flag, before conf_load(). */
void conf_set_flag(const char *key, const char *value);
/* Add a Kafka property from -X key=value; returns -1 if not key=value. */
int conf_kafka_prop(const char *kv);

/*
 * Read the file and the environment and validate every value.  On error
 * prints one line naming the setting or file:line and returns the exit
 * code (78, or 64 for a bad flag); 0 on success.
 */
int conf_load(void);

/* An integer or duration whose default is empty is -1 while unset. */
const char *conf_str(const char *key);
long long conf_int(const char *key);
/* Durations are stored in milliseconds ("250ms", "5s", "2m", "1h", "7d"). */
long long conf_ms(const char *key);
bool conf_bool(const char *key);
enum conf_source conf_source(const char *key);

/* Kafka pass-through properties, in the order given (file, then -X). */
struct conf_kv {
	const char *key;
	const char *value;
};
size_t conf_kafka_props(const struct conf_kv **props);

/* Parsers shared with programs that validate their own flags. */
int conf_parse_int(const char *s, long long min, long long max, long long *out);
int conf_parse_duration(const char *s, long long *ms);

/* Write every setting as one JSON object, secrets masked. */
void conf_dump(FILE *fp);

/* Forget everything loaded (for tests). */
void conf_reset(void);

#endif
