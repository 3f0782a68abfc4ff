module github.com/edtech-analytics/platform/libs/pgutil

go 1.26
