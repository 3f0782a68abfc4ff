package deploycheck

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The checks below read the operators' custom objects of the overlays (k8s-overlays/): their schemas are
// checked against the CRDs (CRDs.Validate); these check that they agree with what the services do.

// OperatorChecks returns the checks of the operators' objects; each passes when its kind is absent.
func OperatorChecks() []Check[*Manifests] {
	return []Check[*Manifests]{
		{"kafka topics", checkKafkaTopics},
		{"kafka users", checkKafkaUsers},
		{"scaled consumers", checkScaledObjects},
		{"postgres clusters", checkPostgresClusters},
		{"clickhouse installation", checkClickHouseInstallation},
	}
}

type objectMeta struct {
	Name string `json:"name"`
}

type kafkaTopic struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		TopicName  string                     `json:"topicName"`
		Partitions int                        `json:"partitions"`
		Replicas   int                        `json:"replicas"`
		Config     map[string]json.RawMessage `json:"config"`
	} `json:"spec"`
}

// topic is the name of the topic a KafkaTopic declares: spec.topicName, else the object's name.
func (t kafkaTopic) topic() string { return cmp.Or(t.Spec.TopicName, t.Metadata.Name) }

type kafkaACL struct {
	Resource struct {
		Type        string `json:"type"`
		Name        string `json:"name"`
		PatternType string `json:"patternType"`
	} `json:"resource"`
	Operations []string `json:"operations"`
}

type kafkaUser struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Authentication struct {
			Type string `json:"type"`
		} `json:"authentication"`
		Authorization struct {
			Type string     `json:"type"`
			ACLs []kafkaACL `json:"acls"`
		} `json:"authorization"`
	} `json:"spec"`
}

type kafkaCluster struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Kafka struct {
			Listeners []struct {
				Name           string `json:"name"`
				Port           int    `json:"port"`
				TLS            bool   `json:"tls"`
				Authentication struct {
					Type string `json:"type"`
				} `json:"authentication"`
			} `json:"listeners"`
		} `json:"kafka"`
	} `json:"spec"`
}

type scaledObject struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		ScaleTargetRef struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MaxReplicaCount *int `json:"maxReplicaCount"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *authRef          `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// authRef is a trigger's authenticationRef.
type authRef struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
}

type triggerAuthentication struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Env []struct {
			Parameter     string `json:"parameter"`
			Name          string `json:"name"`
			ContainerName string `json:"containerName"`
		} `json:"env"`
	} `json:"spec"`
}

// custom decodes the objects of a kind, leniently: their schemas are the CRDs' to check.
func custom[T any](m *Manifests, kind string) (out []T, problems []string) {
	for _, o := range m.Objects {
		if o.Kind != kind {
			continue
		}
		var v T
		if err := json.Unmarshal(o.JSON, &v); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", o, err))
			continue
		}
		out = append(out, v)
	}
	return out, problems
}

// kafkaSettings are the Kafka settings of the manifests: those of the ConfigMap that sets the topic prefix
// (KAFKA_*, read as the services read them), kafkax's defaults for what it leaves out.
func kafkaSettings(m *Manifests) (cfg kafkax.Config, brokers string, problems []string) {
	cfg.RegisterFlags(flag.NewFlagSet("kafka", flag.ContinueOnError))
	i := slices.IndexFunc(all[*corev1.ConfigMap](m), func(cm *corev1.ConfigMap) bool { _, ok := cm.Data["KAFKA_TOPIC_PREFIX"]; return ok })
	if i < 0 {
		return cfg, "", []string{"no ConfigMap sets KAFKA_TOPIC_PREFIX"}
	}
	cm := all[*corev1.ConfigMap](m)[i]
	data := cm.Data
	cfg.TopicPrefix, brokers = data["KAFKA_TOPIC_PREFIX"], data["KAFKA_BROKERS"]
	for key, p := range map[string]*int{"KAFKA_PARTITIONS": &cfg.Partitions, "KAFKA_REPLICATION_FACTOR": &cfg.ReplicationFactor} {
		if v, ok := data[key]; ok {
			n, err := strconv.Atoi(v)
			problems = when(problems, err != nil, "ConfigMap %s: %s=%q is not a number", cm.Name, key, v)
			*p = n
		}
	}
	for key, p := range map[string]*time.Duration{kafkax.EnvRetentionRaw: &cfg.RetentionRaw, kafkax.EnvRetentionEnriched: &cfg.RetentionEnriched} {
		if v, ok := data[key]; ok {
			d, err := time.ParseDuration(v)
			problems = when(problems, err != nil, "ConfigMap %s: %s=%q is not a duration", cm.Name, key, v)
			*p = d
		}
	}
	return cfg, brokers, problems
}

