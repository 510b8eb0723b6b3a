#!/usr/bin/env bash
# Install (Debian's postgresql) and start a PostgreSQL server on loopback for the distributed
# tuning and shared-MLflow-server tests; prints the URL to export as ALEXNET_TEST_POSTGRES.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  apt-get install -y -q postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >&2
pg_ctlcluster "$version" main status >/dev/null 2>&1 || pg_ctlcluster "$version" main start >&2
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
psql_() { su postgres -c "psql -p $port -tAc \"$1\""; }
[ "$(psql_ "SELECT 1 FROM pg_roles WHERE rolname='alexnet'")" = 1 ] || psql_ "CREATE ROLE alexnet LOGIN PASSWORD 'alexnet'" >&2
psql_ "ALTER ROLE alexnet CREATEDB CREATEROLE" >&2  # tests make fresh databases, and roles with passwords (secret test)
[ "$(psql_ "SELECT 1 FROM pg_database WHERE datname='optuna_test'")" = 1 ] || su postgres -c "createdb -p $port -O alexnet optuna_test" >&2
echo "postgresql://alexnet:alexnet@127.0.0.1:$port/optuna_test"
