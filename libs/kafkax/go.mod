module github.com/edtech-analytics/platform/libs/kafkax

go 1.26
