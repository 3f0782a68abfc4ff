module github.com/edtech-analytics/platform/libs/records

go 1.26
