module github.com/edtech-analytics/platform/libs/quality

go 1.26.0

require (
	github.com/ClickHouse/clickhouse-go/v2 v2.26.0
	github.com/jackc/pgx/v5 v5.12.0
)

replace (
	github.com/edtech-analytics/platform/libs/chutil => ../chutil
	github.com/edtech-analytics/platform/libs/mapping => ../mapping
	github.com/edtech-analytics/platform/libs/pgutil => ../pgutil
	github.com/edtech-analytics/platform/libs/tenancy => ../tenancy
	github.com/edtech-analytics/platform/libs/testenv/devenv => ../testenv/devenv
	github.com/edtech-analytics/platform/libs/ttlcache => ../ttlcache
)