// retopic renames a topic of the contract (default prefix) with the manifests' prefix.
func retopic(cfg kafkax.Config, topic string) string {
	var def kafkax.Config
	def.RegisterFlags(flag.NewFlagSet("kafka", flag.ContinueOnError))
	return cfg.TopicPrefix + strings.TrimPrefix(topic, def.TopicPrefix)
}

// checkKafkaTopics: when KafkaTopics declare the topics, every topic of kafkax.PlatformTopics has one, with
// the partitions, replication and configs the services create it with (the ConfigMap's KAFKA_* settings),
// none declares a topic the platform does not use, and the node pools have brokers enough for the replicas.
func checkKafkaTopics(_ Contract, m *Manifests) (out []string) {
	topics, out := custom[kafkaTopic](m, "KafkaTopic")
	if len(topics) == 0 {
		return out
	}
	cfg, _, problems := kafkaSettings(m)
	out = append(out, problems...)
	declared := map[string]kafkaTopic{}
	for _, t := range topics {
		declared[t.topic()] = t
	}
	for _, spec := range kafkax.PlatformTopics(cfg) {
		t, ok := declared[spec.Name]
		if !ok {
			out = append(out, fmt.Sprintf("no KafkaTopic declares topic %s", spec.Name))
			continue
		}
		delete(declared, spec.Name)
		where := "KafkaTopic " + t.Metadata.Name
		out = when(out, t.Spec.Partitions != cfg.Partitions, "%s: %d partitions, the services create %d (KAFKA_PARTITIONS)", where, t.Spec.Partitions, cfg.Partitions)
		out = when(out, t.Spec.Replicas != cfg.ReplicationFactor, "%s: %d replicas, the services create %d (KAFKA_REPLICATION_FACTOR)", where, t.Spec.Replicas, cfg.ReplicationFactor)
		for _, key := range slices.Sorted(maps.Keys(spec.Configs)) {
			raw, ok := t.Spec.Config[key]
			got := strings.Trim(string(raw), `"`)
			out = when(out, !ok, "%s: config %s is not set; the services set %s", where, key, spec.Configs[key])
			out = when(out, ok && got != spec.Configs[key], "%s: config %s is %s; the services set %s", where, key, got, spec.Configs[key])
		}
		for _, key := range slices.Sorted(maps.Keys(t.Spec.Config)) {
			_, ok := spec.Configs[key]
			out = when(out, !ok, "%s: config %s is set; the services create the topic without it (libs/kafkax PlatformTopics)", where, key)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(declared)) {
		out = append(out, fmt.Sprintf("KafkaTopic %s declares topic %s, which the platform does not use", declared[name].Metadata.Name, name))
	}
	pools, problems := custom[struct {
		Spec struct {
			Replicas int      `json:"replicas"`
			Roles    []string `json:"roles"`
		} `json:"spec"`
	}](m, "KafkaNodePool")
	out = append(out, problems...)
	brokers := 0
	for _, p := range pools {
		if slices.Contains(p.Spec.Roles, "broker") {
			brokers += p.Spec.Replicas
		}
	}
	return when(out, len(pools) > 0 && brokers < cfg.ReplicationFactor, "the KafkaNodePools have %d brokers, fewer than the topics' %d replicas", brokers, cfg.ReplicationFactor)
}

// wantACLs are the ACLs (type name pattern operation) a Kafka client needs, no more: Write and Describe on
// what it writes, Read and Describe on what it reads, Read on its groups, Write and Describe on its
// transactional ids, Create and Describe on the platform's topics if it creates them.
func wantACLs(c KafkaClient, cfg kafkax.Config) map[string]bool {
	want := map[string]bool{}
	add := func(typ, name, pattern string, ops ...string) {
		for _, op := range ops {
			want[strings.Join([]string{typ, name, pattern, op}, " ")] = true
		}
	}
	for _, t := range c.Writes {
		add("topic", retopic(cfg, t), "literal", "Write", "Describe")
	}
	for _, t := range c.Reads {
		add("topic", retopic(cfg, t), "literal", "Read", "Describe")
	}
	for g, t := range c.Groups {
		add("group", g, "literal", "Read")
		add("topic", retopic(cfg, t), "literal", "Read", "Describe")
	}
	if c.TransactionalIDPrefix != "" {
		add("transactionalId", c.TransactionalIDPrefix, "prefix", "Write", "Describe")
	}
	if c.CreatesTopics {
		for _, spec := range kafkax.PlatformTopics(cfg) {
			add("topic", spec.Name, "literal", "Create", "Describe")
		}
	}
	return want
}

// checkKafkaUsers: when KafkaUsers exist, every Kafka client of the contract has its user, allowed what the
// client does and nothing else; each of its workloads connects as that user (KAFKA_SASL_USER, the password
// from the user's Secret, the mechanism of its authentication) over TLS with the cluster CA mounted where
// KAFKA_TLS_CA_FILE points; KAFKA_BROKERS is the bootstrap of the Kafka listener with that authentication.
func checkKafkaUsers(k Contract, m *Manifests) (out []string) {
	users, out := custom[kafkaUser](m, "KafkaUser")
	if len(users) == 0 {
		return out
	}
	clusters, problems := custom[kafkaCluster](m, "Kafka")
	out = append(out, problems...)
	if len(clusters) != 1 {
		return append(out, fmt.Sprintf("%d Kafka objects beside the KafkaUsers, want 1", len(clusters)))
	}
	kafka := clusters[0]
	cfg, brokers, problems := kafkaSettings(m)
	out = append(out, problems...)
	mechanisms := map[string]string{"scram-sha-512": "SCRAM-SHA-512"}
	bootstrap := map[string]string{} // authentication type -> address of the TLS listener
	for _, l := range kafka.Spec.Kafka.Listeners {
		if l.TLS {
			bootstrap[l.Authentication.Type] = fmt.Sprintf("%s-kafka-bootstrap:%d", kafka.Metadata.Name, l.Port)
		}
	}
	byName := map[string]kafkaUser{}
	for _, u := range users {
		byName[u.Metadata.Name] = u
	}
	for _, c := range k.KafkaClients {
		u, ok := byName[c.User]
		if !ok {
			out = append(out, fmt.Sprintf("no KafkaUser %s for %s", c.User, strings.Join(c.Workloads, ", ")))
			continue
		}
		delete(byName, c.User)
		auth := u.Spec.Authentication.Type
		out = when(out, mechanisms[auth] == "", "KafkaUser %s: authentication %q, which the services do not speak", c.User, auth)
		out = when(out, bootstrap[auth] == "", "KafkaUser %s: no TLS listener of Kafka %s authenticates %s", c.User, kafka.Metadata.Name, auth)
		out = when(out, bootstrap[auth] != "" && brokers != bootstrap[auth], "KAFKA_BROKERS is %q, not the listener its users authenticate at (%s)", brokers, bootstrap[auth])
		want, got := wantACLs(c, cfg), map[string]bool{}
		for _, acl := range u.Spec.Authorization.ACLs {
			for _, op := range acl.Operations {
				got[strings.Join([]string{acl.Resource.Type, acl.Resource.Name, cmp.Or(acl.Resource.PatternType, "literal"), op}, " ")] = true
			}
		}
		for _, acl := range slices.Sorted(maps.Keys(want)) {
			out = when(out, !got[acl], "KafkaUser %s: does not allow %s, which %s needs", c.User, acl, strings.Join(c.Workloads, ", "))
		}
		for _, acl := range slices.Sorted(maps.Keys(got)) {
			out = when(out, !want[acl], "KafkaUser %s: allows %s, which %s does not need", c.User, acl, strings.Join(c.Workloads, ", "))
		}
		for _, w := range c.Workloads {
			out = append(out, kafkaClientEnvProblems(m, w, c.User, mechanisms[auth], kafka.Metadata.Name+"-cluster-ca-cert")...)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, fmt.Sprintf("KafkaUser %s is no workload's user", name))
	}
	for _, c := range m.containers() {
		vars, known := k.process(c.workload.Name, imageName(c.Image), c.Args)
		client := slices.ContainsFunc(k.KafkaClients, func(kc KafkaClient) bool { return slices.Contains(kc.Workloads, c.workload.Name) })
		out = when(out, c.app && known && k.Reads(vars, "KAFKA_SASL_USER") && !client, "%s: a Kafka client of no KafkaUser", c.where)
	}
	return out
}

// kafkaClientEnvProblems: the app containers of workload connect as user with mechanism, trusting the CA
// of Secret caSecret mounted at KAFKA_TLS_CA_FILE.
func kafkaClientEnvProblems(m *Manifests, workload, user, mechanism, caSecret string) (out []string) {
	found := false
	for _, c := range m.containers() {
		if c.workload.Name != workload || !c.app {
			continue
		}
		found = true
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		pw := deref(deref(env["KAFKA_SASL_PASSWORD"].ValueFrom).SecretKeyRef)
		out = when(out, env["KAFKA_SASL_MECHANISM"].Value != mechanism, "%s: KAFKA_SASL_MECHANISM is %q, want %s", c.where, env["KAFKA_SASL_MECHANISM"].Value, mechanism)
		out = when(out, env["KAFKA_SASL_USER"].Value != user, "%s: KAFKA_SASL_USER is %q, want %s", c.where, env["KAFKA_SASL_USER"].Value, user)
		out = when(out, pw.Name != user || pw.Key != "password", "%s: KAFKA_SASL_PASSWORD is not key password of Secret %s", c.where, user)
		caFile := env["KAFKA_TLS_CA_FILE"].Value
		mounted := slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
			return caFile != "" && vm.MountPath == path.Dir(caFile) && slices.ContainsFunc(c.volumes, func(v corev1.Volume) bool {
				return v.Name == vm.Name && v.Secret != nil && v.Secret.SecretName == caSecret
			})
		})
		out = when(out, !mounted, "%s: KAFKA_TLS_CA_FILE %q is not in a mount of Secret %s", c.where, caFile, caSecret)
	}
	return when(out, !found, "no workload %s to connect as KafkaUser %s", workload, user)
}

