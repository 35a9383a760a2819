/*
 * payctl config: print the settings in effect and where each came from,
 * secrets masked, as one JSON object.
 */
#include "conf.h"
#include "diag.h"
#include "payctl.h"

#include <getopt.h>
#include <stdio.h>

static const char usage_text[] = "usage: payctl config [-h] [-X key=value]\n";

int
cmd_config(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "property", required_argument, NULL, 'X' },
		{ NULL, 0, NULL, 0 },
	};
	int c, rc;

	while ((c = getopt_long(argc, argv, ":hX:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'X':
			if (conf_kafka_prop(optarg) != 0)
				return diag_usage(
				    "option '-X': '%s' is not key=value",
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
	conf_dump(stdout);
	return 0;
}
