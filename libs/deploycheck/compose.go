package deploycheck

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Compose is the part of a Compose file the checks read.
type Compose struct {
	Version  *string                   `yaml:"version"`
	Name     string                    `yaml:"name"`
	Services map[string]ComposeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

// ComposeService is one service of a Compose file.
type ComposeService struct {
	Image       string       `yaml:"image"`
	Build       *Build       `yaml:"build"`
	Command     Words        `yaml:"command"`
	Entrypoint  Words        `yaml:"entrypoint"`
	Environment Environment  `yaml:"environment"`
	Ports       []Port       `yaml:"ports"`
	Volumes     []Mount      `yaml:"volumes"`
	DependsOn   DependsOn    `yaml:"depends_on"`
	Healthcheck *Healthcheck `yaml:"healthcheck"`
	Restart     string       `yaml:"restart"`
	ReadOnly    bool         `yaml:"read_only"`
	CapDrop     []string     `yaml:"cap_drop"`
	StopGrace   string       `yaml:"stop_grace_period"`
}

// Build is a service's build section.
type Build struct {
	Context    string
	Dockerfile string
	Args       map[string]string
}

// UnmarshalYAML reads the short (context only) and long forms.
func (b *Build) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	var raw struct {
		Context    string      `yaml:"context"`
		Dockerfile string      `yaml:"dockerfile"`
		Args       Environment `yaml:"args"`
	}
	if err := n.Decode(&raw); err != nil {
		return fmt.Errorf("decoding build: %w", err)
	}
	b.Context, b.Dockerfile = raw.Context, raw.Dockerfile
	b.Args = map[string]string{}
	for k, v := range raw.Args {
		if v.Set {
			b.Args[k] = v.Value
		}
	}
	return nil
}

// Words is a command given as a list or as one string (split on spaces).
type Words []string

// UnmarshalYAML reads either form.
func (w *Words) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*w = strings.Fields(n.Value)
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return fmt.Errorf("decoding command: %w", err)
	}
	*w = list
	return nil
}

// EnvValue is one environment entry; Set is false for `NAME` without a value (taken from the host).
type EnvValue struct {
	Value string
	Set   bool
}

// Environment is a service's environment, given as a mapping or as a list of NAME=value.
type Environment map[string]EnvValue

// UnmarshalYAML reads either form, merge keys included.
func (e *Environment) UnmarshalYAML(n *yaml.Node) error {
	out := Environment{}
	switch n.Kind {
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			return fmt.Errorf("decoding environment list: %w", err)
		}
		for _, item := range list {
			name, value, ok := strings.Cut(item, "=")
			out[name] = EnvValue{Value: value, Set: ok}
		}
	default:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			return fmt.Errorf("decoding environment: %w", err)
		}
		for name, v := range m {
			if v == nil {
				out[name] = EnvValue{}
				continue
			}
			out[name] = EnvValue{Value: fmt.Sprint(v), Set: true}
		}
	}
	*e = out
	return nil
}

// Get returns the interpolated value of name and whether it is set to something non-empty.
func (e Environment) Get(name string) (string, bool) {
	v, ok := e[name]
	if !ok || !v.Set {
		return "", false
	}
	s := Interpolate(v.Value)
	return s, s != ""
}

// Port is a published port.
type Port struct {
	HostIP    string
	Published string
	Target    string
	Raw       string
}

// UnmarshalYAML reads the short ("[ip:]host:container[/proto]") and long forms.
func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		p.Raw = n.Value
		s, _, _ := strings.Cut(Interpolate(n.Value), "/")
		parts := strings.Split(s, ":")
		switch len(parts) {
		case 1:
			p.Target = parts[0]
		case 2:
			p.Published, p.Target = parts[0], parts[1]
		default:
			p.HostIP = strings.Join(parts[:len(parts)-2], ":")
			p.Published, p.Target = parts[len(parts)-2], parts[len(parts)-1]
		}
		return nil
	}
	var long struct {
		HostIP    string `yaml:"host_ip"`
		Published string `yaml:"published"`
		Target    string `yaml:"target"`
	}
	if err := n.Decode(&long); err != nil {
		return fmt.Errorf("decoding port: %w", err)
	}
	p.HostIP, p.Published, p.Target = long.HostIP, long.Published, long.Target
	p.Raw = fmt.Sprintf("%s:%s:%s", long.HostIP, long.Published, long.Target)
	return nil
}

