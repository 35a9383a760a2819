# paykit's one image, in three stages:
#   build    Debian bookworm with the -dev packages; runs make
#   tools    runtime plus the client programs scripts use (mariadb, kcat,
#            curl, jq), scripts/wait-for-services and scripts/db-roles:
#            compose's `tools` profile, the mock gateway's health check and
#            the db-roles one-shot
#   runtime  (the default) bookworm-slim with the shared libraries only,
#            every paykit program in /usr/local/bin, a non-root user
# The build context is the repository root; .dockerignore lets through only
# what these stages copy.  compose/docker-compose.yml builds both images:
#   docker compose -f compose/docker-compose.yml build

FROM debian:bookworm AS build
RUN apt-get update \
	&& apt-get install -y --no-install-recommends build-essential \
		pkg-config libmariadb-dev librdkafka-dev libcurl4-openssl-dev \
		libjansson-dev libmicrohttpd-dev \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
# What `make all` reads, and nothing else: a change to the tests, the
# docs or the deployment files does not invalidate the build layer.
COPY Makefile ./
COPY scripts/configure scripts/embed-sql scripts/
COPY lib lib
COPY cmd cmd
RUN make -j"$(nproc)" all

FROM debian:bookworm-slim AS base
RUN apt-get update \
	&& apt-get install -y --no-install-recommends libmariadb3 librdkafka1 \
		libcurl4 libjansson4 libmicrohttpd12 ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 paykit \
	&& useradd --system --uid 10001 --gid paykit --no-create-home \
		--home-dir /nonexistent --shell /usr/sbin/nologin paykit
COPY --from=build /src/bin/ /usr/local/bin/

FROM base AS tools
RUN apt-get update \
	&& apt-get install -y --no-install-recommends mariadb-client-core kcat \
		curl jq \
	&& rm -rf /var/lib/apt/lists/*
COPY scripts/wait-for-services scripts/db-roles /usr/local/bin/
USER 10001:10001
CMD ["sh"]

FROM base AS runtime
USER 10001:10001
# Healthy when the database answers with this container's settings and the
# schema can be read: the one dependency every paykit program has.  With
# --status it applies no migration, and with --wait 0 it does not queue
# behind a running one (exit 75: unhealthy until that is done).
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
	CMD ["sh", "-c", "exec payctl migrate --status --wait 0 >/dev/null"]
# Each compose service names its program; alone, the image shows payctl's
# commands.
CMD ["payctl", "-h"]
