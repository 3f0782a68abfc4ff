module github.com/edtech-analytics/platform/services/enricher

go 1.26
