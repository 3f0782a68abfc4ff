package deploycheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeKafkaTopics records each call's arguments, one call per line, and answers --describe like
// kafka-topics.sh: a summary line per topic, then one tab-indented line per partition.
const fakeKafkaTopics = `#!/bin/sh
printf '%s\n' "$*" >> "$CALLS"
case "$*" in
*--describe*)
	printf 'Topic: edtech.raw\tPartitionCount: 6\tReplicationFactor: 3\tConfigs: compression.type=lz4\n'
	printf '\tTopic: edtech.raw\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n'
	;;
esac
`

// TestCreateTopicsScript runs k8s/create-topics.sh (used by compose and k8s) against a fake kafka-topics.sh
// and checks the topics it creates; the configs mirror kafkax.PlatformTopics.
func TestCreateTopicsScript(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kafka-topics.sh")
	if err := os.WriteFile(bin, []byte(fakeKafkaTopics), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		env           []string
		prefix        string
		commandConfig bool
	}{
		{name: "defaults", prefix: "edtech."},
		{name: "staging prefix with client config", env: []string{"KAFKA_TOPIC_PREFIX=staging.", "KAFKA_COMMAND_CONFIG=/etc/kafka/client.properties"}, prefix: "staging.", commandConfig: true},
	}
	want := map[string][]string{
		"raw":            {"compression.type=lz4"},
		"enriched":       {"compression.type=lz4"},
		"dlq":            nil,
		"control":        {"retention.ms=-1"},
		"enricher-dedup": {"cleanup.policy=compact,delete", "retention.ms=604800000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := filepath.Join(t.TempDir(), "calls")
			cmd := exec.CommandContext(t.Context(), "sh", filepath.Join(repoRoot, "k8s", "create-topics.sh"))
			cmd.Env = append([]string{
				"PATH=" + os.Getenv("PATH"), "CALLS=" + calls, "KAFKA_TOPICS_BIN=" + bin,
				"KAFKA_BROKERS=127.0.0.1:9092", "KAFKA_PARTITIONS=6", "KAFKA_REPLICATION_FACTOR=3",
			}, tc.env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("script: %v\n%s", err, out)
			}
			if strings.Contains(string(out), "Partition: 0") || !strings.Contains(string(out), "PartitionCount: 6") {
				t.Errorf("output %q: want the topic summaries without per-partition lines", out)
			}
			raw, err := os.ReadFile(calls)
			if err != nil {
				t.Fatal(err)
			}
			created := map[string][]string{}
			for _, call := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				args := strings.Fields(call)
				if !slices.Contains(args, "--bootstrap-server") || args[slices.Index(args, "--bootstrap-server")+1] != "127.0.0.1:9092" {
					t.Errorf("call %q does not use the brokers", call)
				}
				if tc.commandConfig != slices.Contains(args, "--command-config") {
					t.Errorf("call %q: want --command-config only when KAFKA_COMMAND_CONFIG is set (set: %v)", call, tc.commandConfig)
				}
				if !slices.Contains(args, "--create") {
					continue
				}
				flag := func(name string) string {
					i := slices.Index(args, name)
					if i < 0 || i+1 == len(args) {
						return ""
					}
					return args[i+1]
				}
				if flag("--partitions") != "6" || flag("--replication-factor") != "3" || !slices.Contains(args, "--if-not-exists") {
					t.Errorf("create call %q: want --partitions 6 --replication-factor 3 --if-not-exists", call)
				}
				var configs []string
				for i, a := range args {
					if a == "--config" {
						configs = append(configs, args[i+1])
					}
				}
				created[flag("--topic")] = configs
			}
			if len(created) != len(want) {
				t.Errorf("created %v, want %d topics", created, len(want))
			}
			for suffix, configs := range want {
				got, ok := created[tc.prefix+suffix]
				if !ok {
					t.Errorf("topic %s%s not created", tc.prefix, suffix)
					continue
				}
				if !slices.Equal(got, configs) {
					t.Errorf("topic %s%s configs %q, want %q", tc.prefix, suffix, got, configs)
				}
			}
		})
	}
}
