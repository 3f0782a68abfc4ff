module github.com/edtech-analytics/platform/libs/conf

go 1.26