// kafkaScalerParams are the trigger metadata the kafka scaler of KEDA 2.20 reads (pkg/scalers/kafka_scaler.go,
// kafkaMetadata); the CRD leaves metadata free, and KEDA ignores a misspelt key.
var kafkaScalerParams = []string{"bootstrapServers", "consumerGroup", "topic", "partitionLimitation", "lagThreshold",
	"activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
	"limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "version", "tls", "unsafeSsl", "sasl", "saslTokenProvider", "awsRegion"}

// checkScaledObjects: when ScaledObjects exist, every group consumer of the contract is scaled by one on
// the lag of each of its groups (the services' default group names and their topics), from the brokers
// the services use, counting a new group from the topic's start as the services start it, up to at most
// the topic's partitions; the Deployment has no replica count and no other HorizontalPodAutoscaler.
func checkScaledObjects(k Contract, m *Manifests) (out []string) {
	sos, out := custom[scaledObject](m, "ScaledObject")
	if len(sos) == 0 {
		return out
	}
	cfg, brokers, problems := kafkaSettings(m)
	out = append(out, problems...)
	partitions := map[string]int{}
	topics, _ := custom[kafkaTopic](m, "KafkaTopic")
	for _, spec := range kafkax.PlatformTopics(cfg) {
		partitions[spec.Name] = cfg.Partitions
	}
	for _, t := range topics {
		partitions[t.topic()] = t.Spec.Partitions
	}
	auths, problems := custom[triggerAuthentication](m, "TriggerAuthentication")
	out = append(out, problems...)
	scaled := map[string]bool{}
	for _, so := range sos {
		where, target := "ScaledObject "+so.Metadata.Name, so.Spec.ScaleTargetRef.Name
		out = when(out, cmp.Or(so.Spec.ScaleTargetRef.Kind, "Deployment") != "Deployment", "%s: scales a %s, not a Deployment", where, so.Spec.ScaleTargetRef.Kind)
		i := slices.IndexFunc(all[*appsv1.Deployment](m), func(d *appsv1.Deployment) bool { return d.Name == target })
		if i < 0 {
			out = append(out, fmt.Sprintf("%s: no Deployment %s", where, target))
			continue
		}
		scaled[target] = true
		out = when(out, all[*appsv1.Deployment](m)[i].Spec.Replicas != nil, "Deployment %s: sets replicas, which the HorizontalPodAutoscaler of %s owns", target, where)
		for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](m) {
			out = when(out, h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == target, "HorizontalPodAutoscaler %s: scales Deployment %s, which %s scales", h.Name, target, where)
		}
		ci := slices.IndexFunc(k.KafkaClients, func(c KafkaClient) bool { return slices.Contains(c.Workloads, target) && len(c.Groups) > 0 })
		if ci < 0 {
			out = append(out, fmt.Sprintf("%s: Deployment %s consumes in no Kafka group", where, target))
			continue
		}
		groups := k.KafkaClients[ci].Groups
		seen := map[string]bool{}
		for _, tr := range so.Spec.Triggers {
			if tr.Type != "kafka" {
				continue
			}
			md := tr.Metadata
			for _, key := range slices.Sorted(maps.Keys(md)) {
				out = when(out, !slices.Contains(kafkaScalerParams, key), "%s: trigger metadata %s is not a parameter of KEDA's kafka scaler", where, key)
			}
			group, topic := md["consumerGroup"], md["topic"]
			want, ok := groups[group]
			seen[group] = true
			out = when(out, !ok, "%s: consumer group %q is not one of %s's (%s)", where, group, target, strings.Join(slices.Sorted(maps.Keys(groups)), ", "))
			out = when(out, ok && topic != retopic(cfg, want), "%s: group %s consumes %s, not %q", where, group, retopic(cfg, want), topic)
			out = when(out, md["bootstrapServers"] != brokers, "%s: bootstrapServers %q, the services use %q (KAFKA_BROKERS)", where, md["bootstrapServers"], brokers)
			out = when(out, md["offsetResetPolicy"] != "earliest", "%s: offsetResetPolicy %q; a new group starts at the topic's beginning (earliest)", where, md["offsetResetPolicy"])
			out = append(out, triggerAuthProblems(where, tr.AuthenticationRef, auths, all[*appsv1.Deployment](m)[i])...)
			limit := 100 // KEDA's default maxReplicaCount
			if so.Spec.MaxReplicaCount != nil {
				limit = *so.Spec.MaxReplicaCount
			}
			out = when(out, ok && limit > partitions[topic], "%s: maxReplicaCount %d exceeds the %d partitions of %s", where, limit, partitions[topic], topic)
		}
		for _, g := range slices.Sorted(maps.Keys(groups)) {
			out = when(out, !seen[g], "%s: no kafka trigger on group %s of %s", where, g, target)
		}
	}
	for _, c := range k.KafkaClients {
		for _, w := range c.Workloads {
			out = when(out, len(c.Groups) > 0 && !scaled[w], "Deployment %s: consumes in a Kafka group, but no ScaledObject scales it", w)
		}
	}
	return out
}

