package deploycheck

import (
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/svc"
	aggregator "github.com/edtech-analytics/platform/services/aggregator/app"
	ctl "github.com/edtech-analytics/platform/services/ctl/cli"
	enricher "github.com/edtech-analytics/platform/services/enricher/app"
	gateway "github.com/edtech-analytics/platform/services/gateway/app"
	query "github.com/edtech-analytics/platform/services/query/app"
	sink "github.com/edtech-analytics/platform/services/sink/app"
)

// platformContract is the contract of this repository's services: what each reads is what libs/conf
// recorded while the flag set svc.Main parses was registered (svc.FlagSet, conf.Vars), and what the
// migrate command reads is ctl's own account of it.
func platformContract() Contract {
	reads := func(name string, cfg svc.Config) []conf.Var { return conf.Vars(svc.FlagSet(name, cfg, new(string))) }
	return NewContract(map[string][]conf.Var{
		"gateway":    reads("gateway", &gateway.Config{}),
		"enricher":   reads("enricher", &enricher.Config{}),
		"aggregator": reads("aggregator", &aggregator.Config{}),
		"sink":       reads("sink", &sink.Config{}),
		"query":      reads("query", &query.Config{}),
	}, ctl.MigrateVars())
}
