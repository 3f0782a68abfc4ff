module github.com/edtech-analytics/platform/libs/deploycheck

go 1.26

require gopkg.in/yaml.v3 v3.0.1