// triggerAuthProblems: a trigger's authentication exists (a TriggerAuthentication of the manifests), and
// the variables it reads from the target's container (its env parameters) are set there.
func triggerAuthProblems(where string, ref *authRef, auths []triggerAuthentication, target *appsv1.Deployment) (out []string) {
	if ref == nil {
		return nil
	}
	if ref.Kind != "" && ref.Kind != "TriggerAuthentication" {
		return []string{fmt.Sprintf("%s: authentication %s %s is not checked", where, ref.Kind, ref.Name)}
	}
	i := slices.IndexFunc(auths, func(a triggerAuthentication) bool { return a.Metadata.Name == ref.Name })
	if i < 0 {
		return []string{fmt.Sprintf("%s: no TriggerAuthentication %s", where, ref.Name)}
	}
	containers := target.Spec.Template.Spec.Containers
	for _, e := range auths[i].Spec.Env {
		c := slices.IndexFunc(containers, func(c corev1.Container) bool { return e.ContainerName == "" || c.Name == e.ContainerName })
		set := c >= 0 && slices.ContainsFunc(containers[c].Env, func(v corev1.EnvVar) bool { return v.Name == e.Name })
		out = when(out, !set, "%s: TriggerAuthentication %s reads %s (%s) from Deployment %s, whose container does not set it", where, ref.Name, e.Name, e.Parameter, target.Name)
	}
	return out
}

