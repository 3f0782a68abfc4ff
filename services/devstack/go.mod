module github.com/edtech-analytics/platform/services/devstack

go 1.26