// Mount is a volume or bind mount.
type Mount struct {
	Type   string // "volume" or "bind"
	Source string
	Target string
}

// UnmarshalYAML reads the short ("source:target[:mode]") and long forms.
func (m *Mount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) == 1 {
			m.Type, m.Target = "volume", parts[0]
			return nil
		}
		m.Source, m.Target = parts[0], parts[1]
		m.Type = "volume"
		if strings.HasPrefix(m.Source, ".") || strings.HasPrefix(m.Source, "/") || strings.HasPrefix(m.Source, "~") {
			m.Type = "bind"
		}
		return nil
	}
	var long struct {
		Type   string `yaml:"type"`
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	}
	if err := n.Decode(&long); err != nil {
		return fmt.Errorf("decoding mount: %w", err)
	}
	m.Type, m.Source, m.Target = long.Type, long.Source, long.Target
	return nil
}

// DependsOn maps each dependency to its condition.
type DependsOn map[string]string

// UnmarshalYAML reads the list form (condition service_started) and the mapping form.
func (d *DependsOn) UnmarshalYAML(n *yaml.Node) error {
	out := DependsOn{}
	if n.Kind == yaml.SequenceNode {
		var list []string
		if err := n.Decode(&list); err != nil {
			return fmt.Errorf("decoding depends_on: %w", err)
		}
		for _, name := range list {
			out[name] = "service_started"
		}
		*d = out
		return nil
	}
	var m map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := n.Decode(&m); err != nil {
		return fmt.Errorf("decoding depends_on: %w", err)
	}
	for name, dep := range m {
		cond := dep.Condition
		if cond == "" {
			cond = "service_started"
		}
		out[name] = cond
	}
	*d = out
	return nil
}

// Healthcheck is a container healthcheck.
type Healthcheck struct {
	Test    Words `yaml:"test"`
	Disable bool  `yaml:"disable"`
}

// ParseCompose parses a Compose file.
func ParseCompose(src []byte) (*Compose, error) {
	var c Compose
	if err := yaml.Unmarshal(src, &c); err != nil {
		return nil, fmt.Errorf("parsing compose file: %w", err)
	}
	return &c, nil
}

// LoadCompose reads and parses a Compose file.
func LoadCompose(path string) (*Compose, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading compose file: %w", err)
	}
	return ParseCompose(src)
}

