module github.com/edtech-analytics/platform/libs/usage

go 1.26.0

require (
	github.com/ClickHouse/clickhouse-go/v2 v2.26.0
	github.com/edtech-analytics/platform/libs/chutil v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/pgutil v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/records v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/tenancy v0.0.0-00010101000000-000000000000
	github.com/google/uuid v1.6.0
	github.com/jackc/pgx/v5 v5.12.0
)

require (
	github.com/ClickHouse/ch-go v0.61.5 // indirect
	github.com/andybalholm/brotli v1.1.0 // indirect
	github.com/edtech-analytics/platform/libs/testenv/devenv v0.0.0-00010101000000-000000000000 // indirect
	github.com/edtech-analytics/platform/libs/ttlcache v0.0.0-00010101000000-000000000000 // indirect
	github.com/edtech-analytics/platform/schemas v0.0.0-00010101000000-000000000000 // indirect
	github.com/go-faster/city v1.0.1 // indirect
	github.com/go-faster/errors v0.7.1 // indirect
	github.com/go-viper/mapstructure/v2 v2.4.0 // indirect
	github.com/hamba/avro/v2 v2.31.0 // indirect
	github.com/hashicorp/golang-lru/v2 v2.0.7 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/klauspost/compress v1.18.2 // indirect
	github.com/mfridman/interpolate v0.0.2 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	github.com/paulmach/orb v0.11.1 // indirect
	github.com/pierrec/lz4/v4 v4.1.21 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/pressly/goose/v3 v3.21.1 // indirect
	github.com/segmentio/asm v1.2.0 // indirect
	github.com/sethvargo/go-retry v0.2.4 // indirect
	github.com/shopspring/decimal v1.4.0 // indirect
	github.com/twmb/franz-go/pkg/sr v1.8.0 // indirect
	go.opentelemetry.io/otel v1.26.0 // indirect
	go.opentelemetry.io/otel/trace v1.26.0 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.18.0 // indirect
	golang.org/x/text v0.41.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

replace (
	github.com/edtech-analytics/platform/libs/chutil => ../chutil
	github.com/edtech-analytics/platform/libs/mapping => ../mapping
	github.com/edtech-analytics/platform/libs/pgutil => ../pgutil
	github.com/edtech-analytics/platform/libs/records => ../records
	github.com/edtech-analytics/platform/libs/tenancy => ../tenancy
	github.com/edtech-analytics/platform/libs/testenv/devenv => ../testenv/devenv
	github.com/edtech-analytics/platform/libs/ttlcache => ../ttlcache
	github.com/edtech-analytics/platform/schemas => ../../schemas
)
