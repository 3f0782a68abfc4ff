module github.com/edtech-analytics/platform/services/aggregator

go 1.26
