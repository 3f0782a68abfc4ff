module github.com/edtech-analytics/platform/libs/obs

go 1.26
