module github.com/edtech-analytics/platform/libs/pii

go 1.26.0
