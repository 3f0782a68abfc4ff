module github.com/edtech-analytics/platform/libs/testenv/devenv

go 1.26
