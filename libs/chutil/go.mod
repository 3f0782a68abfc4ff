module github.com/edtech-analytics/platform/libs/chutil

go 1.26

require (
	github.com/ClickHouse/clickhouse-go/v2 v2.26.0
	github.com/edtech-analytics/platform/libs/conf v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/testenv/devenv v0.0.0-00010101000000-000000000000
	github.com/google/uuid v1.6.0
	github.com/shopspring/decimal v1.4.0
)

require (
	github.com/ClickHouse/ch-go v0.61.5 // indirect
	github.com/andybalholm/brotli v1.1.0 // indirect
	github.com/go-faster/city v1.0.1 // indirect
	github.com/go-faster/errors v0.7.1 // indirect
	github.com/klauspost/compress v1.17.7 // indirect
	github.com/paulmach/orb v0.11.1 // indirect
	github.com/pierrec/lz4/v4 v4.1.21 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/segmentio/asm v1.2.0 // indirect
	go.opentelemetry.io/otel v1.26.0 // indirect
	go.opentelemetry.io/otel/trace v1.26.0 // indirect
	golang.org/x/sys v0.18.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

replace github.com/edtech-analytics/platform/libs/testenv/devenv => ../testenv/devenv
replace github.com/edtech-analytics/platform/libs/conf => ../conf
