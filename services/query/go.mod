module github.com/edtech-analytics/platform/services/query

go 1.26
