module github.com/edtech-analytics/platform/libs/testenv/sampledata

go 1.26
