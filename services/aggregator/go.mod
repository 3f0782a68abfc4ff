module github.com/edtech-analytics/platform/services/aggregator

go 1.26.0

require (
	github.com/ClickHouse/clickhouse-go/v2 v2.26.0
	github.com/go-zookeeper/zk v1.0.4
	github.com/cenkalti/backoff/v5 v5.0.3
	github.com/edtech-analytics/platform/libs/chutil v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/conf v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/kafkax v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/obs v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/records v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/svc v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/testenv/devenv v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/testenv/kafkatest v0.0.0-00010101000000-000000000000
	github.com/edtech-analytics/platform/libs/testenv/loadgen v0.0.0-00010101000000-000000000000
	github.com/google/uuid v1.6.0
	github.com/twmb/franz-go v1.22.2
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c
	go.opentelemetry.io/otel v1.47.0
	go.opentelemetry.io/otel/metric v1.47.0
	go.opentelemetry.io/otel/sdk v1.47.0
	go.opentelemetry.io/otel/trace v1.47.0
	golang.org/x/sync v0.24.0
)

require (
	github.com/ClickHouse/ch-go v0.61.5 // indirect
	github.com/andybalholm/brotli v1.1.0 // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/edtech-analytics/platform/schemas v0.0.0-00010101000000-000000000000 // indirect
	github.com/go-faster/city v1.0.1 // indirect
	github.com/go-faster/errors v0.7.1 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/go-viper/mapstructure/v2 v2.5.0 // indirect
	github.com/grpc-ecosystem/grpc-gateway/v2 v2.30.0 // indirect
	github.com/hamba/avro/v2 v2.31.0 // indirect
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/paulmach/orb v0.11.1 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/otlptranslator v1.0.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/segmentio/asm v1.2.0 // indirect
	github.com/shopspring/decimal v1.4.0 // indirect
	github.com/twmb/franz-go/pkg/kadm v1.19.0 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.0 // indirect
	github.com/twmb/franz-go/pkg/sr v1.8.0 // indirect
	github.com/twmb/franz-go/plugin/kotel v1.7.1 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel/exporters/otlp/otlptrace v1.47.0 // indirect
	go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp v1.47.0 // indirect
	go.opentelemetry.io/otel/exporters/prometheus v0.69.0 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/sdk/metric v1.47.0 // indirect
	go.opentelemetry.io/proto/otlp v1.11.0 // indirect
	golang.org/x/net v0.59.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20260928230214-8a89bd6388cc // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260928230214-8a89bd6388cc // indirect
	google.golang.org/grpc v1.83.2 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

replace (
	github.com/edtech-analytics/platform/libs/chutil => ../../libs/chutil
	github.com/edtech-analytics/platform/libs/conf => ../../libs/conf
	github.com/edtech-analytics/platform/libs/kafkax => ../../libs/kafkax
	github.com/edtech-analytics/platform/libs/obs => ../../libs/obs
	github.com/edtech-analytics/platform/libs/records => ../../libs/records
	github.com/edtech-analytics/platform/libs/svc => ../../libs/svc
	github.com/edtech-analytics/platform/libs/testenv/devenv => ../../libs/testenv/devenv
	github.com/edtech-analytics/platform/libs/testenv/kafkatest => ../../libs/testenv/kafkatest
	github.com/edtech-analytics/platform/libs/testenv/loadgen => ../../libs/testenv/loadgen
	github.com/edtech-analytics/platform/schemas => ../../schemas
)
