"""Prefect flows that run the DVC pipeline on a schedule (flows → stages → deepfake; never the reverse)."""

import os

# With no PREFECT_API_URL a flow starts a temporary server and waits 20 s for it by default: too little on a
# loaded 2-core machine (seen failing here). Set before Prefect reads its settings; an explicit value wins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
