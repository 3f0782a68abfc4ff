module github.com/edtech-analytics/platform/libs/chutil

go 1.26
