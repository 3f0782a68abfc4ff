module github.com/edtech-analytics/platform/schemas

go 1.26
