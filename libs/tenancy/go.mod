module github.com/edtech-analytics/platform/libs/tenancy

go 1.26.0

require (
	github.com/cenkalti/backoff/v5 v5.0.3
	github.com/edtech-analytics/platform/libs/pgutil v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/ttlcache v0.0.0-00010101000000-000000000000
	github.com/jackc/pgx/v5 v5.12.0
	github.com/pressly/goose/v3 v3.21.1
)

require (
	github.com/edtech-analytics/platform/libs/mapping v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/testenv/devenv v0.0.0-00010101000000-000000000000 // indirect
	github.com/google/uuid v1.6.0
	github.com/hashicorp/golang-lru/v2 v2.0.7 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/mfridman/interpolate v0.0.2 // indirect
	github.com/sethvargo/go-retry v0.2.4 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)

replace (
	github.com/edtech-analytics/platform/libs/pgutil => ../pgutil
	github.com/edtech-analytics/platform/libs/testenv/devenv => ../testenv/devenv
)

replace github.com/edtech-analytics/platform/libs/ttlcache => ../ttlcache

replace github.com/edtech-analytics/platform/libs/mapping => ../mapping
