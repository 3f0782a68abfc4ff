#!/bin/sh
# Creates the platform's topics when missing, with the partition counts and configs the services expect.
# The services create missing topics themselves too; this job makes the layout explicit and reviewable.
# Used by the `topics` job in docker-compose.yml and by k8s/topics-job.yaml (runs in the apache/kafka image).
#
# Environment: KAFKA_BROKERS (comma list), KAFKA_TOPIC_PREFIX (default edtech.),
# KAFKA_PARTITIONS (default 12), KAFKA_REPLICATION_FACTOR (default 1),
# KAFKA_COMMAND_CONFIG (optional client properties file, for SASL/TLS clusters),
# KAFKA_TOPICS_BIN (default /opt/kafka/bin/kafka-topics.sh).
set -eu

bin="${KAFKA_TOPICS_BIN:-/opt/kafka/bin/kafka-topics.sh}"
prefix="${KAFKA_TOPIC_PREFIX:-edtech.}"
partitions="${KAFKA_PARTITIONS:-12}"
replication="${KAFKA_REPLICATION_FACTOR:-1}"
set -- --bootstrap-server "$KAFKA_BROKERS"
if [ -n "${KAFKA_COMMAND_CONFIG:-}" ]; then
	set -- "$@" --command-config "$KAFKA_COMMAND_CONFIG"
fi

# Wait for the cluster to answer (up to two minutes).
tries=0
until "$bin" "$@" --list >/dev/null; do
	tries=$((tries + 1))
	if [ "$tries" -ge 24 ]; then
		echo "kafka at $KAFKA_BROKERS did not answer" >&2
		exit 1
	fi
	sleep 5
done

create() {
	topic="$prefix$1"
	shift
	"$bin" "$@" --create --if-not-exists --topic "$topic" \
		--partitions "$partitions" --replication-factor "$replication"
}

# raw and enricher-dedup must keep the same partition count: the dedup changelog is co-partitioned with raw.
create raw "$@" --config compression.type=lz4
create enriched "$@" --config compression.type=lz4
create dlq "$@"
# Control commands are kept forever: a replay must see every erasure.
create control "$@" --config retention.ms=-1
# The dedup changelog is compacted and expires after the dedup window (7 days).
create enricher-dedup "$@" --config cleanup.policy=compact,delete --config retention.ms=604800000

# Print one summary line per topic (partition count, replication, configs) for the job's log.
"$bin" "$@" --describe --topic "${prefix}(raw|enriched|dlq|control|enricher-dedup)" | grep -v 'Partition: '
