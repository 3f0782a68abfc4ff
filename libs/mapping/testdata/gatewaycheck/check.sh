#!/bin/sh
# Decodes the golden records under libs/mapping/testdata with the gateway's OneRoster JSON decoder,
# without changing the gateway: the test is laid over its package with go test -overlay.
# Run from anywhere inside the repository.
set -eu
root=$(git rev-parse --show-toplevel)
here="$root/libs/mapping/testdata/gatewaycheck"
overlay=$(mktemp)
trap 'rm -f "$overlay"' EXIT
printf '{"Replace":{"%s":"%s"}}\n' \
	"$root/services/gateway/internal/roster/zz_mapping_golden_test.go" "$here/roster_mapping_test.go.txt" >"$overlay"
cd "$root/services/gateway"
MAPPING_TESTDATA="$root/libs/mapping/testdata" go test -overlay "$overlay" -run TestMappingGoldenRecordsDecode -count=1 -v ./internal/roster
