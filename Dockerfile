# ai-relay-service: the relay behind lighttpd in one image.
#   docker build -t ai-relay-service .
#   docker compose up -d          (with Redis and PostgreSQL, see docker-compose.yml)
# Configuration comes from the environment (JWT_SECRET, ENCRYPTION_KEY,
# REDIS_HOST, PG_HOST, ...; see conf/ai-relay.conf.sample).

# ---- build stage: autotools build, installed into /out ----
FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      autoconf automake libtool make gcc libc6-dev pkg-config \
      libfcgi-dev libcurl4-openssl-dev libhiredis-dev libpq-dev libjson-c-dev libssl-dev check \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN autoreconf -fi \
 && ./configure --prefix=/usr --sysconfdir=/etc --localstatedir=/var \
 && make -j"$(nproc)" \
 && make install DESTDIR=/out \
 && strip /out/usr/bin/ai-relay*

# ---- runtime stage: lighttpd spawns the relay (bin-path) ----
FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      lighttpd libfcgi0ldbl libcurl4 libhiredis0.14 libpq5 libjson-c5 libssl3 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
# The installed lighttpd template becomes the container's lighttpd.conf:
# listen on all addresses, port 3000, state in /var/lib/ai-relay, log to
# stderr (no server.errorlog line: a non-root lighttpd cannot open
# /dev/stderr when it is a pipe).
# The relay reads /etc/ai-relay/ai-relay.conf (empty here) and then the
# environment, which wins.
RUN useradd --system --home-dir /var/lib/ai-relay --no-create-home --shell /usr/sbin/nologin ai-relay \
 && mkdir -p /var/lib/ai-relay/uploads \
 && chown -R ai-relay:ai-relay /var/lib/ai-relay \
 && printf '# Settings come from the environment (docker-compose.yml).\n' >/etc/ai-relay/ai-relay.conf \
 && sed -e 's|@STATE_DIR@|/var/lib/ai-relay|g' -e 's|@BIND@|0.0.0.0|g' -e 's|@PORT@|3000|g' \
        -e '/@ERRORLOG@/d' -e 's|@SITE_CONF@|/etc/ai-relay/lighttpd/ai-relay.conf|g' \
        /etc/ai-relay/lighttpd/lighttpd-standalone.conf.in >/etc/ai-relay/lighttpd/lighttpd.conf \
 && lighttpd -tt -f /etc/ai-relay/lighttpd/lighttpd.conf
USER ai-relay
WORKDIR /var/lib/ai-relay
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:3000/health || exit 1
# SIGINT: lighttpd finishes in-flight requests, then stops the relay.
STOPSIGNAL SIGINT
CMD ["lighttpd", "-D", "-f", "/etc/ai-relay/lighttpd/lighttpd.conf"]
