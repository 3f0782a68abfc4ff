#!/usr/bin/env bash
# Installs the server binaries that libs/testenv/devenv runs for the tests and the demo: ClickHouse (server and
# client), ZooKeeper (for the replicated ClickHouse cluster the cluster tests start) and PostgreSQL, and Debian's Chromium for the web dashboards' browser tests. Quick and silent when
# everything is present. A server given through the environment (DATABASE_URL, CLICKHOUSE_ADDR) need not be
# installed. Chromium is optional: when it cannot be installed the browser tests say so and are skipped.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

# install_browser installs Debian's chromium when it is missing; a failure is reported, not fatal.
install_browser() {
	if have chromium || [[ -x /usr/bin/chromium ]] || [[ -n ${EDTECH_CHROMIUM:-} ]]; then
		return 0
	fi
	if [[ $(id -u) -ne 0 ]] || ! have apt-get; then
		echo "devenv: chromium is missing and cannot be installed here (needs apt-get as root); the browser tests will be skipped" >&2
		return 0
	fi
	echo "devenv: installing chromium (for the browser tests)" >&2
	if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } >&2; then
		echo "devenv: installing chromium failed; the browser tests will be skipped" >&2
	fi
}
trap install_browser EXIT

have_clickhouse_server() {
	have clickhouse-server || [[ -x /usr/sbin/clickhouse-server || -x /usr/bin/clickhouse-server ]]
}

have_postgres() {
	if have initdb && have pg_ctl; then
		return 0
	fi
	local dir
	for dir in /usr/lib/postgresql/*/bin; do
		if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
			return 0
		fi
	done
	return 1
}

missing_packages() {
	local pkgs=()
	if [[ -z ${CLICKHOUSE_ADDR:-} ]]; then
		have_clickhouse_server || pkgs+=(clickhouse-server)
		have clickhouse-client || pkgs+=(clickhouse-client)
		[[ -f /usr/share/java/zookeeper.jar ]] || pkgs+=(zookeeper)
	fi
	if [[ -z ${DATABASE_URL:-} ]]; then
		have_postgres || pkgs+=(postgresql)
	fi
	echo "${pkgs[@]}"
}

read -r -a missing <<<"$(missing_packages)"
if ((${#missing[@]} == 0)); then
	exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! have apt-get; then
	cat >&2 <<EOF
devenv: missing ${missing[*]}.
Install them (on Debian/Ubuntu, as root: apt-get install -y clickhouse-server clickhouse-client zookeeper postgresql),
or point the tests at servers of your own with DATABASE_URL (PostgreSQL URL) and CLICKHOUSE_ADDR
(ClickHouse native host:port).
EOF
	exit 1
fi

echo "devenv: installing ${missing[*]}" >&2
apt-get update -q
# The packages' own services may be refused a start by policy-rc.d; devenv starts private servers anyway.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

read -r -a still <<<"$(missing_packages)"
if ((${#still[@]} > 0)); then
	echo "devenv: still missing after apt-get install: ${still[*]}" >&2
	exit 1
fi
