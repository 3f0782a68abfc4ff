package deploycheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edtech-analytics/platform/libs/conf"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/kio"
	"sigs.k8s.io/yaml"
)

// KustomizationFile is the kustomization's file name.
const KustomizationFile = "kustomization.yaml"

// Object names one built object and the file it came from.
type Object struct{ Kind, Name, Namespace, File string }

func (o Object) String() string { return fmt.Sprintf("%s %s (%s)", o.Kind, o.Name, o.File) }

// Workload is a Deployment or a Job: an object with a pod template.
type Workload struct {
	Object
	Pod corev1.PodTemplateSpec
}

// Manifests is the k8s/ directory as `kubectl apply -k` builds it (krusty), decoded into k8s.io/api types
// with unknown fields refused, and the Secret templates (*.example.yaml) it deliberately leaves out.
type Manifests struct {
	Files         map[string]bool // every file name in the directory
	Kustomization *kustypes.Kustomization
	Objects       []Object
	Deployments   []appsv1.Deployment
	Jobs          []batchv1.Job
	Workloads     []Workload // the Deployments' and Jobs' pod templates
	Services      []corev1.Service
	PDBs          []policyv1.PodDisruptionBudget
	HPAs          []autoscalingv2.HorizontalPodAutoscaler
	ConfigMaps    []corev1.ConfigMap
	Secrets       []corev1.Secret // applied ones and the templates
}

// LoadManifests reads the files of a directory and builds them.
func LoadManifests(dir string) (*Manifests, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing manifests: %w", err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if !e.IsDir() {
			if files[e.Name()], err = os.ReadFile(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("reading manifest: %w", err)
			}
		}
	}
	return ParseManifests(files)
}

// ParseManifests builds a directory's files, given by name, with krusty. Each object carries the file it
// came from (kustomize's origin annotation).
func ParseManifests(files map[string][]byte) (*Manifests, error) {
	m := &Manifests{Files: map[string]bool{}}
	fsys := filesys.MakeFsInMemory()
	for name, src := range files {
		m.Files[name] = true
		if name == KustomizationFile && !bytes.Contains(src, []byte("buildMetadata")) {
			src = append(slices.Clip(src), "\nbuildMetadata: [originAnnotations]\n"...)
		}
		if err := fsys.WriteFile(filepath.Join("/k8s", name), src); err != nil {
			return nil, fmt.Errorf("copying %s: %w", name, err)
		}
		if strings.Contains(name, ".example.") {
			if err := m.addTemplates(name, src); err != nil {
				return nil, err
			}
		}
	}
	if !m.Files[KustomizationFile] {
		return m, nil
	}
	m.Kustomization = &kustypes.Kustomization{}
	if err := yaml.UnmarshalStrict(files[KustomizationFile], m.Kustomization); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", KustomizationFile, err)
	}
	built, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, "/k8s")
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", KustomizationFile, err)
	}
	for _, res := range built.Resources() {
		var origin struct{ Path string }
		_ = yaml.Unmarshal([]byte(res.GetAnnotations()["config.kubernetes.io/origin"]), &origin)
		o := Object{Kind: res.GetKind(), Name: res.GetName(), Namespace: res.GetNamespace(), File: cmpOr(origin.Path, "generated")}
		src, err := res.MarshalJSON()
		if err == nil {
			err = m.add(o, src)
		}
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", o, err)
		}
	}
	return m, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// addTemplates reads the Secrets of a template file that is not applied.
func (m *Manifests) addTemplates(name string, src []byte) error {
	nodes, err := kio.FromBytes(src)
	for i := 0; err == nil && i < len(nodes); i++ {
		var s corev1.Secret
		if err = strictJSON(nodes[i].MustString(), &s); err == nil && s.Kind == "Secret" {
			m.Secrets = append(m.Secrets, s)
		}
	}
	if err != nil {
		return fmt.Errorf("parsing %s: %w", name, err)
	}
	return nil
}

