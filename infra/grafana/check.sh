#!/usr/bin/env bash
# CI check: the committed dashboard JSON is exactly what dashboard.py generates, and the
# provisioning files parse. Standard-library Python only, so no virtual environment is needed.
set -euo pipefail
cd "$(dirname "$0")"
python3 dashboard.py --check
python3 - <<'PY'
import json, pathlib
d = json.loads(pathlib.Path("dashboards/loadtest.json").read_text())
uids = {t["datasource"]["uid"] for p in d["panels"] for t in p.get("targets", [])}
uids |= {v["datasource"]["uid"] for v in d["templating"]["list"]}
assert uids == {"loadtest-influxdb"}, uids
text = pathlib.Path("provisioning/datasources/loadtest-influxdb.yaml").read_text()
assert "uid: loadtest-influxdb" in text
print("dashboard and provisioning refer to data source uid loadtest-influxdb")
PY
