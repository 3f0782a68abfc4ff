module github.com/edtech-analytics/platform/services/sink

go 1.26