// strictJSON decodes YAML or JSON into v, refusing fields v's type does not have.
func strictJSON(src string, v any) error {
	js, err := yaml.YAMLToJSON([]byte(src))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// add decodes one built object by its kind.
func (m *Manifests) add(o Object, src []byte) error {
	m.Objects = append(m.Objects, o)
	decode := func(v any) error { return strictJSON(string(src), v) }
	var err error
	switch o.Kind {
	case "Deployment":
		var d appsv1.Deployment
		err = decode(&d)
		m.Deployments, m.Workloads = append(m.Deployments, d), append(m.Workloads, Workload{o, d.Spec.Template})
	case "Job":
		var j batchv1.Job
		err = decode(&j)
		m.Jobs, m.Workloads = append(m.Jobs, j), append(m.Workloads, Workload{o, j.Spec.Template})
	case "Service":
		var s corev1.Service
		err = decode(&s)
		m.Services = append(m.Services, s)
	case "PodDisruptionBudget":
		var p policyv1.PodDisruptionBudget
		err = decode(&p)
		m.PDBs = append(m.PDBs, p)
	case "HorizontalPodAutoscaler":
		var h autoscalingv2.HorizontalPodAutoscaler
		err = decode(&h)
		m.HPAs = append(m.HPAs, h)
	case "ConfigMap":
		var c corev1.ConfigMap
		err = decode(&c)
		m.ConfigMaps = append(m.ConfigMaps, c)
	case "Secret":
		var s corev1.Secret
		err = decode(&s)
		m.Secrets = append(m.Secrets, s)
	}
	return err
}

// deployment returns the Deployment of that name and its workload.
func (m *Manifests) deployment(name string) (appsv1.Deployment, Workload, bool) {
	i := slices.IndexFunc(m.Deployments, func(d appsv1.Deployment) bool { return d.Name == name })
	if i < 0 {
		return appsv1.Deployment{}, Workload{}, false
	}
	w := m.Workloads[slices.IndexFunc(m.Workloads, func(w Workload) bool { return w.Kind == "Deployment" && w.Name == name })]
	return m.Deployments[i], w, true
}

// containers returns a pod's init and app containers.
func containers(w Workload) []corev1.Container {
	return slices.Concat(w.Pod.Spec.InitContainers, w.Pod.Spec.Containers)
}

// K8sCheck is one named check of the built k8s/ manifests.
type K8sCheck struct {
	Name  string
	Check func(k Contract, m *Manifests) []string
}

// K8sChecks returns every check of the k8s/ manifests on top of kustomize's and the API types' own.
func K8sChecks() []K8sCheck {
	return []K8sCheck{
		{"namespace", checkK8sNamespace},
		{"kustomization lists every manifest", checkK8sKustomization},
		{"deployments present", checkK8sDeployments},
		{"probes", checkK8sProbes},
		{"resources", func(_ Contract, m *Manifests) (out []string) {
			for _, w := range m.Workloads {
				for _, c := range containers(w) {
					for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						_, req := c.Resources.Requests[r]
						_, lim := c.Resources.Limits[r]
						out = when(out, !req, "%s container %s: no %s request", w.Object, c.Name, r)
						out = when(out, !lim, "%s container %s: no %s limit", w.Object, c.Name, r)
					}
				}
			}
			return out
		}},
		{"security context", checkK8sSecurity},
		{"no inline secrets", checkK8sSecrets},
		{"env complete", checkK8sEnv},
		{"selectors match pods", checkK8sSelectors},
		{"images pinned", func(_ Contract, m *Manifests) (out []string) {
			for _, w := range m.Workloads {
				for _, c := range containers(w) {
					out = when(out, ImageProblem(c.Image) != "", "%s container %s: %s", w.Object, c.Name, ImageProblem(c.Image))
				}
			}
			return out
		}},
		{"grace periods", func(k Contract, m *Manifests) (out []string) {
			for _, name := range sortedKeys(k.Services) {
				if _, w, ok := m.deployment(name); ok {
					g := w.Pod.Spec.TerminationGracePeriodSeconds
					out = when(out, g == nil, "%s: terminationGracePeriodSeconds is not set", w.Object)
					if g != nil {
						out = when(out, *g < int64(k.MinGraceSeconds[name]), "%s: terminationGracePeriodSeconds %d is below %d", w.Object, *g, k.MinGraceSeconds[name])
					}
				}
			}
			return out
		}},
		{"jobs", checkK8sJobs},
		{"volumes resolve", checkK8sVolumes},
	}
}

func checkK8sNamespace(k Contract, m *Manifests) (out []string) {
	found := false
	for _, o := range m.Objects {
		found = found || (o.Kind == "Namespace" && o.Name == k.Namespace)
		out = when(out, o.Kind != "Namespace" && o.Namespace != k.Namespace, "%s: namespace %q, want %q", o, o.Namespace, k.Namespace)
	}
	out = when(out, !found, "no applied Namespace %s", k.Namespace)
	return when(out, m.Kustomization != nil && m.Kustomization.Namespace != k.Namespace, "kustomization namespace %q, want %q", m.Kustomization.Namespace, k.Namespace)
}

