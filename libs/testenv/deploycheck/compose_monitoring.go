package deploycheck

// The rules file of compose's Prometheus is written from the PrometheusRule (make generate):
//go:generate go test -run TestComposeRulesAreThePrometheusRule -update .
// The Strimzi overlay's KafkaTopics are written from kafkax.PlatformTopics:
//go:generate go test -run TestStrimziTopicsArePlatformTopics -update .

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

// Monitoring names what the Compose file's monitoring must be: the services that run Prometheus and
// Grafana, where their configuration is mounted, and the uid every dashboard names its datasource by.
var Monitoring = struct {
	Prometheus, Grafana                 string
	PrometheusConfigDir, GrafanaProvDir string
	DatasourceUID                       string
}{
	Prometheus: "prometheus", Grafana: "grafana",
	PrometheusConfigDir: "/etc/prometheus", GrafanaProvDir: "/etc/grafana/provisioning",
	DatasourceUID: "edtech-prometheus",
}

// pinned matches an image reference with an explicit version tag (not latest).
var pinned = regexp.MustCompile(`^[a-z0-9./-]+:v?[0-9]+(\.[0-9]+)+$`)

// bindSource returns the host directory a service mounts at target, or "".
func bindSource(s types.ServiceConfig, target string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			return v.Source
		}
	}
	return ""
}

// checkComposeMonitoring: Prometheus and Grafana run from pinned images; every directory or file any
// service bind-mounts exists in the repository; Prometheus scrapes each long-running service by its
// compose name on the admin port, in a job named after it, and nothing else, and loads rule files that
// exist; Grafana is provisioned with that Prometheus as the datasource the dashboards name, and with
// dashboard providers that read a mounted directory of dashboards.
func checkComposeMonitoring(k Contract, p *types.Project) (out []string) {
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		for _, v := range p.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			_, err := os.Stat(v.Source)
			out = when(out, err != nil, "%s: mounts %s, which is not in the repository", name, v.Source)
		}
	}
	prom, hasProm := p.Services[Monitoring.Prometheus]
	graf, hasGraf := p.Services[Monitoring.Grafana]
	out = when(out, !hasProm, "no %s service", Monitoring.Prometheus)
	out = when(out, !hasGraf, "no %s service", Monitoring.Grafana)
	for _, s := range []types.ServiceConfig{prom, graf} {
		out = when(out, s.Name != "" && !pinned.MatchString(s.Image), "%s: image %q is not pinned to a version", s.Name, s.Image)
	}
	if hasProm {
		want := "--config.file=" + Monitoring.PrometheusConfigDir + "/prometheus.yml"
		out = when(out, !slices.Contains(prom.Command, want), "%s: does not run with %s", Monitoring.Prometheus, want)
		out = append(out, prometheusProblems(k, p, bindSource(prom, Monitoring.PrometheusConfigDir))...)
	}
	if hasGraf {
		out = append(out, grafanaProblems(graf, bindSource(graf, Monitoring.GrafanaProvDir))...)
	}
	return out
}

// PrometheusConfig is the part of prometheus.yml the checks read.
type PrometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func prometheusProblems(k Contract, p *types.Project, dir string) (out []string) {
	if dir == "" {
		return []string{fmt.Sprintf("%s: nothing is mounted at %s", Monitoring.Prometheus, Monitoring.PrometheusConfigDir)}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "prometheus.yml"))
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", Monitoring.Prometheus, err)}
	}
	var cfg PrometheusConfig
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return []string{fmt.Sprintf("%s: prometheus.yml: %v", Monitoring.Prometheus, err)}
	}
	out = when(out, len(cfg.RuleFiles) == 0, "%s: prometheus.yml loads no rule file", Monitoring.Prometheus)
	for _, f := range cfg.RuleFiles {
		rel, ok := strings.CutPrefix(f, Monitoring.PrometheusConfigDir+"/")
		_, err := os.Stat(filepath.Join(dir, rel))
		out = when(out, !ok || err != nil, "%s: rule file %s is not in the mounted %s", Monitoring.Prometheus, f, dir)
	}
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, _ := strings.Cut(target, ":")
				_, long := k.Services[host]
				_, inCompose := p.Services[host]
				out = when(out, !inCompose, "%s: scrapes %s, which is not a compose service", Monitoring.Prometheus, target)
				out = when(out, inCompose && (!long || port != fmt.Sprint(k.AdminPort)), "%s: scrapes %s, which is not a service's admin port %d", Monitoring.Prometheus, target, k.AdminPort)
				out = when(out, long && sc.JobName != host, "%s: job %q scrapes %s: name it after the service", Monitoring.Prometheus, sc.JobName, host)
				scraped[host] = true
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(k.Services)) {
		out = when(out, !scraped[name], "%s: does not scrape %s:%d", Monitoring.Prometheus, name, k.AdminPort)
	}
	return out
}

func grafanaProblems(graf types.ServiceConfig, dir string) (out []string) {
	if dir == "" {
		return []string{fmt.Sprintf("%s: nothing is mounted at %s", Monitoring.Grafana, Monitoring.GrafanaProvDir)}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "datasources", "*.yaml"))
	found := false
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return append(out, err.Error())
		}
		var doc struct {
			Datasources []struct{ UID, Type, URL string } `yaml:"datasources"`
		}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			return append(out, fmt.Sprintf("%s: %s: %v", Monitoring.Grafana, filepath.Base(f), err))
		}
		for _, d := range doc.Datasources {
			found = found || (d.UID == Monitoring.DatasourceUID && d.Type == "prometheus" &&
				d.URL == fmt.Sprintf("http://%s:9090", Monitoring.Prometheus))
		}
	}
	out = when(out, !found, "%s: no provisioned prometheus datasource with uid %s at http://%s:9090", Monitoring.Grafana, Monitoring.DatasourceUID, Monitoring.Prometheus)
	providers, _ := filepath.Glob(filepath.Join(dir, "dashboards", "*.yaml"))
	out = when(out, len(providers) == 0, "%s: no dashboard provider in %s/dashboards", Monitoring.Grafana, dir)
	for _, f := range providers {
		raw, err := os.ReadFile(f)
		if err != nil {
			return append(out, err.Error())
		}
		var doc struct {
			Providers []struct {
				Name    string `yaml:"name"`
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			return append(out, fmt.Sprintf("%s: %s: %v", Monitoring.Grafana, filepath.Base(f), err))
		}
		for _, pr := range doc.Providers {
			src := bindSource(graf, pr.Options.Path)
			dashboards, _ := filepath.Glob(filepath.Join(src, "*.json"))
			out = when(out, src == "", "%s: dashboard provider %q reads %s, where nothing is mounted", Monitoring.Grafana, pr.Name, pr.Options.Path)
			out = when(out, src != "" && len(dashboards) == 0, "%s: dashboard provider %q reads %s, which holds no dashboard", Monitoring.Grafana, pr.Name, src)
		}
	}
	return out
}
