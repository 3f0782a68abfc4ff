package deploycheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Object is the identity every Kubernetes object carries.
type Object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   Meta   `yaml:"metadata"`
	File       string `yaml:"-"`
	Applied    bool   `yaml:"-"` // listed in kustomization.yaml
}

// String names the object for problem reports.
func (o Object) String() string { return fmt.Sprintf("%s %s (%s)", o.Kind, o.Metadata.Name, o.File) }

// Meta is an object's metadata.
type Meta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

// LabelSelector selects pods by labels.
type LabelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// PodTemplate is a workload's pod template.
type PodTemplate struct {
	Metadata Meta    `yaml:"metadata"`
	Spec     PodSpec `yaml:"spec"`
}

// PodSpec is the part of a pod spec the checks read.
type PodSpec struct {
	TerminationGracePeriodSeconds *int            `yaml:"terminationGracePeriodSeconds"`
	RestartPolicy                 string          `yaml:"restartPolicy"`
	SecurityContext               SecurityContext `yaml:"securityContext"`
	Containers                    []Container     `yaml:"containers"`
	InitContainers                []Container     `yaml:"initContainers"`
	Volumes                       []Volume        `yaml:"volumes"`
}

// SecurityContext holds the pod- and container-level security settings the checks read.
type SecurityContext struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	RunAsUser                *int  `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
	SeccompProfile struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

// Container is the part of a container spec the checks read.
type Container struct {
	Name    string          `yaml:"name"`
	Image   string          `yaml:"image"`
	Command []string        `yaml:"command"`
	Args    []string        `yaml:"args"`
	Ports   []ContainerPort `yaml:"ports"`
	Env     []EnvVar        `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	ReadinessProbe  *Probe          `yaml:"readinessProbe"`
	LivenessProbe   *Probe          `yaml:"livenessProbe"`
	SecurityContext SecurityContext `yaml:"securityContext"`
}

// ContainerPort is a port a container declares.
type ContainerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

// ServicePort is a port a Service exposes.
type ServicePort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort string `yaml:"targetPort"`
}

// EnvVar is one container env entry.
type EnvVar struct {
	Name      string  `yaml:"name"`
	Value     *string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef    *KeyRef `yaml:"secretKeyRef"`
		ConfigMapKeyRef *KeyRef `yaml:"configMapKeyRef"`
	} `yaml:"valueFrom"`
}

// KeyRef names one key of a ConfigMap or Secret.
type KeyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

// Probe is a container probe.
type Probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// Volume is a pod volume.
type Volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
}

// Workload is a Deployment or a Job: an object with a pod template.
type Workload struct {
	Object `yaml:",inline"`
	Spec   struct {
		Replicas     *int          `yaml:"replicas"`
		Selector     LabelSelector `yaml:"selector"`
		BackoffLimit *int          `yaml:"backoffLimit"`
		Template     PodTemplate   `yaml:"template"`
	} `yaml:"spec"`
}

// ServiceObject is a Kubernetes Service.
type ServiceObject struct {
	Object `yaml:",inline"`
	Spec   struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []ServicePort     `yaml:"ports"`
	} `yaml:"spec"`
}

