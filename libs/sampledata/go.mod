module github.com/edtech-analytics/platform/libs/sampledata

go 1.26
