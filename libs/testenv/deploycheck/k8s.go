package deploycheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edtech-analytics/platform/libs/conf"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Object is one object of the manifests: what it is, the file it came from, and, for the kinds the checks
// read, its value decoded into its k8s.io/api type.
type Object struct {
	APIVersion, Kind, Name, File string
	Value                        any
	// JSON is the object as built.
	JSON []byte
}

func (o Object) String() string { return fmt.Sprintf("%s %s (%s)", o.Kind, o.Name, o.File) }

// Manifests are the objects of the k8s/ manifests.
type Manifests struct{ Objects []Object }

// LoadManifests builds a kustomization directory (k8s/, or an overlay of it) as `kubectl apply -k` does,
// with krusty; each object carries the file it came from (kustomize's origin annotation).
func LoadManifests(dir string) (*Manifests, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", dir, err)
	}
	built, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(originFS{filesys.MakeFsOnDisk()}, abs)
	if err != nil {
		return nil, fmt.Errorf("building kustomization.yaml: %w", err)
	}
	m := &Manifests{}
	for _, res := range built.Resources() {
		o := Object{APIVersion: res.GetApiVersion(), Kind: res.GetKind(), Name: res.GetName(), File: "generated"}
		if origin, err := res.GetOrigin(); err == nil && origin != nil {
			o.File = origin.Path
		}
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

// originFS reads a file system as it is, except that every kustomization asks for origin annotations.
type originFS struct{ filesys.FileSystem }

func (f originFS) ReadFile(path string) ([]byte, error) {
	src, err := f.FileSystem.ReadFile(path)
	if err == nil && filepath.Base(path) == "kustomization.yaml" && !bytes.Contains(src, []byte("buildMetadata")) {
		src = append(src, "\nbuildMetadata: [originAnnotations]\n"...)
	}
	return src, err
}

// add keeps an object, decoded into its k8s.io/api type when the checks read its kind, refusing fields
// the type does not have.
func (m *Manifests) add(o Object, src []byte) error {
	o.Value = map[string]any{"Deployment": &appsv1.Deployment{}, "Job": &batchv1.Job{}, "CronJob": &batchv1.CronJob{},
		"Service": &corev1.Service{}, "ConfigMap": &corev1.ConfigMap{}, "HorizontalPodAutoscaler": &autoscalingv2.HorizontalPodAutoscaler{}}[o.Kind]
	o.JSON = src
	m.Objects = append(m.Objects, o)
	if o.Value == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.DisallowUnknownFields()
	return dec.Decode(o.Value)
}

// all returns the decoded objects of type T.
func all[T any](m *Manifests) (out []T) {
	for _, o := range m.Objects {
		if v, ok := o.Value.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// container is a container of a workload (an object with a pod template); app: not an init container.
type container struct {
	corev1.Container
	workload Object
	app      bool
	where    string
	volumes  []corev1.Volume // the pod's
}

// containers walks the pod template of every workload: the one place the checks get containers from.
func (m *Manifests) containers() (out []container) {
	for _, o := range m.Objects {
		var pod corev1.PodSpec
		switch v := o.Value.(type) {
		case *appsv1.Deployment:
			pod = v.Spec.Template.Spec
		case *batchv1.Job:
			pod = v.Spec.Template.Spec
		case *batchv1.CronJob:
			pod = v.Spec.JobTemplate.Spec.Template.Spec
		}
		for i, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			out = append(out, container{c, o, i >= len(pod.InitContainers), fmt.Sprintf("%s container %s", o, c.Name), pod.Volumes})
		}
	}
	return out
}

// K8sChecks returns every check of the k8s/ manifests on top of kustomize's and the API types' own.
func K8sChecks() []Check[*Manifests] {
	return []Check[*Manifests]{
		{"deployments present", checkK8sDeployments},
		{"probes", checkK8sProbes},
		{"resources", func(_ Contract, m *Manifests) (out []string) {
			for _, c := range m.containers() {
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					_, req := c.Resources.Requests[r]
					_, lim := c.Resources.Limits[r]
					out = when(out, !req, "%s: no %s request", c.where, r)
					out = when(out, !lim, "%s: no %s limit", c.where, r)
				}
			}
			return out
		}},
		{"env complete", checkK8sEnv},
		{"jobs", func(k Contract, m *Manifests) (out []string) {
			migrate, topics := false, false
			for _, c := range m.containers() {
				migrate = migrate || (c.workload.Kind == "Job" && k.isMigrate(imageName(c.Image), c.Args))
				topics = topics || (c.workload.Kind == "Job" && isTopicsJob(slices.Concat(c.Command, c.Args)))
			}
			out = when(out, !migrate, "no Job runs %s %s", k.Migrate, strings.Join(k.MigrateArgs, " "))
			// With Strimzi (k8s-overlays), KafkaTopics declare the topics instead (check "kafka topics").
			topics = topics || slices.ContainsFunc(m.Objects, func(o Object) bool { return o.Kind == "KafkaTopic" })
			return when(out, !topics, "no Job runs create-topics.sh and no KafkaTopic declares the topics")
		}},
	}
}

// checkK8sDeployments: every service has a Deployment with the grace period it needs to drain, and one
// with a public listener a Service on its port selecting the Deployment's pods.
func checkK8sDeployments(k Contract, m *Manifests) (out []string) {
	for _, name := range slices.Sorted(maps.Keys(k.Services)) {
		i := slices.IndexFunc(all[*appsv1.Deployment](m), func(d *appsv1.Deployment) bool { return d.Name == name })
		if i < 0 {
			out = append(out, fmt.Sprintf("no Deployment %s", name))
			continue
		}
		pod := all[*appsv1.Deployment](m)[i].Spec.Template
		grace := pod.Spec.TerminationGracePeriodSeconds
		out = when(out, grace == nil, "Deployment %s: terminationGracePeriodSeconds is not set", name)
		out = when(out, grace != nil && deref(grace) < int64(k.MinGraceSeconds[name]), "Deployment %s: terminationGracePeriodSeconds %d is below %d", name, deref(grace), k.MinGraceSeconds[name])
		port, public := k.HTTPPorts[name]
		exposed := slices.ContainsFunc(all[*corev1.Service](m), func(s *corev1.Service) bool {
			selects := len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(pod.Labels))
			return selects && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == port })
		})
		out = when(out, public && !exposed, "Deployment %s has no Service on port %d", name, port)
	}
	return out
}

