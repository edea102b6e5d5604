# CI stand-in for the official `rabbitmq:3.13-management` image, from Debian's rabbitmq-server
# package, for machines that cannot pull images (see .ci/images.sh). It keeps the official image's
# interface that docker-compose.yml uses: config in /etc/rabbitmq/rabbitmq.conf, data in
# /var/lib/rabbitmq, AMQP on 5672, the management plugin on 15672, `rabbitmq-diagnostics` for
# the healthcheck, logs to stdout, runs as user rabbitmq.
FROM debian:bookworm-slim

# The official image's user and group ids (999), created before the package would pick others.
# Unpinned on purpose (DL3008): bookworm's current packages, security fixes included.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 rabbitmq \
    && useradd --system --uid 999 --gid rabbitmq --home-dir /var/lib/rabbitmq --shell /bin/false rabbitmq \
    && apt-get update \
    && apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* \
    && rabbitmq-plugins enable --offline rabbitmq_management \
    && chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq

LABEL org.opencontainers.image.title="loadtest CI stand-in: RabbitMQ (Debian rabbitmq-server)" \
      org.opencontainers.image.description="Replaces rabbitmq:3.13-management where no registry can be reached"

ENV RABBITMQ_LOGS=- \
    HOME=/var/lib/rabbitmq
WORKDIR /var/lib/rabbitmq
USER 999:999
EXPOSE 5672 15672
VOLUME ["/var/lib/rabbitmq"]
ENTRYPOINT ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
