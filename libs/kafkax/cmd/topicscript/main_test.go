package main

import (
	"bytes"
	"flag"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/kafkax"
)

// scriptPath is the generated script, from this package's directory.
var scriptPath = filepath.Join("..", "..", "..", "..", "k8s", "create-topics.sh")

// TestScriptIsUpToDate: the committed k8s/create-topics.sh is what the generator writes from
// kafkax.PlatformTopics.
func TestScriptIsUpToDate(t *testing.T) {
	var want bytes.Buffer
	if err := write(&want); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(scriptPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("k8s/create-topics.sh is stale: run go generate ./libs/kafkax")
	}
}

// fakeKafkaTopics records each call's arguments, one argument a line and a blank line after each call,
// and answers --describe like kafka-topics.sh: a summary line per topic, then one tab-indented line per
// partition.
const fakeKafkaTopics = `#!/bin/sh
for a in "$@"; do printf '%s\n' "$a" >> "$CALLS"; done
printf '\n' >> "$CALLS"
case "$*" in
*--describe*)
	printf 'Topic: edtech.raw\tPartitionCount: 6\tReplicationFactor: 3\tConfigs: compression.type=lz4\n'
	printf '\tTopic: edtech.raw\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n'
	;;
esac
`

// TestScriptCreatesThePlatformTopics runs k8s/create-topics.sh (used by compose and k8s) against a fake
// kafka-topics.sh, and checks that it creates exactly the topics and configs that kafkax.PlatformTopics
// gives the services for the same environment.
func TestScriptCreatesThePlatformTopics(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kafka-topics.sh")
	if err := os.WriteFile(bin, []byte(fakeKafkaTopics), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		env           map[string]string
		commandConfig bool
	}{
		{name: "defaults"},
		{name: "staging prefix with client config", env: map[string]string{"KAFKA_TOPIC_PREFIX": "staging.",
			"KAFKA_COMMAND_CONFIG": "/etc/kafka/client.properties"}, commandConfig: true},
		{name: "retention from the environment", env: map[string]string{kafkax.EnvRetentionRaw: "48h",
			kafkax.EnvRetentionEnriched: "1000h30m15s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The services' view of the same environment.
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var cfg kafkax.Config
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{}
			for _, s := range kafkax.PlatformTopics(cfg) {
				for k, v := range s.Configs {
					want[s.Name] = append(want[s.Name], k+"="+v)
				}
				slices.Sort(want[s.Name])
			}

			created, out := runScript(t, bin, tc.env, tc.commandConfig)
			if strings.Contains(out, "Partition: 0") || !strings.Contains(out, "PartitionCount: 6") {
				t.Errorf("output %q: want the topic summaries without per-partition lines", out)
			}
			if !maps.EqualFunc(created, want, slices.Equal) {
				t.Errorf("the script created\n%v\nthe services create\n%v", created, want)
			}
		})
	}
	if created, _ := runScript(t, bin, nil, false); created[cfgTopics().Enriched][1] != "retention.ms=2592000000" {
		t.Errorf("enriched by default: %v, want 30 days", created[cfgTopics().Enriched])
	}
}

func cfgTopics() kafkax.Topics { return (&kafkax.Config{TopicPrefix: "edtech."}).Topics() }

// runScript runs the script with env and returns the configs of each created topic (sorted) and the
// script's output.
func runScript(t *testing.T, bin string, env map[string]string, commandConfig bool) (map[string][]string, string) {
	t.Helper()
	calls := filepath.Join(t.TempDir(), "calls")
	cmd := exec.CommandContext(t.Context(), "sh", scriptPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CALLS=" + calls, "KAFKA_TOPICS_BIN=" + bin,
		"KAFKA_BROKERS=127.0.0.1:9092", "KAFKA_PARTITIONS=6", "KAFKA_REPLICATION_FACTOR=3"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	created := map[string][]string{}
	for _, call := range strings.Split(strings.TrimSpace(string(raw)), "\n\n") {
		args := strings.Split(call, "\n")
		flag := func(name string) string {
			i := slices.Index(args, name)
			if i < 0 || i+1 == len(args) {
				return ""
			}
			return args[i+1]
		}
		if flag("--bootstrap-server") != "127.0.0.1:9092" {
			t.Errorf("call %q does not use the brokers", args)
		}
		if commandConfig != slices.Contains(args, "--command-config") {
			t.Errorf("call %q: want --command-config only when KAFKA_COMMAND_CONFIG is set (set: %v)", args, commandConfig)
		}
		if !slices.Contains(args, "--create") {
			continue
		}
		if flag("--partitions") != "6" || flag("--replication-factor") != "3" || !slices.Contains(args, "--if-not-exists") {
			t.Errorf("create call %q: want --partitions 6 --replication-factor 3 --if-not-exists", args)
		}
		var configs []string
		for i, a := range args {
			if a == "--config" {
				configs = append(configs, args[i+1])
			}
		}
		slices.Sort(configs)
		created[flag("--topic")] = configs
	}
	return created, string(out)
}

// TestScriptRefusesABadRetention: a retention the services would read differently (a fraction, a unit
// the script does not know) stops the script before it creates anything.
func TestScriptRefusesABadRetention(t *testing.T) {
	for _, v := range []string{"1.5h", "30d", "-1h", "h", "0"} {
		calls := filepath.Join(t.TempDir(), "calls")
		cmd := exec.CommandContext(t.Context(), "sh", scriptPath)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CALLS=" + calls, "KAFKA_TOPICS_BIN=/nonexistent",
			"KAFKA_BROKERS=127.0.0.1:9092", kafkax.EnvRetentionEnriched + "=" + v}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), kafkax.EnvRetentionEnriched+"="+v) {
			t.Errorf("%s=%s: %v, %q; want a refusal naming it", kafkax.EnvRetentionEnriched, v, err, out)
		}
	}
}