// Interpolate resolves Compose variables as if none were set: ${X:-def} and ${X-def} give def, $$ gives $,
// and everything else (${X}, $X, ${X:?err}, ${X:+alt}) gives "".
func Interpolate(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
		case next == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			expr := s[i+2 : i+end]
			op := strings.TrimLeft(expr, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
			if def, ok := strings.CutPrefix(op, ":-"); ok {
				b.WriteString(def)
			} else if def, ok := strings.CutPrefix(op, "-"); ok {
				b.WriteString(def)
			}
			i += end
		case next == '_' || ('A' <= next && next <= 'Z') || ('a' <= next && next <= 'z'):
			j := i + 1
			for j < len(s) && (s[j] == '_' || ('A' <= s[j] && s[j] <= 'Z') || ('a' <= s[j] && s[j] <= 'z') || ('0' <= s[j] && s[j] <= '9')) {
				j++
			}
			i = j - 1
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// ImageProblem returns why an image reference is not pinned, or "" when it is: it needs a tag other than
// latest, or a digest.
func ImageProblem(ref string) string {
	if ref == "" {
		return "no image"
	}
	if strings.Contains(ref, "@sha256:") {
		return ""
	}
	name := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return fmt.Sprintf("image %q has no tag", ref)
	case tag == "latest":
		return fmt.Sprintf("image %q uses the latest tag", ref)
	case strings.Contains(tag, "$"):
		return fmt.Sprintf("image %q takes its tag from a variable", ref)
	}
	return ""
}

// ComposeCheck is one named check of a Compose file.
type ComposeCheck struct {
	Name  string
	Check func(r Repo, c *Compose) []string
}

// ComposeChecks returns every check of the Compose file.
func ComposeChecks() []ComposeCheck {
	return []ComposeCheck{
		{"no version key", checkComposeVersion},
		{"long-running services present", checkComposeServices},
		{"images pinned", checkComposeImages},
		{"ports on loopback", checkComposePorts},
		{"published ports are served", checkComposeServedPorts},
		{"env complete", checkComposeEnv},
		{"addresses name dependencies", checkComposeAddresses},
		{"kafka kraft listeners", checkComposeKafka},
		{"credentials match stores", checkComposeCredentials},
		{"depends_on valid", checkComposeDependsOn},
		{"jobs gate services", checkComposeJobs},
		{"build targets exist", checkComposeBuilds},
		{"healthchecks runnable", checkComposeHealthchecks},
		{"infrastructure images", checkComposeInfra},
		{"mounts exist", checkComposeMounts},
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// builtService returns the SERVICE build arg of a service built from services/Dockerfile.
func builtService(s ComposeService) (string, bool) {
	if s.Build == nil || s.Build.Dockerfile != "services/Dockerfile" {
		return "", false
	}
	name, ok := s.Build.Args["SERVICE"]
	return name, ok
}

// isMigrateJob reports whether a service runs the migrate command of the contract.
func isMigrateJob(k Contract, s ComposeService) bool {
	name, ok := builtService(s)
	return ok && name == k.Migrate && slices.Equal(s.Command, k.MigrateArgs)
}

// isTopicsJob reports whether a service runs the topic creation script.
func isTopicsJob(s ComposeService) bool {
	return slices.ContainsFunc(slices.Concat(s.Entrypoint, s.Command), func(w string) bool {
		return strings.HasSuffix(w, "create-topics.sh")
	})
}

func checkComposeVersion(_ Repo, c *Compose) []string {
	if c.Version != nil {
		return []string{"top-level version key is obsolete in the Compose spec: remove it"}
	}
	return nil
}

func checkComposeServices(r Repo, c *Compose) []string {
	var out []string
	modules, err := r.ServiceModules()
	if err != nil {
		return []string{err.Error()}
	}
	for _, m := range modules {
		if _, ok := r.Contract.Services[m]; !ok && !slices.Contains(r.Contract.NotDeployed, m) {
			out = append(out, fmt.Sprintf("services/%s is neither a long-running service nor listed as not deployed", m))
		}
	}
	for _, name := range r.Contract.ServiceNames() {
		s, ok := c.Services[name]
		if !ok {
			out = append(out, fmt.Sprintf("long-running service %s is missing", name))
			continue
		}
		if built, ok := builtService(s); !ok || built != name {
			out = append(out, fmt.Sprintf("%s is not built from services/Dockerfile with SERVICE=%s", name, name))
		}
	}
	if !slices.ContainsFunc(sortedKeys(c.Services), func(n string) bool { return isMigrateJob(r.Contract, c.Services[n]) }) {
		out = append(out, fmt.Sprintf("no migrate job running %s %s", r.Contract.Migrate, strings.Join(r.Contract.MigrateArgs, " ")))
	}
	return out
}

func checkComposeImages(_ Repo, c *Compose) []string {
	var out []string
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if s.Image == "" && s.Build != nil {
			continue
		}
		if p := ImageProblem(s.Image); p != "" {
			out = append(out, fmt.Sprintf("%s: %s", name, p))
		}
	}
	return out
}

func checkComposePorts(_ Repo, c *Compose) []string {
	var out []string
	seen := map[string]string{}
	for _, name := range sortedKeys(c.Services) {
		for _, p := range c.Services[name].Ports {
			if p.HostIP != "127.0.0.1" {
				out = append(out, fmt.Sprintf("%s: port %q is not bound to 127.0.0.1", name, p.Raw))
			}
			if p.Published == "" {
				continue
			}
			if other, dup := seen[p.Published]; dup {
				out = append(out, fmt.Sprintf("%s: host port %s is also published by %s", name, p.Published, other))
			}
			seen[p.Published] = name
		}
	}
	return out
}

// listenPort returns the port of a listen address such as ":8080".
func listenPort(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	return addr[i+1:]
}

func checkComposeServedPorts(r Repo, c *Compose) []string {
	var out []string
	for _, name := range r.Contract.ServiceNames() {
		s, ok := c.Services[name]
		if !ok {
			continue
		}
		served := map[string]bool{}
		for _, key := range []string{"HTTP_ADDR", "ADMIN_ADDR"} {
			if v, ok := s.Environment.Get(key); ok {
				served[listenPort(v)] = true
			}
		}
		if admin, _ := s.Environment.Get("ADMIN_ADDR"); listenPort(admin) != fmt.Sprint(r.Contract.AdminPort) {
			out = append(out, fmt.Sprintf("%s: ADMIN_ADDR %q is not on port %d", name, admin, r.Contract.AdminPort))
		}
		if want, ok := r.Contract.HTTPPorts[name]; ok {
			if v, _ := s.Environment.Get("HTTP_ADDR"); listenPort(v) != fmt.Sprint(want) {
				out = append(out, fmt.Sprintf("%s: HTTP_ADDR %q is not on port %d", name, v, want))
			}
		}
		for _, p := range s.Ports {
			if !served[p.Target] {
				out = append(out, fmt.Sprintf("%s: publishes container port %s, which the service does not listen on", name, p.Target))
			}
		}
	}
	return out
}

func checkComposeEnv(r Repo, c *Compose) []string {
	var out []string
	need := map[string][]string{}
	for _, name := range r.Contract.ServiceNames() {
		need[name] = r.Contract.Services[name]
	}
	for _, name := range sortedKeys(c.Services) {
		if isMigrateJob(r.Contract, c.Services[name]) {
			need[name] = r.Contract.MigrateEnv
		}
	}
	for _, name := range sortedKeys(need) {
		s, ok := c.Services[name]
		if !ok {
			continue
		}
		for _, key := range need[name] {
			if _, ok := s.Environment.Get(key); !ok {
				out = append(out, fmt.Sprintf("%s: env %s is not set", name, key))
			}
		}
	}
	return out
}

// addressHosts returns the host names an address-valued env var points at.
func addressHosts(key, value string) []string {
	var hosts []string
	switch key {
	case "KAFKA_BROKERS":
		for _, b := range strings.Split(value, ",") {
			if b = strings.TrimSpace(b); b != "" {
				host, _, _ := strings.Cut(b, ":")
				hosts = append(hosts, host)
			}
		}
	case "CLICKHOUSE_ADDR":
		host, _, _ := strings.Cut(value, ":")
		hosts = append(hosts, host)
	case "DATABASE_URL", "SCHEMA_REGISTRY_URL", "OTEL_EXPORTER_OTLP_ENDPOINT":
		_, rest, ok := strings.Cut(value, "://")
		if !ok {
			return []string{value}
		}
		hostPort, _, _ := strings.Cut(rest, "/")
		if i := strings.LastIndexByte(hostPort, '@'); i >= 0 {
			hostPort = hostPort[i+1:]
		}
		host, _, _ := strings.Cut(hostPort, ":")
		hosts = append(hosts, host)
	}
	return hosts
}

func checkComposeAddresses(_ Repo, c *Compose) []string {
	var out []string
	keys := []string{"KAFKA_BROKERS", "CLICKHOUSE_ADDR", "DATABASE_URL", "SCHEMA_REGISTRY_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		for _, key := range keys {
			value, ok := s.Environment.Get(key)
			if !ok {
				continue
			}
			for _, host := range addressHosts(key, value) {
				if _, ok := c.Services[host]; !ok {
					out = append(out, fmt.Sprintf("%s: %s points at %q, which is not a service", name, key, host))
					continue
				}
				if _, ok := s.DependsOn[host]; !ok {
					out = append(out, fmt.Sprintf("%s: uses %s (%s) but does not depend on it", name, host, key))
				}
			}
		}
	}
	return out
}

func checkComposeKafka(_ Repo, c *Compose) []string {
	kafka, ok := c.Services["kafka"]
	if !ok {
		return []string{"no kafka service"}
	}
	var out []string
	env := kafka.Environment
	roles, _ := env.Get("KAFKA_PROCESS_ROLES")
	if !strings.Contains(roles, "controller") || !strings.Contains(roles, "broker") {
		out = append(out, fmt.Sprintf("kafka: KAFKA_PROCESS_ROLES %q is not a KRaft broker+controller", roles))
	}
	if _, zk := env.Get("KAFKA_ZOOKEEPER_CONNECT"); zk {
		out = append(out, "kafka: ZooKeeper is configured; use KRaft")
	}
	if _, ok := env.Get("KAFKA_CONTROLLER_QUORUM_VOTERS"); !ok {
		out = append(out, "kafka: KAFKA_CONTROLLER_QUORUM_VOTERS is not set")
	}
	for _, key := range []string{"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"} {
		if v, _ := env.Get(key); v != "1" {
			out = append(out, fmt.Sprintf("kafka: %s must be 1 on a single node (got %q)", key, v))
		}
	}
	advertised := map[string]bool{}
	hostPorts := map[string]bool{}
	for _, p := range kafka.Ports {
		hostPorts[p.Published] = true
	}
	adv, _ := env.Get("KAFKA_ADVERTISED_LISTENERS")
	reachableFromHost := false
	for _, l := range strings.Split(adv, ",") {
		_, addr, ok := strings.Cut(strings.TrimSpace(l), "://")
		if !ok {
			continue
		}
		advertised[addr] = true
		host, port, _ := strings.Cut(addr, ":")
		if (host == "127.0.0.1" || host == "localhost") && hostPorts[port] {
			reachableFromHost = true
		}
	}
	if !reachableFromHost {
		out = append(out, "kafka: no advertised listener on 127.0.0.1 matches a published port (host clients cannot connect)")
	}
	for _, name := range sortedKeys(c.Services) {
		brokers, ok := c.Services[name].Environment.Get("KAFKA_BROKERS")
		if !ok {
			continue
		}
		for _, b := range strings.Split(brokers, ",") {
			if b = strings.TrimSpace(b); !advertised[b] {
				out = append(out, fmt.Sprintf("%s: broker %q is not one of kafka's advertised listeners", name, b))
			}
		}
	}
	return out
}

func checkComposeCredentials(_ Repo, c *Compose) []string {
	var out []string
	pg, hasPG := c.Services["postgres"]
	ch, hasCH := c.Services["clickhouse"]
	for _, name := range sortedKeys(c.Services) {
		env := c.Services[name].Environment
		if url, ok := env.Get("DATABASE_URL"); ok && hasPG {
			_, rest, _ := strings.Cut(url, "://")
			userinfo, hostPath, _ := strings.Cut(rest, "@")
			user, password, _ := strings.Cut(userinfo, ":")
			_, db, _ := strings.Cut(hostPath, "/")
			db, _, _ = strings.Cut(db, "?")
			for _, pair := range [][3]string{{"user", user, "POSTGRES_USER"}, {"password", password, "POSTGRES_PASSWORD"}, {"database", db, "POSTGRES_DB"}} {
				if want, _ := pg.Environment.Get(pair[2]); pair[1] != want {
					out = append(out, fmt.Sprintf("%s: DATABASE_URL %s does not match postgres %s", name, pair[0], pair[2]))
				}
			}
		}
		if _, ok := env.Get("CLICKHOUSE_ADDR"); ok && hasCH {
			for _, pair := range [][2]string{{"CLICKHOUSE_USER", "CLICKHOUSE_USER"}, {"CLICKHOUSE_PASSWORD", "CLICKHOUSE_PASSWORD"}, {"CLICKHOUSE_DATABASE", "CLICKHOUSE_DB"}} {
				got, _ := env.Get(pair[0])
				if want, _ := ch.Environment.Get(pair[1]); got != want {
					out = append(out, fmt.Sprintf("%s: %s does not match clickhouse %s", name, pair[0], pair[1]))
				}
			}
		}
	}
	return out
}

func checkComposeDependsOn(_ Repo, c *Compose) []string {
	var out []string
	for _, name := range sortedKeys(c.Services) {
		for _, dep := range sortedKeys(c.Services[name].DependsOn) {
			cond := c.Services[name].DependsOn[dep]
			target, ok := c.Services[dep]
			if !ok {
				out = append(out, fmt.Sprintf("%s: depends on %s, which is not a service", name, dep))
				continue
			}
			switch cond {
			case "service_started":
			case "service_healthy":
				if target.Healthcheck == nil || target.Healthcheck.Disable || len(target.Healthcheck.Test) == 0 {
					out = append(out, fmt.Sprintf("%s: waits for %s to be healthy, but %s has no healthcheck", name, dep, dep))
				}
			case "service_completed_successfully":
				if target.Restart != "" && target.Restart != "no" {
					out = append(out, fmt.Sprintf("%s: waits for %s to complete, but %s restarts (%s)", name, dep, dep, target.Restart))
				}
			default:
				out = append(out, fmt.Sprintf("%s: unknown depends_on condition %q for %s", name, cond, dep))
			}
		}
	}
	return out
}

func checkComposeJobs(r Repo, c *Compose) []string {
	var migrate, topics []string
	for _, name := range sortedKeys(c.Services) {
		if isMigrateJob(r.Contract, c.Services[name]) {
			migrate = append(migrate, name)
		}
		if isTopicsJob(c.Services[name]) {
			topics = append(topics, name)
		}
	}
	var out []string
	if len(topics) == 0 {
		out = append(out, "no topics job running create-topics.sh")
	}
	for _, name := range r.Contract.ServiceNames() {
		s, ok := c.Services[name]
		if !ok {
			continue
		}
		for _, job := range slices.Concat(migrate, topics) {
			if s.DependsOn[job] != "service_completed_successfully" {
				out = append(out, fmt.Sprintf("%s: does not wait for job %s to complete successfully", name, job))
			}
		}
	}
	return out
}

func checkComposeBuilds(r Repo, c *Compose) []string {
	var out []string
	uses, err := r.WorkspaceUses()
	if err != nil {
		return []string{err.Error()}
	}
	for _, name := range sortedKeys(c.Services) {
		b := c.Services[name].Build
		if b == nil {
			continue
		}
		if b.Dockerfile != "services/Dockerfile" || (b.Context != "." && b.Context != "./") {
			out = append(out, fmt.Sprintf("%s: build must use context . and dockerfile services/Dockerfile", name))
			continue
		}
		svc, ok := b.Args["SERVICE"]
		if !ok || svc == "" {
			out = append(out, fmt.Sprintf("%s: build has no SERVICE arg", name))
			continue
		}
		dir := "services/" + svc
		if !r.exists(dir + "/go.mod") {
			out = append(out, fmt.Sprintf("%s: SERVICE=%s but %s is not a Go module", name, svc, dir))
		}
		if !slices.Contains(uses, dir) {
			out = append(out, fmt.Sprintf("%s: SERVICE=%s but go.work does not use ./%s", name, svc, dir))
		}
	}
	return out
}

func checkComposeHealthchecks(_ Repo, c *Compose) []string {
	var out []string
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if _, built := builtService(s); built && s.Healthcheck != nil && !s.Healthcheck.Disable {
			out = append(out, fmt.Sprintf("%s: distroless image has no shell or curl for a healthcheck; probe the admin port instead", name))
		}
		if s.Healthcheck != nil && len(s.Healthcheck.Test) > 0 && s.Healthcheck.Test[0] != "CMD" && s.Healthcheck.Test[0] != "CMD-SHELL" && s.Healthcheck.Test[0] != "NONE" {
			out = append(out, fmt.Sprintf("%s: healthcheck test must start with CMD or CMD-SHELL", name))
		}
	}
	return out
}

