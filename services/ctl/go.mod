module github.com/edtech-analytics/platform/services/ctl

go 1.26
