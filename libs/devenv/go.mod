module github.com/edtech-analytics/platform/libs/devenv

go 1.26