// checkK8sKustomization: kustomize refuses missing resources and generator files; this checks that every
// manifest but the templates is applied, and no Secret is.
func checkK8sKustomization(_ Contract, m *Manifests) (out []string) {
	if m.Kustomization == nil {
		return []string{"no " + KustomizationFile}
	}
	for _, name := range sortedKeys(m.Files) {
		yml, example, listed := strings.HasSuffix(name, ".yaml") && name != KustomizationFile, strings.Contains(name, ".example."), slices.Contains(m.Kustomization.Resources, name)
		out = when(out, yml && example && listed, "kustomization applies the template %s", name)
		out = when(out, yml && !example && !listed, "%s is not listed in %s", name, KustomizationFile)
	}
	for _, o := range m.Objects {
		out = when(out, o.Kind == "Secret", "%s: a Secret is applied from git; keep only a template", o)
	}
	return out
}

// selects reports whether a non-empty selector matches a pod template's labels.
func selects(selector map[string]string, w Workload) bool {
	return len(selector) > 0 && !slices.ContainsFunc(sortedKeys(selector), func(k string) bool { return w.Pod.Labels[k] != selector[k] })
}

func checkK8sDeployments(k Contract, m *Manifests) (out []string) {
	for _, name := range sortedKeys(k.Services) {
		_, w, ok := m.deployment(name)
		if !ok {
			out = append(out, fmt.Sprintf("no Deployment %s", name))
			continue
		}
		pdb := slices.ContainsFunc(m.PDBs, func(p policyv1.PodDisruptionBudget) bool {
			return p.Spec.Selector != nil && selects(p.Spec.Selector.MatchLabels, w)
		})
		out = when(out, !pdb, "Deployment %s has no PodDisruptionBudget", name)
		port, public := k.HTTPPorts[name]
		exposed := slices.ContainsFunc(m.Services, func(s corev1.Service) bool {
			return selects(s.Spec.Selector, w) && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == port })
		})
		out = when(out, public && !exposed, "Deployment %s has no Service on port %d", name, port)
	}
	hpa := slices.ContainsFunc(m.HPAs, func(h autoscalingv2.HorizontalPodAutoscaler) bool {
		return h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == "gateway"
	})
	return when(out, !hpa, "no HorizontalPodAutoscaler for Deployment gateway")
}

// containerPort resolves a probe or Service port (a number or a port name) against a container.
func containerPort(c corev1.Container, port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.Int {
		return port.IntVal, true
	}
	i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == port.StrVal })
	if i < 0 {
		return 0, false
	}
	return c.Ports[i].ContainerPort, true
}

func checkK8sProbes(k Contract, m *Manifests) (out []string) {
	for _, w := range m.Workloads {
		for _, c := range w.Pod.Spec.Containers {
			for _, p := range []struct {
				kind, path string
				probe      *corev1.Probe
			}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
				if w.Kind != "Deployment" {
					continue
				}
				if p.probe == nil || p.probe.HTTPGet == nil {
					out = append(out, fmt.Sprintf("%s container %s: no HTTP %s", w.Object, c.Name, p.kind))
					continue
				}
				get := p.probe.HTTPGet
				out = when(out, get.Path != p.path, "%s container %s: %s path %q, want %s", w.Object, c.Name, p.kind, get.Path, p.path)
				port, ok := containerPort(c, get.Port)
				out = when(out, !ok || int(port) != k.AdminPort, "%s container %s: %s port %q is not the admin port %d", w.Object, c.Name, p.kind, get.Port.String(), k.AdminPort)
			}
		}
	}
	return out
}