type podMonitor struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		JobLabel            string               `json:"jobLabel"`
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port        string       `json:"port"`
			Path        string       `json:"path"`
			Relabelings []relabeling `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type relabeling struct {
	TargetLabel string `json:"targetLabel"`
}

// checkMonitors: the PodMonitors of monitoring scrape /metrics on the admin port of every service of the
// workloads (Deployments) and of every job the alert rules and dashboards select (jobs), in a job named
// after the service: the value of the pod label the monitor's jobLabel names.
func checkMonitors(k Contract, workloads, monitoring *Manifests, jobs []string) (out []string) {
	monitors, out := custom[podMonitor](monitoring, "PodMonitor")
	scraped := map[string][]string{} // job -> monitors scraping its admin port
	for _, pm := range monitors {
		where := "PodMonitor " + pm.Metadata.Name
		sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: selector: %v", where, err))
			continue
		}
		out = when(out, pm.Spec.JobLabel == "", "%s: no jobLabel: the job would be the monitor's name, not the service's", where)
		for _, d := range all[*appsv1.Deployment](workloads) {
			pod := d.Spec.Template
			job := pod.Labels[pm.Spec.JobLabel]
			if !sel.Matches(labels.Set(pod.Labels)) || pm.Spec.JobLabel == "" {
				continue
			}
			for _, e := range pm.Spec.PodMetricsEndpoints {
				admin := slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool {
					return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == e.Port && int(p.ContainerPort) == k.AdminPort })
				})
				relabelsJob := slices.ContainsFunc(e.Relabelings, func(r relabeling) bool { return r.TargetLabel == "job" })
				out = when(out, relabelsJob, "%s: relabels job, which jobLabel names", where)
				out = when(out, !admin, "%s: scrapes port %q of Deployment %s, not its admin port %d", where, e.Port, d.Name, k.AdminPort)
				out = when(out, cmp.Or(e.Path, "/metrics") != "/metrics", "%s: scrapes %s, not /metrics", where, e.Path)
				if admin && !relabelsJob && cmp.Or(e.Path, "/metrics") == "/metrics" {
					scraped[job] = append(scraped[job], pm.Metadata.Name)
				}
			}
		}
	}
	want := slices.Concat(slices.Collect(maps.Keys(k.Services)), jobs)
	slices.Sort(want)
	for _, job := range slices.Compact(want) {
		out = when(out, len(scraped[job]) == 0, "no PodMonitor scrapes the admin port of a Deployment in job %q", job)
		out = when(out, len(scraped[job]) > 1, "job %q is scraped by %d endpoints of %v: every sample twice", job, len(scraped[job]), scraped[job])
	}
	return out
}

// checkPostgresClusters: when CloudNativePG Clusters exist, every variable holding a PostgreSQL URL
// (DATABASE_URL, the fleet's instance URLs) comes from key uri of the app Secret of one of them, each
// variable from the same Cluster in every workload, different variables from different Clusters, every
// Cluster reached by some variable, and every process that reaches districts given every instance's URL.
func checkPostgresClusters(k Contract, m *Manifests) (out []string) {
	objs, out := custom[struct {
		Metadata objectMeta `json:"metadata"`
	}](m, "Cluster") // CloudNativePG's: the only kind Cluster the manifests have
	clusters := map[string]bool{}
	for _, o := range objs {
		clusters[o.Metadata.Name] = true
	}
	if len(clusters) == 0 {
		return out
	}
	urlVars := append([]string{"DATABASE_URL"}, k.InstanceURLs...)
	from := map[string]string{} // variable -> cluster
	used := map[string]string{} // cluster -> variable
	for _, c := range m.containers() {
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		vars, known := k.process(c.workload.Name, imageName(c.Image), c.Args)
		for _, v := range urlVars {
			e, set := env[v]
			out = when(out, known && c.app && k.Reads(vars, v) && !set, "%s: %s is not set", c.where, v)
			if !set {
				continue
			}
			ref := deref(deref(e.ValueFrom).SecretKeyRef)
			cluster, isApp := strings.CutSuffix(ref.Name, "-app")
			if !isApp || !clusters[cluster] || ref.Key != "uri" {
				out = append(out, fmt.Sprintf("%s: %s is not key uri of the app Secret of a Cluster (%s)", c.where, v, strings.Join(slices.Sorted(maps.Keys(clusters)), ", ")))
				continue
			}
			if prev, ok := from[v]; ok && prev != cluster {
				out = append(out, fmt.Sprintf("%s: %s is Cluster %s's, elsewhere %s's", c.where, v, cluster, prev))
			}
			if prev, ok := used[cluster]; ok && prev != v {
				out = append(out, fmt.Sprintf("%s: %s and %s are both Cluster %s: one instance under two names", c.where, v, prev, cluster))
			}
			from[v], used[cluster] = cluster, v
		}
	}
	for _, cl := range slices.Sorted(maps.Keys(clusters)) {
		_, ok := used[cl]
		out = when(out, !ok, "Cluster %s: no workload's PostgreSQL URL", cl)
	}
	return out
}

// chiCluster is a cluster of a ClickHouseInstallation.
type chiCluster struct {
	Name   string `json:"name"`
	Layout struct {
		ShardsCount   int `json:"shardsCount"`
		ReplicasCount int `json:"replicasCount"`
	} `json:"layout"`
}

type clickHouseInstallation struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Configuration struct {
			Zookeeper struct {
				Nodes []struct {
					Host string `json:"host"`
					Port int    `json:"port"`
				} `json:"nodes"`
			} `json:"zookeeper"`
			Users    map[string]json.RawMessage `json:"users"`
			Clusters []chiCluster               `json:"clusters"`
		} `json:"configuration"`
	} `json:"spec"`
}

// checkClickHouseInstallation: when an Altinity ClickHouseInstallation exists, the services' CLICKHOUSE_ADDR
// is its Service's native port, CLICKHOUSE_USER one of its users, whose password is the Secret key the
// services read CLICKHOUSE_PASSWORD from; its replicated clusters are coordinated by a
// ClickHouseKeeperInstallation of the manifests (its Service keeper-<name>, port 2181).
func checkClickHouseInstallation(k Contract, m *Manifests) (out []string) {
	chis, out := custom[clickHouseInstallation](m, "ClickHouseInstallation")
	if len(chis) == 0 {
		return out
	}
	if len(chis) > 1 {
		return append(out, fmt.Sprintf("%d ClickHouseInstallations, want 1", len(chis)))
	}
	chi := chis[0]
	where := "ClickHouseInstallation " + chi.Metadata.Name
	keepers := map[string]bool{}
	for _, o := range m.Objects {
		if o.Kind == "ClickHouseKeeperInstallation" {
			keepers["keeper-"+o.Name] = true
		}
	}
	replicated := slices.ContainsFunc(chi.Spec.Configuration.Clusters, func(c chiCluster) bool { return c.Layout.ReplicasCount > 1 })
	nodes := chi.Spec.Configuration.Zookeeper.Nodes
	out = when(out, replicated && len(nodes) == 0, "%s: replicated, but no keeper nodes", where)
	for _, n := range nodes {
		out = when(out, !keepers[n.Host] || n.Port != 2181, "%s: keeper node %s:%d is not a ClickHouseKeeperInstallation's Service (keeper-<name>:2181)", where, n.Host, n.Port)
	}
	for _, c := range m.containers() {
		vars, known := k.process(c.workload.Name, imageName(c.Image), c.Args)
		if !known || !c.app || !k.Reads(vars, "CLICKHOUSE_ADDR") {
			continue
		}
		env := map[string]string{}
		for _, from := range c.EnvFrom {
			for _, cm := range all[*corev1.ConfigMap](m) {
				if from.ConfigMapRef != nil && cm.Name == from.ConfigMapRef.Name {
					maps.Copy(env, cm.Data)
				}
			}
		}
		var password corev1.SecretKeySelector
		for _, e := range c.Env {
			if e.Value != "" {
				env[e.Name] = e.Value
			}
			if e.Name == "CLICKHOUSE_PASSWORD" {
				password = deref(deref(e.ValueFrom).SecretKeyRef)
			}
		}
		want := fmt.Sprintf("clickhouse-%s:9000", chi.Metadata.Name)
		out = when(out, env["CLICKHOUSE_ADDR"] != want, "%s: CLICKHOUSE_ADDR is %q, not %s's native port %s", c.where, env["CLICKHOUSE_ADDR"], where, want)
		user := env["CLICKHOUSE_USER"]
		secret := strings.Trim(string(chi.Spec.Configuration.Users[user+"/k8s_secret_password"]), `"`)
		out = when(out, secret != password.Name+"/"+password.Key, "%s: user %q's password is not the Secret key %s/%s that %s reads CLICKHOUSE_PASSWORD from", where, user, password.Name, password.Key, c.where)
	}
	return out
}