// checkK8sProbes: every Deployment's containers are probed over HTTP on the admin port, ready on /readyz
// and live on /healthz.
func checkK8sProbes(k Contract, m *Manifests) (out []string) {
	for _, c := range m.containers() {
		if c.workload.Kind != "Deployment" || !c.app {
			continue
		}
		for _, p := range []struct {
			kind, path string
			probe      *corev1.Probe
		}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				out = append(out, fmt.Sprintf("%s: no HTTP %s", c.where, p.kind))
				continue
			}
			get := p.probe.HTTPGet
			port := get.Port.IntVal // a port name resolves to the container's port of that name, or 0
			if i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == get.Port.StrVal }); get.Port.Type == intstr.String && i >= 0 {
				port = c.Ports[i].ContainerPort
			}
			out = when(out, get.Path != p.path, "%s: %s path %q, want %s", c.where, p.kind, get.Path, p.path)
			out = when(out, int(port) != k.AdminPort, "%s: %s port %q is not the admin port %d", c.where, p.kind, get.Port.String(), k.AdminPort)
		}
	}
	return out
}

// checkK8sEnv: the ConfigMaps a container loads whole (envFrom) exist; a service or the migrate job is
// given every variable the contract requires of what it reads, no env entry it does not read, and what it
// binds as a secret (conf.SecretVar) from a Secret; and every key of a ConfigMap loaded whole is read by a
// process that loads it, and is no secret.
func checkK8sEnv(k Contract, m *Manifests) (out []string) {
	readers, configMaps := map[string][]conf.Var{}, all[*corev1.ConfigMap](m)
	for _, c := range m.containers() {
		vars, known := k.process(c.workload.Name, imageName(c.Image), c.Args)
		have, set := map[string]bool{}, []string{}
		for _, from := range c.EnvFrom {
			kind, name := "Secret", deref(from.SecretRef).Name // a Secret's keys are not in git
			if from.ConfigMapRef != nil {
				kind, name = "ConfigMap", from.ConfigMapRef.Name
			}
			i := slices.IndexFunc(configMaps, func(cm *corev1.ConfigMap) bool { return kind == "ConfigMap" && cm.Name == name })
			if i < 0 {
				out = append(out, fmt.Sprintf("%s: envFrom %s %s, which no manifest defines", c.where, kind, name))
				continue
			}
			for key := range configMaps[i].Data {
				have[key] = true
			}
			if known {
				readers[name] = append(readers[name], vars...)
			}
		}
		for _, e := range c.Env {
			have[e.Name], set = true, append(set, e.Name)
			out = when(out, k.IsSecret(e.Name) && e.ValueFrom == nil, "%s: env %s has an inline value; use a secretKeyRef", c.where, e.Name)
			out = when(out, k.IsSecret(e.Name) && deref(e.ValueFrom).ConfigMapKeyRef != nil, "%s: env %s comes from a ConfigMap; use a Secret", c.where, e.Name)
		}
		if known {
			out = append(out, k.envProblems(c.where, c.workload.Name, vars, have, set)...)
		}
	}
	for _, cm := range configMaps {
		for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
			_, loaded := readers[cm.Name]
			out = when(out, loaded && !k.Reads(readers[cm.Name], key), "ConfigMap %s: key %s is read by no service that loads it", cm.Name, key)
			out = when(out, k.IsSecret(key), "ConfigMap %s: holds %s; secrets belong in a Secret", cm.Name, key)
		}
	}
	return out
}

func deref[T any](p *T) (v T) {
	if p != nil {
		v = *p
	}
	return v
}

// imageName is an image reference's last path element without its tag or digest ("ghcr.io/x/ctl:1": ctl).
func imageName(ref string) string {
	base := path.Base(ref)
	if i := strings.IndexAny(base, ":@"); i >= 0 {
		return base[:i]
	}
	return base
}