func checkK8sSecurity(_ Contract, m *Manifests) (out []string) {
	isTrue := func(b *bool) bool { return b != nil && *b }
	for _, w := range m.Workloads {
		pod := w.Pod.Spec.SecurityContext
		if pod == nil {
			pod = &corev1.PodSecurityContext{}
		}
		for _, c := range containers(w) {
			sc, where := c.SecurityContext, fmt.Sprintf("%s container %s", w.Object, c.Name)
			if sc == nil {
				sc = &corev1.SecurityContext{}
			}
			user := cmpPtr(sc.RunAsUser, pod.RunAsUser)
			out = when(out, !isTrue(cmpPtr(sc.RunAsNonRoot, pod.RunAsNonRoot)), "%s: runAsNonRoot is not true", where)
			out = when(out, user != nil && *user == 0, "%s: runAsUser is 0", where)
			out = when(out, !isTrue(sc.ReadOnlyRootFilesystem), "%s: readOnlyRootFilesystem is not true", where)
			out = when(out, sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation is not false", where)
			out = when(out, sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"), "%s: capabilities do not drop ALL", where)
			seccomp := cmpPtr(sc.SeccompProfile, pod.SeccompProfile)
			out = when(out, seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault, "%s: no RuntimeDefault seccomp profile", where)
		}
	}
	return out
}

// cmpPtr returns the first non-nil pointer.
func cmpPtr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

func checkK8sSecrets(k Contract, m *Manifests) (out []string) {
	for _, w := range m.Workloads {
		for _, c := range containers(w) {
			for _, e := range c.Env {
				out = when(out, k.IsSecret(e.Name) && e.ValueFrom == nil, "%s container %s: env %s has an inline value; use a secretKeyRef", w.Object, c.Name, e.Name)
				out = when(out, k.IsSecret(e.Name) && e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil, "%s container %s: env %s comes from a ConfigMap; use a Secret", w.Object, c.Name, e.Name)
			}
		}
	}
	for _, cm := range m.ConfigMaps {
		for _, key := range sortedKeys(cm.Data) {
			out = when(out, k.IsSecret(key), "ConfigMap %s: holds %s; secrets belong in a Secret", cm.Name, key)
		}
	}
	return out
}

// keys returns the data keys of the ConfigMap or Secret of that name, and whether there is one.
func (m *Manifests) keys(kind, name string) (keys map[string]bool, found bool) {
	keys = map[string]bool{}
	add := func(n string, lists ...[]string) {
		if n == name {
			found = true
			for _, k := range slices.Concat(lists...) {
				keys[k] = true
			}
		}
	}
	for _, c := range m.ConfigMaps {
		if kind == "ConfigMap" {
			add(c.Name, slices.Collect(maps.Keys(c.Data)))
		}
	}
	for _, s := range m.Secrets {
		if kind == "Secret" {
			add(s.Name, slices.Collect(maps.Keys(s.Data)), slices.Collect(maps.Keys(s.StringData)))
		}
	}
	return keys, found
}

// envSources returns the variables a container receives and the problems with their sources: every
// ConfigMap and Secret it reads must exist (Secrets: in a template), with the keys it reads.
func envSources(m *Manifests, where string, c corev1.Container) (map[string]bool, []string) {
	have, out := map[string]bool{}, []string(nil)
	for _, from := range c.EnvFrom {
		kind, name := "Secret", ""
		if from.ConfigMapRef != nil {
			kind, name = "ConfigMap", from.ConfigMapRef.Name
		} else if from.SecretRef != nil {
			name = from.SecretRef.Name
		}
		keys, ok := m.keys(kind, name)
		out = when(out, !ok, "%s: envFrom %s %s, which no manifest defines", where, kind, name)
		maps.Copy(have, keys)
	}
	for _, e := range c.Env {
		have[e.Name] = true
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			keys, _ := m.keys("Secret", r.Name)
			out = when(out, !keys[r.Key], "%s: env %s reads Secret %s key %s, which no manifest defines", where, e.Name, r.Name, r.Key)
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			keys, _ := m.keys("ConfigMap", r.Name)
			out = when(out, !keys[r.Key], "%s: env %s reads ConfigMap %s key %s, which no manifest defines", where, e.Name, r.Name, r.Key)
		}
	}
	return have, out
}

// reads returns what a workload's process reads, when the contract knows it: a service's Deployment or a
// Job running the migrate command.
func reads(k Contract, w Workload) ([]conf.Var, bool) {
	if w.Kind == "Job" {
		return k.MigrateEnv, slices.ContainsFunc(w.Pod.Spec.Containers, func(c corev1.Container) bool { return isMigrateContainer(k, c) })
	}
	vars, ok := k.Services[w.Name]
	return vars, ok
}

// checkK8sEnv: every container's env sources resolve; a service or the migrate job gets every variable
// the contract requires of what it reads, and no env entry it does not read; and every key of a
// ConfigMap loaded whole (envFrom) is read by a process that loads it.
func checkK8sEnv(k Contract, m *Manifests) (out []string) {
	readers := map[string][]conf.Var{}
	for _, w := range m.Workloads {
		vars, known := reads(k, w)
		for _, c := range containers(w) {
			where := fmt.Sprintf("%s container %s", w.Object, c.Name)
			have, problems := envSources(m, where, c)
			out = append(out, problems...)
			for _, key := range k.Needs(vars) {
				out = when(out, known && !have[key], "%s: env %s is not set", where, key)
			}
			for _, e := range c.Env {
				out = when(out, known && !k.Reads(vars, e.Name), "%s: env %s is set, but %s does not read it", where, e.Name, w.Name)
			}
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef != nil && known {
					readers[from.ConfigMapRef.Name] = append(readers[from.ConfigMapRef.Name], vars...)
				}
			}
		}
	}
	for _, name := range sortedKeys(readers) {
		keys, _ := m.keys("ConfigMap", name)
		for _, key := range sortedKeys(keys) {
			out = when(out, !k.Reads(readers[name], key), "ConfigMap %s: key %s is read by no service that loads it", name, key)
		}
	}
	return out
}

