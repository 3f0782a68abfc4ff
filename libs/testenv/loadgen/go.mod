module github.com/edtech-analytics/platform/libs/testenv/loadgen

go 1.26

require github.com/google/uuid v1.6.0
