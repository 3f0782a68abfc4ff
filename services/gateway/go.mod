module github.com/edtech-analytics/platform/services/gateway

go 1.26