func checkK8sSelectors(_ Contract, m *Manifests) (out []string) {
	var deployments []Workload
	for _, d := range m.Deployments {
		_, w, _ := m.deployment(d.Name)
		deployments = append(deployments, w)
		var sel map[string]string
		if d.Spec.Selector != nil {
			sel = d.Spec.Selector.MatchLabels
		}
		out = when(out, !selects(sel, w), "%s: selector %v does not match its pod labels %v", w.Object, sel, d.Spec.Template.Labels)
	}
	matching := func(sel map[string]string) []Workload {
		return slices.DeleteFunc(slices.Clone(deployments), func(w Workload) bool { return !selects(sel, w) })
	}
	for _, s := range m.Services {
		targets := matching(s.Spec.Selector)
		out = when(out, len(targets) == 0, "Service %s: selector %v matches no Deployment's pods", s.Name, s.Spec.Selector)
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.IntVal == 0 && target.StrVal == "" {
				target = intstr.FromInt32(p.Port)
			}
			for _, d := range targets {
				declared := slices.ContainsFunc(d.Pod.Spec.Containers, func(c corev1.Container) bool {
					n, ok := containerPort(c, target)
					return ok && slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == n })
				})
				out = when(out, !declared, "Service %s: port %d targets %q, which %s does not declare", s.Name, p.Port, target.String(), d.Object)
			}
		}
	}
	for _, p := range m.PDBs {
		var sel map[string]string
		if p.Spec.Selector != nil {
			sel = p.Spec.Selector.MatchLabels
		}
		out = when(out, len(matching(sel)) != 1, "PodDisruptionBudget %s: selector %v must match exactly one Deployment's pods", p.Name, sel)
	}
	for _, h := range m.HPAs {
		ref := h.Spec.ScaleTargetRef
		d, w, ok := m.deployment(ref.Name)
		out = when(out, !ok || ref.Kind != "Deployment", "HorizontalPodAutoscaler %s: scales %s %s, which is not an applied Deployment", h.Name, ref.Kind, ref.Name)
		out = when(out, ok && d.Spec.Replicas != nil, "%s: sets replicas, which fights its HorizontalPodAutoscaler on every apply", w.Object)
	}
	return out
}

// isMigrateContainer reports whether a container runs the contract's migrate command.
func isMigrateContainer(k Contract, c corev1.Container) bool {
	repo, _ := imageVersion(c.Image)
	return strings.HasSuffix(repo, "/"+k.Migrate) && slices.Equal(c.Args, k.MigrateArgs)
}

func checkK8sJobs(k Contract, m *Manifests) (out []string) {
	migrate, topics := false, false
	for _, j := range m.Jobs {
		w := m.Workloads[slices.IndexFunc(m.Workloads, func(w Workload) bool { return w.Kind == "Job" && w.Name == j.Name })]
		for _, c := range j.Spec.Template.Spec.Containers {
			migrate = migrate || isMigrateContainer(k, c)
			topics = topics || isTopicsJob(slices.Concat(c.Command, c.Args))
		}
		p := j.Spec.Template.Spec.RestartPolicy
		out = when(out, p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure, "%s: restartPolicy %q, want Never or OnFailure", w.Object, p)
		out = when(out, j.Spec.BackoffLimit == nil, "%s: backoffLimit is not set", w.Object)
	}
	out = when(out, !migrate, "no Job runs %s %s", k.Migrate, strings.Join(k.MigrateArgs, " "))
	return when(out, !topics, "no Job runs create-topics.sh")
}

func checkK8sVolumes(_ Contract, m *Manifests) (out []string) {
	for _, w := range m.Workloads {
		for _, v := range w.Pod.Spec.Volumes {
			if v.ConfigMap != nil {
				_, ok := m.keys("ConfigMap", v.ConfigMap.Name)
				out = when(out, !ok, "%s: volume %s mounts ConfigMap %s, which nothing defines", w.Object, v.Name, v.ConfigMap.Name)
			}
		}
	}
	return out
}
