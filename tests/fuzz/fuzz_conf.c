/*
 * Fuzz the settings file parser: any file gives 0 or a config error, never
 * a crash, and a loaded configuration dumps with its secrets masked.
 */
#include "conf.h"
#include "diag.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	char *buf = NULL;
	size_t len = 0;
	FILE *fp, *mem;
	int rc;

	if (path[0] == '\0') {
		snprintf(path, sizeof(path), "/tmp/paykit-fuzz-conf.%ld",
		    (long)getpid());
		unsetenv("PAY_DB_PASSWORD");
	}
	fp = fopen(path, "w");
	fwrite(data, 1, size, fp);
	fclose(fp);
	setenv("PAY_CONFIG", path, 1);
	conf_reset();
	rc = conf_load();
	if (rc != 0 && rc != EX_CONFIG)
		abort();
	if (rc == 0) {
		mem = open_memstream(&buf, &len);
		conf_dump(mem);
		fclose(mem);
		if (*conf_str("db_password") != '\0' &&
		    strlen(conf_str("db_password")) > 3 &&
		    strstr(buf, conf_str("db_password")) != NULL &&
		    strcmp(conf_str("db_password"), "********") != 0)
			abort();
		free(buf);
	}
	return 0;
}
