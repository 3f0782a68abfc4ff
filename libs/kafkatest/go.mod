module github.com/edtech-analytics/platform/libs/kafkatest

go 1.26