// imageVersion splits "repo:1.2.3-x" into repo and the numeric version fields of its tag.
func imageVersion(ref string) (string, []int) {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, nil
	}
	var nums []int
	for _, f := range strings.Split(strings.SplitN(ref[i+1:], "-", 2)[0], ".") {
		var n int
		if _, err := fmt.Sscanf(f, "%d", &n); err != nil {
			break
		}
		nums = append(nums, n)
	}
	return ref[:i], nums
}

func checkComposeInfra(_ Repo, c *Compose) []string {
	type want struct {
		repo     string
		min, max []int // inclusive bounds on the leading version fields; nil: any
		volume   bool
	}
	infra := map[string]want{
		"kafka":           {repo: "apache/kafka", min: []int{3, 9}, volume: true},
		"schema-registry": {repo: "confluentinc/cp-schema-registry"},
		"postgres":        {repo: "postgres", min: []int{15}, max: []int{15}, volume: true},
		"clickhouse":      {repo: "clickhouse/clickhouse-server", min: []int{24}, max: []int{24}, volume: true},
	}
	var out []string
	for _, name := range sortedKeys(infra) {
		w := infra[name]
		s, ok := c.Services[name]
		if !ok {
			out = append(out, fmt.Sprintf("no %s service", name))
			continue
		}
		repo, version := imageVersion(s.Image)
		if repo != w.repo {
			out = append(out, fmt.Sprintf("%s: image %q is not %s", name, s.Image, w.repo))
		}
		if w.min != nil && (len(version) < len(w.min) || slices.Compare(version[:len(w.min)], w.min) < 0) {
			out = append(out, fmt.Sprintf("%s: image %q is older than %v", name, s.Image, w.min))
		}
		if w.max != nil && (len(version) < len(w.max) || slices.Compare(version[:len(w.max)], w.max) > 0) {
			out = append(out, fmt.Sprintf("%s: image %q is newer than %v", name, s.Image, w.max))
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			out = append(out, fmt.Sprintf("%s: no healthcheck", name))
		}
		if w.volume && !slices.ContainsFunc(s.Volumes, func(m Mount) bool { return m.Type == "volume" && m.Source != "" }) {
			out = append(out, fmt.Sprintf("%s: data is not kept in a named volume", name))
		}
	}
	if pg, ok := c.Services["postgres"]; ok && pg.Healthcheck != nil && !slices.Contains(pg.Healthcheck.Test, "pg_isready") {
		out = append(out, "postgres: healthcheck does not use pg_isready")
	}
	return out
}

func checkComposeMounts(r Repo, c *Compose) []string {
	var out []string
	for _, name := range sortedKeys(c.Services) {
		for _, m := range c.Services[name].Volumes {
			switch {
			case m.Type == "bind" && !r.exists(m.Source):
				out = append(out, fmt.Sprintf("%s: bind mount source %s does not exist", name, m.Source))
			case m.Type == "volume" && m.Source != "":
				if _, ok := c.Volumes[m.Source]; !ok {
					out = append(out, fmt.Sprintf("%s: volume %s is not declared under volumes", name, m.Source))
				}
			}
		}
	}
	return out
}