// SelectorObject is an object that selects pods: a PodDisruptionBudget.
type SelectorObject struct {
	Object `yaml:",inline"`
	Spec   struct {
		Selector LabelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

// Autoscaler is a HorizontalPodAutoscaler.
type Autoscaler struct {
	Object `yaml:",inline"`
	Spec   struct {
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas *int `yaml:"minReplicas"`
		MaxReplicas int  `yaml:"maxReplicas"`
	} `yaml:"spec"`
}

// DataObject is a ConfigMap or Secret.
type DataObject struct {
	Object     `yaml:",inline"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

// Keys returns the object's data keys.
func (d DataObject) Keys() map[string]bool {
	keys := map[string]bool{}
	for k := range maps.Keys(d.Data) {
		keys[k] = true
	}
	for k := range maps.Keys(d.StringData) {
		keys[k] = true
	}
	return keys
}

// Kustomization is the part of kustomization.yaml the checks read.
type Kustomization struct {
	Namespace          string   `yaml:"namespace"`
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

// Manifests is a parsed k8s/ directory.
type Manifests struct {
	Files         map[string]bool // every file name in the directory
	Kustomization *Kustomization
	Objects       []Object
	Workloads     []Workload // Deployments and Jobs
	Services      []ServiceObject
	PDBs          []SelectorObject
	HPAs          []Autoscaler
	ConfigMaps    []DataObject
	Secrets       []DataObject
}

// KustomizationFile is the kustomization's file name.
const KustomizationFile = "kustomization.yaml"

// LoadManifests reads every file of a directory and parses its YAML files.
func LoadManifests(dir string) (*Manifests, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing manifests: %w", err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading manifest: %w", err)
		}
		files[e.Name()] = b
	}
	return ParseManifests(files)
}

// isYAML reports whether a file name is a YAML file.
func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// ParseManifests parses a directory's files by name: kustomization.yaml, then every document of every
// other YAML file. Objects from files the kustomization lists are marked Applied.
func ParseManifests(files map[string][]byte) (*Manifests, error) {
	m := &Manifests{Files: map[string]bool{}}
	for name := range files {
		m.Files[name] = true
	}
	applied := map[string]bool{}
	if src, ok := files[KustomizationFile]; ok {
		var k Kustomization
		if err := yaml.Unmarshal(src, &k); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", KustomizationFile, err)
		}
		m.Kustomization = &k
		for _, r := range k.Resources {
			applied[r] = true
		}
	}
	for _, name := range sortedKeys(files) {
		if !isYAML(name) || name == KustomizationFile {
			continue
		}
		if err := m.parseFile(name, files[name], applied[name]); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Manifests) parseFile(name string, src []byte, applied bool) error {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for i := 1; ; i++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("parsing %s document %d: %w", name, i, err)
		}
		if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
			continue
		}
		var obj Object
		if err := doc.Decode(&obj); err != nil {
			return fmt.Errorf("decoding %s document %d: %w", name, i, err)
		}
		obj.File, obj.Applied = name, applied
		m.Objects = append(m.Objects, obj)
		if err := m.decodeKind(obj, &doc); err != nil {
			return fmt.Errorf("decoding %s document %d: %w", name, i, err)
		}
	}
}

// decodeKind decodes an object again as its typed kind.
func (m *Manifests) decodeKind(obj Object, doc *yaml.Node) error {
	decode := func(v interface{ setObject(Object) }) error {
		if err := doc.Decode(v); err != nil {
			return fmt.Errorf("decoding %s: %w", obj.Kind, err)
		}
		v.setObject(obj)
		return nil
	}
	switch obj.Kind {
	case "Deployment", "Job":
		var w Workload
		if err := decode(&w); err != nil {
			return err
		}
		m.Workloads = append(m.Workloads, w)
	case "Service":
		var s ServiceObject
		if err := decode(&s); err != nil {
			return err
		}
		m.Services = append(m.Services, s)
	case "PodDisruptionBudget":
		var p SelectorObject
		if err := decode(&p); err != nil {
			return err
		}
		m.PDBs = append(m.PDBs, p)
	case "HorizontalPodAutoscaler":
		var h Autoscaler
		if err := decode(&h); err != nil {
			return err
		}
		m.HPAs = append(m.HPAs, h)
	case "ConfigMap", "Secret":
		var d DataObject
		if err := decode(&d); err != nil {
			return err
		}
		if obj.Kind == "ConfigMap" {
			m.ConfigMaps = append(m.ConfigMaps, d)
		} else {
			m.Secrets = append(m.Secrets, d)
		}
	}
	return nil
}

func (o *Object) setObject(obj Object) { *o = obj }

// Deployment returns the applied Deployment of that name.
func (m *Manifests) Deployment(name string) (Workload, bool) {
	for _, w := range m.Workloads {
		if w.Kind == "Deployment" && w.Metadata.Name == name && w.Applied {
			return w, true
		}
	}
	return Workload{}, false
}

// containers returns a pod spec's init and app containers.
func (p PodSpec) containers() []Container { return slices.Concat(p.InitContainers, p.Containers) }

// K8sCheck is one named check of the k8s/ manifests.
type K8sCheck struct {
	Name  string
	Check func(k Contract, m *Manifests) []string
}

// K8sChecks returns every check of the k8s/ manifests.
func K8sChecks() []K8sCheck {
	return []K8sCheck{
		{"objects have identity", checkK8sIdentity},
		{"namespace", checkK8sNamespace},
		{"kustomization lists every manifest", checkK8sKustomization},
		{"deployments present", checkK8sDeployments},
		{"probes", checkK8sProbes},
		{"resources", checkK8sResources},
		{"security context", checkK8sSecurity},
		{"no inline secrets", checkK8sSecrets},
		{"env complete", checkK8sEnv},
		{"selectors match pods", checkK8sSelectors},
		{"images pinned", checkK8sImages},
		{"grace periods", checkK8sGrace},
		{"jobs", checkK8sJobs},
		{"volumes resolve", checkK8sVolumes},
	}
}

func checkK8sIdentity(_ Contract, m *Manifests) []string {
	var out []string
	for _, o := range m.Objects {
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			out = append(out, fmt.Sprintf("%s: object without apiVersion, kind or metadata.name (%q %q %q)", o.File, o.APIVersion, o.Kind, o.Metadata.Name))
		}
	}
	return out
}

func checkK8sNamespace(k Contract, m *Manifests) []string {
	var out []string
	found := false
	for _, o := range m.Objects {
		if o.Kind == "Namespace" {
			found = found || (o.Metadata.Name == k.Namespace && o.Applied)
			continue
		}
		if o.Metadata.Namespace != k.Namespace {
			out = append(out, fmt.Sprintf("%s: namespace %q, want %q", o, o.Metadata.Namespace, k.Namespace))
		}
	}
	if !found {
		out = append(out, fmt.Sprintf("no applied Namespace %s", k.Namespace))
	}
	if m.Kustomization != nil && m.Kustomization.Namespace != k.Namespace {
		out = append(out, fmt.Sprintf("kustomization namespace %q, want %q", m.Kustomization.Namespace, k.Namespace))
	}
	return out
}

func checkK8sKustomization(_ Contract, m *Manifests) []string {
	if m.Kustomization == nil {
		return []string{"no " + KustomizationFile}
	}
	var out []string
	listed := map[string]bool{}
	for _, r := range m.Kustomization.Resources {
		listed[r] = true
		if !m.Files[r] {
			out = append(out, fmt.Sprintf("kustomization lists %s, which does not exist", r))
		}
	}
	for _, g := range m.Kustomization.ConfigMapGenerator {
		for _, f := range g.Files {
			_, path, ok := strings.Cut(f, "=")
			if !ok {
				path = f
			}
			if !m.Files[path] {
				out = append(out, fmt.Sprintf("configMapGenerator %s reads %s, which does not exist", g.Name, path))
			}
		}
	}
	for _, name := range sortedKeys(m.Files) {
		if !isYAML(name) || name == KustomizationFile {
			continue
		}
		example := strings.Contains(name, ".example.")
		switch {
		case example && listed[name]:
			out = append(out, fmt.Sprintf("kustomization applies the template %s", name))
		case !example && !listed[name]:
			out = append(out, fmt.Sprintf("%s is not listed in %s", name, KustomizationFile))
		}
	}
	for _, o := range m.Objects {
		if o.Kind == "Secret" && o.Applied {
			out = append(out, fmt.Sprintf("%s: a Secret is applied from git; keep only a template", o))
		}
	}
	return out
}

func checkK8sDeployments(k Contract, m *Manifests) []string {
	var out []string
	for _, name := range k.ServiceNames() {
		d, ok := m.Deployment(name)
		if !ok {
			out = append(out, fmt.Sprintf("no Deployment %s", name))
			continue
		}
		if !slices.ContainsFunc(m.PDBs, func(p SelectorObject) bool { return p.Applied && selects(p.Spec.Selector.MatchLabels, d) }) {
			out = append(out, fmt.Sprintf("Deployment %s has no PodDisruptionBudget", name))
		}
		if port, ok := k.HTTPPorts[name]; ok {
			exposed := slices.ContainsFunc(m.Services, func(s ServiceObject) bool {
				return s.Applied && selects(s.Spec.Selector, d) && slices.ContainsFunc(s.Spec.Ports, func(p ServicePort) bool { return p.Port == port })
			})
			if !exposed {
				out = append(out, fmt.Sprintf("Deployment %s has no Service on port %d", name, port))
			}
		}
	}
	if !slices.ContainsFunc(m.HPAs, func(h Autoscaler) bool {
		return h.Applied && h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == "gateway"
	}) {
		out = append(out, "no HorizontalPodAutoscaler for Deployment gateway")
	}
	return out
}

// containerPort resolves a probe or Service port (a number or a port name) against a container.
func containerPort(c Container, port string) (int, bool) {
	if n, err := strconv.Atoi(port); err == nil {
		return n, true
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func checkK8sProbes(k Contract, m *Manifests) []string {
	var out []string
	for _, w := range m.Workloads {
		if w.Kind != "Deployment" {
			continue
		}
		for _, c := range w.Spec.Template.Spec.Containers {
			for _, p := range []struct {
				kind, path string
				probe      *Probe
			}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					out = append(out, fmt.Sprintf("%s container %s: no HTTP %s", w.Object, c.Name, p.kind))
					continue
				}
				if p.probe.HTTPGet.Path != p.path {
					out = append(out, fmt.Sprintf("%s container %s: %s path %q, want %s", w.Object, c.Name, p.kind, p.probe.HTTPGet.Path, p.path))
				}
				if port, ok := containerPort(c, p.probe.HTTPGet.Port); !ok || port != k.AdminPort {
					out = append(out, fmt.Sprintf("%s container %s: %s port %q is not the admin port %d", w.Object, c.Name, p.kind, p.probe.HTTPGet.Port, k.AdminPort))
				}
			}
		}
	}
	return out
}

func checkK8sResources(_ Contract, m *Manifests) []string {
	var out []string
	for _, w := range m.Workloads {
		for _, c := range w.Spec.Template.Spec.containers() {
			for _, r := range []string{"cpu", "memory"} {
				if c.Resources.Requests[r] == "" {
					out = append(out, fmt.Sprintf("%s container %s: no %s request", w.Object, c.Name, r))
				}
				if c.Resources.Limits[r] == "" {
					out = append(out, fmt.Sprintf("%s container %s: no %s limit", w.Object, c.Name, r))
				}
			}
		}
	}
	return out
}

func checkK8sSecurity(_ Contract, m *Manifests) []string {
	var out []string
	isTrue := func(b *bool) bool { return b != nil && *b }
	for _, w := range m.Workloads {
		pod := w.Spec.Template.Spec.SecurityContext
		for _, c := range w.Spec.Template.Spec.containers() {
			sc := c.SecurityContext
			where := fmt.Sprintf("%s container %s", w.Object, c.Name)
			nonRoot := (isTrue(pod.RunAsNonRoot) && sc.RunAsNonRoot == nil) || isTrue(sc.RunAsNonRoot)
			if !nonRoot {
				out = append(out, where+": runAsNonRoot is not true")
			}
			user := sc.RunAsUser
			if user == nil {
				user = pod.RunAsUser
			}
			if user != nil && *user == 0 {
				out = append(out, where+": runAsUser is 0")
			}
			if !isTrue(sc.ReadOnlyRootFilesystem) {
				out = append(out, where+": readOnlyRootFilesystem is not true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				out = append(out, where+": allowPrivilegeEscalation is not false")
			}
			if !slices.Contains(sc.Capabilities.Drop, "ALL") {
				out = append(out, where+": capabilities do not drop ALL")
			}
			if sc.SeccompProfile.Type != "RuntimeDefault" && pod.SeccompProfile.Type != "RuntimeDefault" {
				out = append(out, where+": no RuntimeDefault seccomp profile")
			}
		}
	}
	return out
}

func checkK8sSecrets(k Contract, m *Manifests) []string {
	var out []string
	for _, w := range m.Workloads {
		for _, c := range w.Spec.Template.Spec.containers() {
			for _, e := range c.Env {
				if k.IsSecretName(e.Name) && e.Value != nil {
					out = append(out, fmt.Sprintf("%s container %s: env %s has an inline value; use a secretKeyRef", w.Object, c.Name, e.Name))
				}
				if k.IsSecretName(e.Name) && e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					out = append(out, fmt.Sprintf("%s container %s: env %s comes from a ConfigMap; use a Secret", w.Object, c.Name, e.Name))
				}
			}
		}
	}
	for _, cm := range m.ConfigMaps {
		for _, key := range sortedKeys(cm.Keys()) {
			if k.IsSecretName(key) {
				out = append(out, fmt.Sprintf("%s: holds %s; secrets belong in a Secret", cm.Object, key))
			}
		}
	}
	return out
}

// envSources returns the env var names a container receives and the problems with their sources: every
// ConfigMap and Secret it references must exist (Secrets: in a template), with the referenced keys.
func envSources(m *Manifests, where string, c Container) (map[string]bool, []string) {
	have := map[string]bool{}
	var out []string
	find := func(list []DataObject, name string) (DataObject, bool) {
		i := slices.IndexFunc(list, func(d DataObject) bool { return d.Metadata.Name == name })
		if i < 0 {
			return DataObject{}, false
		}
		return list[i], true
	}
	for _, from := range c.EnvFrom {
		var (
			d    DataObject
			ok   bool
			kind string
		)
		switch {
		case from.ConfigMapRef != nil:
			d, ok = find(m.ConfigMaps, from.ConfigMapRef.Name)
			kind = "ConfigMap " + from.ConfigMapRef.Name
		case from.SecretRef != nil:
			d, ok = find(m.Secrets, from.SecretRef.Name)
			kind = "Secret " + from.SecretRef.Name
		}
		if !ok {
			out = append(out, fmt.Sprintf("%s: envFrom %s, which no manifest defines", where, kind))
			continue
		}
		maps.Copy(have, d.Keys())
	}
	for _, e := range c.Env {
		have[e.Name] = true
		if e.ValueFrom == nil {
			continue
		}
		for _, ref := range []struct {
			r    *KeyRef
			list []DataObject
			kind string
		}{{e.ValueFrom.SecretKeyRef, m.Secrets, "Secret"}, {e.ValueFrom.ConfigMapKeyRef, m.ConfigMaps, "ConfigMap"}} {
			if ref.r == nil {
				continue
			}
			if d, ok := find(ref.list, ref.r.Name); !ok || !d.Keys()[ref.r.Key] {
				out = append(out, fmt.Sprintf("%s: env %s reads %s %s key %s, which no manifest defines", where, e.Name, ref.kind, ref.r.Name, ref.r.Key))
			}
		}
	}
	return have, out
}

func checkK8sEnv(k Contract, m *Manifests) []string {
	var out []string
	for _, w := range m.Workloads {
		need, ok := k.Services[w.Metadata.Name]
		if w.Kind == "Job" {
			need, ok = k.MigrateEnv, isMigrateContainer(k, w)
		}
		for _, c := range w.Spec.Template.Spec.containers() {
			where := fmt.Sprintf("%s container %s", w.Object, c.Name)
			have, problems := envSources(m, where, c)
			out = append(out, problems...)
			if !ok {
				continue
			}
			for _, key := range need {
				if !have[key] {
					out = append(out, fmt.Sprintf("%s: env %s is not set", where, key))
				}
			}
		}
	}
	return out
}

// selects reports whether a non-empty selector matches a workload's pod labels.
func selects(selector map[string]string, w Workload) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if w.Spec.Template.Metadata.Labels[k] != v {
			return false
		}
	}
	return true
}

func checkK8sSelectors(_ Contract, m *Manifests) []string {
	var out []string
	var deployments []Workload
	for _, w := range m.Workloads {
		if w.Kind == "Deployment" {
			deployments = append(deployments, w)
			if !selects(w.Spec.Selector.MatchLabels, w) {
				out = append(out, fmt.Sprintf("%s: selector %v does not match its pod labels %v", w.Object, w.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels))
			}
		}
	}
	matching := func(sel map[string]string) []Workload {
		var ws []Workload
		for _, d := range deployments {
			if selects(sel, d) {
				ws = append(ws, d)
			}
		}
		return ws
	}
	for _, s := range m.Services {
		targets := matching(s.Spec.Selector)
		if len(targets) == 0 {
			out = append(out, fmt.Sprintf("%s: selector %v matches no Deployment's pods", s.Object, s.Spec.Selector))
			continue
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target == "" {
				target = strconv.Itoa(p.Port)
			}
			for _, d := range targets {
				if !slices.ContainsFunc(d.Spec.Template.Spec.Containers, func(c Container) bool {
					n, ok := containerPort(c, target)
					return ok && slices.ContainsFunc(c.Ports, func(cp ContainerPort) bool { return cp.ContainerPort == n })
				}) {
					out = append(out, fmt.Sprintf("%s: port %d targets %q, which %s does not declare", s.Object, p.Port, target, d.Object))
				}
			}
		}
	}
	for _, p := range m.PDBs {
		if len(matching(p.Spec.Selector.MatchLabels)) != 1 {
			out = append(out, fmt.Sprintf("%s: selector %v must match exactly one Deployment's pods", p.Object, p.Spec.Selector.MatchLabels))
		}
	}
	for _, h := range m.HPAs {
		if _, ok := m.Deployment(h.Spec.ScaleTargetRef.Name); !ok || h.Spec.ScaleTargetRef.Kind != "Deployment" {
			out = append(out, fmt.Sprintf("%s: scales %s %s, which is not an applied Deployment", h.Object, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name))
		}
		if d, ok := m.Deployment(h.Spec.ScaleTargetRef.Name); ok && d.Spec.Replicas != nil {
			out = append(out, fmt.Sprintf("%s: sets replicas, which fights its HorizontalPodAutoscaler on every apply", d.Object))
		}
	}
	return out
}

func checkK8sImages(_ Contract, m *Manifests) []string {
	var out []string
	for _, w := range m.Workloads {
		for _, c := range w.Spec.Template.Spec.containers() {
			if p := ImageProblem(c.Image); p != "" {
				out = append(out, fmt.Sprintf("%s container %s: %s", w.Object, c.Name, p))
			}
		}
	}
	return out
}

func checkK8sGrace(k Contract, m *Manifests) []string {
	var out []string
	for _, name := range k.ServiceNames() {
		d, ok := m.Deployment(name)
		if !ok {
			continue
		}
		grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
		if grace == nil {
			out = append(out, fmt.Sprintf("%s: terminationGracePeriodSeconds is not set", d.Object))
			continue
		}
		if *grace < k.MinGraceSeconds[name] {
			out = append(out, fmt.Sprintf("%s: terminationGracePeriodSeconds %d is below %d", d.Object, *grace, k.MinGraceSeconds[name]))
		}
	}
	return out
}

// isMigrateContainer reports whether a Job runs the contract's migrate command.
func isMigrateContainer(k Contract, w Workload) bool {
	return slices.ContainsFunc(w.Spec.Template.Spec.Containers, func(c Container) bool {
		repo, _ := imageVersion(c.Image)
		return strings.HasSuffix(repo, "/"+k.Migrate) && slices.Equal(c.Args, k.MigrateArgs)
	})
}

func checkK8sJobs(k Contract, m *Manifests) []string {
	var out []string
	migrate, topics := false, false
	for _, w := range m.Workloads {
		if w.Kind != "Job" || !w.Applied {
			continue
		}
		migrate = migrate || isMigrateContainer(k, w)
		topics = topics || slices.ContainsFunc(w.Spec.Template.Spec.Containers, func(c Container) bool {
			return slices.ContainsFunc(slices.Concat(c.Command, c.Args), func(a string) bool { return strings.HasSuffix(a, "create-topics.sh") })
		})
		if p := w.Spec.Template.Spec.RestartPolicy; p != "Never" && p != "OnFailure" {
			out = append(out, fmt.Sprintf("%s: restartPolicy %q, want Never or OnFailure", w.Object, p))
		}
		if w.Spec.BackoffLimit == nil {
			out = append(out, fmt.Sprintf("%s: backoffLimit is not set", w.Object))
		}
	}
	if !migrate {
		out = append(out, fmt.Sprintf("no Job runs %s %s", k.Migrate, strings.Join(k.MigrateArgs, " ")))
	}
	if !topics {
		out = append(out, "no Job runs create-topics.sh")
	}
	return out
}

func checkK8sVolumes(_ Contract, m *Manifests) []string {
	var out []string
	configMaps := map[string]bool{}
	for _, cm := range m.ConfigMaps {
		configMaps[cm.Metadata.Name] = true
	}
	if m.Kustomization != nil {
		for _, g := range m.Kustomization.ConfigMapGenerator {
			configMaps[g.Name] = true
		}
	}
	for _, w := range m.Workloads {
		for _, v := range w.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] {
				out = append(out, fmt.Sprintf("%s: volume %s mounts ConfigMap %s, which nothing defines", w.Object, v.Name, v.ConfigMap.Name))
			}
		}
	}
	return out
}
